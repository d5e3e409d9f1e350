// Load tool: makes one running relay hold many circuits at once (10,000 by default), so that the
// benchmark can read the relay's memory while they are open. Run on demand, not a test.
//
//   circuit_load --directory HOST:PORT --directory-key PUBFILE --relay NICKNAME|FINGERPRINT|HOST:PORT
//                [--circuits 10000] [--links 8] [--in-flight 64] [--rate 0] [--hops 1]
//                [--streams [--stream-target HOST:PORT]] [--hold-seconds S]
//
// It finds the relay (address, identity, onion key) in the directory's verified consensus, as a
// proxy does, then builds the circuits through it with CircuitClient, spread round-robin over
// --links links (one CircuitClient each: a set of proxies, each with its own link). With --hops 1
// the relay is the only hop; with more, it is the first hop and the others come from the consensus.
// Building is paced: at most --in-flight builds (and stream opens) outstanding, and at most --rate
// new circuits per second when given, so the relay's per-link and pending-extend limits are not what
// is measured (8 links keep 10,000 circuits under max_circuits_per_link, 4096 for a proxy's link).
// With --hops > 1 the circuits between two relays all share their one relay-to-relay link, limited
// by max_circuits_per_relay_link (65536). With --streams every built circuit opens one stream, to
// --stream-target or to a loopback echo server of this tool (then each stream is also checked with a short echo).
//
// stdout gets two JSON lines (or one {"event":"error",...} when it cannot start): {"event":"built",...} once every circuit is built or has
// failed (with the failures by reason), and {"event":"released",...} when the hold ends (stdin
// closed, SIGINT/SIGTERM, or --hold-seconds), just before the circuits are torn down. Progress and
// errors go to stderr. Exit status: 0 when every circuit (and stream) was made and stayed open to the
// end, 1 otherwise, 2 when the load could not start (bad flag, no consensus, relay not found).
#include <signal.h>
#include <sys/resource.h>
#include <uv.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/circuit/circuit_client.hpp"
#include "common/dir/directory_client.hpp"
#include "common/keyfile.hpp"
#include "common/log.hpp"
#include "common/net_address.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"

using namespace thor;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  HostPort directory;
  crypto::Ed25519Public directory_key{};
  std::string relay;
  std::size_t circuits = 10'000;
  std::size_t links = 8;
  std::size_t in_flight = 64;
  double rate = 0;  // new circuits per second; 0: only the in-flight window paces
  std::size_t hops = 1;
  bool streams = false;
  std::optional<HostPort> stream_target;  // none: our own loopback echo server
  double hold_seconds = -1;               // < 0: until stdin closes or a signal
  double build_timeout_s = 30;
  double consensus_timeout_s = 10;
};

// Counts by reason, with the first message seen for each (what a person reads to act on it).
struct Tally {
  std::map<std::string, std::size_t> counts;
  std::map<std::string, std::string> examples;
  std::size_t total = 0;
  void add(const std::string& reason, const std::string& message) {
    ++counts[reason];
    examples.emplace(reason, message);
    ++total;
  }
  json to_json() const {
    json j = json::object();
    for (const auto& [reason, n] : counts) j[reason] = {{"count", n}, {"example", examples.at(reason)}};
    return j;
  }
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// Accepts connections on 127.0.0.1 and echoes what they send, holding them open until closed.
class EchoServer {
 public:
  explicit EchoServer(uv_loop_t* loop) : listener_(loop) {}
  Status start() {
    return listener_.listen(HostPort{"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> conn) {
      auto* c = conn.get();
      auto it = conns_.insert(conns_.end(), std::move(conn));
      c->set_callbacks([c](ByteView data) { c->write(data); },
                       [this, it](const std::string&) { dead_.splice(dead_.end(), conns_, it); });
      c->start_reading();
    });
  }
  std::uint16_t port() const { return listener_.bound_port(); }
  std::size_t open() const { return conns_.size(); }
  void stop() {
    listener_.close();
    conns_.clear();
    dead_.clear();
  }

 private:
  uv::TcpListener listener_;
  std::list<std::unique_ptr<uv::TcpConnection>> conns_;
  std::list<std::unique_ptr<uv::TcpConnection>> dead_;  // closed by the peer; freed at stop()
};

// Calls on_eof when stdin reaches its end (a pipe or a terminal); a file or /dev/null is ignored,
// since its end says nothing about when to stop.
class StdinWatcher {
 public:
  StdinWatcher(uv_loop_t* loop, std::function<void()> on_eof) : on_eof_(std::move(on_eof)) {
    const auto type = uv_guess_handle(0);
    if (type == UV_NAMED_PIPE) {
      if (uv_pipe_init(loop, pipe_.get(), 0) != 0) return;
      pipe_.mark_initialized();
      if (uv_pipe_open(pipe_.get(), 0) != 0) return;
      start(reinterpret_cast<uv_stream_t*>(pipe_.get()));
    } else if (type == UV_TTY) {
      if (uv_tty_init(loop, tty_.get(), 0, 1) != 0) return;
      tty_.mark_initialized();
      start(reinterpret_cast<uv_stream_t*>(tty_.get()));
    }
  }
  bool watching() const { return watching_; }
  void stop() {
    pipe_.close();
    tty_.close();
    watching_ = false;
  }

 private:
  void start(uv_stream_t* s) {
    s->data = this;
    int rc = uv_read_start(
        s,
        [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
          static char scratch[4096];
          *buf = uv_buf_init(scratch, sizeof scratch);
        },
        [](uv_stream_t* stream, ssize_t n, const uv_buf_t*) {
          auto* self = static_cast<StdinWatcher*>(stream->data);
          if (!self || n >= 0) return;  // what is typed is ignored; only the end counts
          uv_read_stop(stream);
          self->watching_ = false;
          self->on_eof_();
        });
    watching_ = rc == 0;
  }

  std::function<void()> on_eof_;
  uv::Handle<uv_pipe_t> pipe_;
  uv::Handle<uv_tty_t> tty_;
  bool watching_ = false;
};

class Load {
 public:
  Load(uv_loop_t* loop, const Options& o, circuit::HopTarget target, std::vector<circuit::HopTarget> others,
       std::uint16_t echo_port)
      : o_(o),
        target_(std::move(target)),
        others_(std::move(others)),
        echo_port_(echo_port),
        slots_(o.circuits),
        tick_(loop),
        pace_(loop) {
    circuit::CircuitClientOptions co;
    co.build_timeout_ms = static_cast<std::uint64_t>(o.build_timeout_s * 1000);
    co.idle_link_timeout_ms = 24ull * 3600 * 1000;  // links stay while held, even with no circuits left
    for (std::size_t i = 0; i < o.links; ++i) clients_.push_back(std::make_unique<circuit::CircuitClient>(loop, co));
  }

  // Starts building; on_done runs once every circuit has been built or has failed.
  void start(std::function<void()> on_done) {
    on_done_ = std::move(on_done);
    t0_ = Clock::now();
    tick_.start(1000, 1000, [this] { on_tick(); });
    launch_more();
    check_done();
  }

  bool done() const { return reported_; }

  json built_report(bool interrupted) const {
    json j;
    j["event"] = "built";
    j["relay"] = o_.relay;
    j["fingerprint"] = crypto::fingerprint(target_.identity);
    j["relay_address"] = target_.address.to_string();
    j["hops"] = o_.hops;
    j["links"] = o_.links;
    j["in_flight"] = o_.in_flight;
    j["rate"] = o_.rate;
    j["requested"] = o_.circuits;
    j["attempted"] = launched_;
    j["built"] = built_;
    j["failed"] = failures_.total;
    j["failures"] = failures_.to_json();
    j["open"] = open_circuits();
    j["closed_after_built"] = closed_held_.to_json();
    j["seconds"] = build_seconds_;
    j["circuits_per_s"] = build_seconds_ > 0 ? static_cast<double>(built_) / build_seconds_ : 0.0;
    j["build_ms_median"] = percentile(build_ms_, 50);
    j["build_ms_p99"] = percentile(build_ms_, 99);
    j["build_ms_max"] = build_ms_.empty() ? 0.0 : *std::max_element(build_ms_.begin(), build_ms_.end());
    if (o_.streams) {
      j["stream_target"] = o_.stream_target ? o_.stream_target->to_string() : "echo server of circuit_load";
      j["streams_connected"] = streams_connected_;
      j["streams_echoed"] = streams_echoed_;
      j["streams_failed"] = stream_failures_.total;
      j["stream_failures"] = stream_failures_.to_json();
    }
    j["interrupted"] = interrupted;
    if (failures_.counts.count("resource_limit"))
      j["hint"] =
          "a relay refused circuits for a limit (relay/relay_config.hpp): max_circuits_per_link (default 4096 "
          "on a proxy's link; use more --links), max_circuits_per_relay_link (default 65536; with --hops > 1 "
          "every circuit between two relays shares their one link) or max_pending_extends (default 1024; "
          "lower --in-flight)";
    return j;
  }

  json released_report(double held_s) const {
    json j;
    j["event"] = "released";
    j["held_seconds"] = held_s;
    j["open"] = open_circuits();
    j["closed_while_held"] = closed_held_.total;
    j["closed_while_held_reasons"] = closed_held_.to_json();
    if (o_.streams) {
      j["streams_open"] = open_streams();
      j["streams_ended_while_held"] = streams_ended_held_.total;
      j["streams_ended_while_held_reasons"] = streams_ended_held_.to_json();
    }
    return j;
  }

  // Every circuit (and stream) was made and is still open.
  bool all_held() const {
    return built_ == o_.circuits && closed_held_.total == 0 &&
           (!o_.streams || (stream_failures_.total == 0 && streams_connected_ == o_.circuits &&
                            streams_ended_held_.total == 0));
  }

  // The whole load finished building (or was interrupted): freeze the build numbers.
  void freeze() {
    if (build_seconds_ == 0) build_seconds_ = seconds_since(t0_);
    pace_.stop();
  }

  // Destroys every circuit (DESTROY goes out) and closes the links.
  void teardown() {
    tick_.stop();
    pace_.stop();
    clients_.clear();
  }

 private:
  enum class State { idle, building, opening_stream, awaiting_echo, held, failed, closed };
  struct Slot {
    State state = State::idle;
    std::size_t client = 0;
    circuit::CircuitRef circuit = 0;
    circuit::StreamRef stream = 0;
    Clock::time_point started{};
    std::uint32_t echoed = 0;
  };
  static constexpr std::size_t kEchoBytes = 24;

  std::vector<circuit::HopTarget> path_for(std::size_t k) const {
    std::vector<circuit::HopTarget> path{target_};
    for (std::size_t h = 1; h < o_.hops; ++h) path.push_back(others_[(k + h - 1) % others_.size()]);
    return path;
  }

  void launch_more() {
    if (launching_) return;  // a build that failed at once calls back in here
    launching_ = true;
    while (launched_ < o_.circuits && in_flight_ < o_.in_flight && !stopped_) {
      if (o_.rate > 0 && static_cast<double>(launched_) >= o_.rate * seconds_since(t0_) + 1) {
        if (!pace_.active()) pace_.start(10, 10, [this] { launch_more(); });
        break;
      }
      const std::size_t k = launched_++;
      Slot& s = slots_[k];
      s.client = k % clients_.size();
      s.state = State::building;
      s.started = Clock::now();
      ++in_flight_;
      circuit::CircuitCallbacks cb;
      cb.on_built = [this, k] { on_built(k); };
      cb.on_closed = [this, k](const circuit::CircuitClosed& c) { on_circuit_closed(k, c); };
      s.circuit = clients_[s.client]->build_circuit(path_for(k), std::move(cb));
      if (s.circuit == 0) fail(k, "no_circuit_id", "the link has no free circuit id");
    }
    if (launched_ >= o_.circuits) pace_.stop();
    launching_ = false;
  }

  void finish(std::size_t) {
    --in_flight_;
    ++finished_;
    launch_more();
    check_done();
  }

  void fail(std::size_t k, const std::string& reason, const std::string& message) {
    slots_[k].state = State::failed;
    failures_.add(reason, message);
    finish(k);
  }

  void check_done() {
    if (reported_ || finished_ < o_.circuits) return;
    reported_ = true;
    freeze();
    if (on_done_) on_done_();
  }

  void on_built(std::size_t k) {
    Slot& s = slots_[k];
    if (s.state != State::building) return;
    ++built_;
    build_ms_.push_back(seconds_since(s.started) * 1e3);
    if (!o_.streams) {
      s.state = State::held;
      finish(k);
      return;
    }
    const HostPort target = o_.stream_target ? *o_.stream_target : HostPort{"127.0.0.1", echo_port_};
    circuit::StreamCallbacks cb;
    cb.on_connected = [this, k](const std::string&) { on_stream_connected(k); };
    cb.on_data = [this, k](ByteView data) { on_stream_data(k, data); };
    cb.on_end = [this, k](const circuit::StreamEnd& e) { on_stream_end(k, e); };
    s.state = State::opening_stream;
    s.started = Clock::now();
    s.stream = clients_[s.client]->open_stream(s.circuit, target, std::move(cb));
    if (s.stream == 0) {
      s.state = State::held;
      stream_failures_.add("not_opened", "the circuit refused a new stream");
      finish(k);
    }
  }

  void on_stream_connected(std::size_t k) {
    Slot& s = slots_[k];
    if (s.state != State::opening_stream) return;
    ++streams_connected_;
    if (o_.stream_target) {
      s.state = State::held;
      finish(k);
      return;
    }
    // A short message the echo server sends back: the stream carries data both ways.
    std::string msg = "circuit_load " + std::to_string(k);
    msg.resize(kEchoBytes, '.');
    s.state = State::awaiting_echo;
    clients_[s.client]->write(s.stream, as_bytes(msg));
  }

  void on_stream_data(std::size_t k, ByteView data) {
    Slot& s = slots_[k];
    s.echoed += static_cast<std::uint32_t>(data.size());
    if (s.state == State::awaiting_echo && s.echoed >= kEchoBytes) {
      ++streams_echoed_;
      s.state = State::held;
      finish(k);
    }
  }

  void on_stream_end(std::size_t k, const circuit::StreamEnd& e) {
    Slot& s = slots_[k];
    s.stream = 0;
    const std::string reason = e.circuit_closed ? "circuit_closed" : to_string(e.reason);
    if (s.state == State::opening_stream || s.state == State::awaiting_echo) {
      s.state = State::held;  // the circuit may still be open; its on_closed says otherwise
      stream_failures_.add(reason, e.message);
      finish(k);
    } else if (s.state == State::held) {
      streams_ended_held_.add(reason, e.message);
    }
  }

  void on_circuit_closed(std::size_t k, const circuit::CircuitClosed& c) {
    Slot& s = slots_[k];
    const std::string reason = to_string(c.reason);
    if (s.state == State::building) {
      fail(k, reason, c.message);
      return;
    }
    if (s.state == State::opening_stream || s.state == State::awaiting_echo) {
      // on_end came first for the stream; this only covers a stream refused at once.
      stream_failures_.add("circuit_closed", c.message);
      finish(k);
    }
    s.state = State::closed;
    closed_held_.add(reason, c.message);
  }

  void on_tick() {
    // Streams the exit never answered are given up as the circuits are (build timeout).
    if (o_.streams && !reported_) {
      for (std::size_t k = 0; k < launched_; ++k) {
        Slot& s = slots_[k];
        if ((s.state == State::opening_stream || s.state == State::awaiting_echo) &&
            seconds_since(s.started) > o_.build_timeout_s) {
          clients_[s.client]->close_stream(s.stream);
          s.stream = 0;
          s.state = State::held;
          stream_failures_.add("timeout", s.echoed ? "echo incomplete" : "no CONNECTED in time");
          finish(k);
        }
      }
    }
    if (!reported_)
      std::cerr << "circuit_load: " << built_ << " of " << o_.circuits << " built, " << failures_.total << " failed, "
                << in_flight_ << " in flight (" << static_cast<int>(seconds_since(t0_)) << " s)" << std::endl;
  }

  std::size_t open_circuits() const {
    std::size_t n = 0;
    for (const auto& s : slots_)
      if (s.circuit && s.state != State::closed && s.state != State::failed && clients_.size() > s.client &&
          clients_[s.client]->circuit_open(s.circuit))
        ++n;
    return n;
  }
  std::size_t open_streams() const {
    std::size_t n = 0;
    for (const auto& s : slots_)
      if (s.stream && clients_.size() > s.client && clients_[s.client]->stream_exists(s.stream)) ++n;
    return n;
  }

 public:
  // Stops launching new circuits (an interrupted build).
  void stop_launching() { stopped_ = true; }

 private:
  Options o_;
  circuit::HopTarget target_;
  std::vector<circuit::HopTarget> others_;
  std::uint16_t echo_port_;
  std::vector<std::unique_ptr<circuit::CircuitClient>> clients_;
  std::vector<Slot> slots_;
  uv::Timer tick_;
  uv::Timer pace_;
  std::function<void()> on_done_;
  Clock::time_point t0_{};
  std::size_t launched_ = 0, in_flight_ = 0, finished_ = 0, built_ = 0;
  std::size_t streams_connected_ = 0, streams_echoed_ = 0;
  Tally failures_, closed_held_, stream_failures_, streams_ended_held_;
  std::vector<double> build_ms_;
  double build_seconds_ = 0;
  bool launching_ = false, reported_ = false, stopped_ = false;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The relay named by nickname, fingerprint (or a prefix of 8+ hex digits) or advertised HOST:PORT.
const dir::ConsensusRelay* find_relay(const dir::Consensus& c, const std::string& name) {
  const std::string want = lower(name);
  for (const auto& r : c.relays) {
    if (r.descriptor.nickname == name || r.descriptor.address.to_string() == name) return &r;
    if (want.size() >= 8 && lower(r.fingerprint).rfind(want, 0) == 0) return &r;
  }
  return nullptr;
}

circuit::HopTarget hop(const dir::ConsensusRelay& r) {
  return circuit::HopTarget{r.descriptor.identity, r.descriptor.onion_key, r.descriptor.address};
}

void print_json(const json& j) { std::cout << j.dump() << std::endl; }

int setup_error(const std::string& message) {
  std::cerr << "circuit_load: " << message << std::endl;
  print_json(json{{"event", "error"}, {"error", message}});
  return 2;
}

// Each link and each stream to our echo server holds descriptors: allow as many as the system lets us.
void raise_descriptor_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Makes one Thor relay hold many circuits at once and reports, as JSON lines, how it went"};
  Options o;
  std::string directory, directory_key_file, stream_target, log_level = "warn";
  app.add_option("--directory", directory, "The directory's relay/client port, HOST:PORT")->required();
  app.add_option("--directory-key", directory_key_file, "The directory's public key file (pinned)")->required();
  app.add_option("--relay", o.relay, "The relay to load: nickname, fingerprint (8+ hex digits) or HOST:PORT")
      ->required();
  app.add_option("--circuits", o.circuits, "Circuits to build and hold")->capture_default_str();
  app.add_option("--links", o.links, "Links to spread them over (one client each)")->capture_default_str();
  app.add_option("--in-flight", o.in_flight, "At most this many builds (and stream opens) outstanding")
      ->capture_default_str();
  app.add_option("--rate", o.rate, "At most this many new circuits per second (0: no limit)")->capture_default_str();
  app.add_option("--hops", o.hops, "Hops per circuit; the relay is the first, the others come from the consensus")
      ->capture_default_str();
  app.add_flag("--streams", o.streams, "Open one stream per built circuit and keep it open");
  app.add_option("--stream-target", stream_target,
                 "Where the streams go, IP:PORT (default: a loopback echo server of this tool; implies --streams)");
  app.add_option("--hold-seconds", o.hold_seconds,
                 "Hold the circuits this long, then release them (default: until stdin closes or a signal)");
  app.add_option("--build-timeout", o.build_timeout_s, "Seconds a circuit (or stream) may take")->capture_default_str();
  app.add_option("--consensus-timeout", o.consensus_timeout_s,
                 "Seconds to wait for a consensus that lists the relay")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, notice, warn, error")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is not an error
  }

  log::Level level;
  if (!log::parse_level(log_level, level)) return setup_error("--log-level: unknown level " + log_level);
  log::set_level(level);
  log::set_component("circuit_load");
  auto dir_addr = parse_host_port(directory);
  if (!dir_addr) return setup_error("--directory: " + dir_addr.error());
  o.directory = *dir_addr;
  auto key = read_public_key_file(directory_key_file);
  if (!key) return setup_error("--directory-key: " + key.error());
  o.directory_key = *key;
  if (!stream_target.empty()) {
    auto t = parse_host_port(stream_target);
    if (!t) return setup_error("--stream-target: " + t.error());
    o.stream_target = *t;
    o.streams = true;
  }
  if (o.circuits == 0) return setup_error("--circuits: at least 1");
  if (o.links == 0 || o.in_flight == 0) return setup_error("--links and --in-flight: at least 1");
  if (o.hops == 0) return setup_error("--hops: at least 1");
  o.links = std::min(o.links, o.circuits);

  signal(SIGPIPE, SIG_IGN);
  raise_descriptor_limit();
  uv_loop_t loop;
  uv_loop_init(&loop);

  // 1. The relay from the consensus (refetched until it lists the relay, as a relay joins late).
  const auto t_consensus = Clock::now();
  std::optional<dir::Consensus> consensus;
  std::string last_error;
  const dir::ConsensusRelay* target = nullptr;
  while (!target && seconds_since(t_consensus) < o.consensus_timeout_s) {
    std::optional<Result<dir::Consensus>> got;
    auto token = dir::fetch_consensus(&loop, o.directory, o.directory_key,
                                      [&](Result<dir::Consensus> r) { got = std::move(r); });
    while (!got && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    token.reset();
    if (got && *got) {
      consensus = std::move(**got);
      target = find_relay(*consensus, o.relay);
      last_error = "no relay named " + o.relay + " in the consensus (" + std::to_string(consensus->relays.size()) +
                   " relays)";
    } else {
      last_error = got ? "fetching the consensus from " + o.directory.to_string() + ": " + got->error()
                       : "the consensus fetch ended without an answer";
    }
    if (!target) uv_sleep(250);
  }
  if (!target) return setup_error(last_error);
  std::vector<circuit::HopTarget> others;
  for (const auto& r : consensus->relays)
    if (&r != target) others.push_back(hop(r));
  if (o.hops > 1 && others.size() < o.hops - 1)
    return setup_error("--hops " + std::to_string(o.hops) + " needs " + std::to_string(o.hops - 1) +
                       " other relays; the consensus has " + std::to_string(others.size()));
  if (o.circuits > o.links * 4096)
    std::cerr << "circuit_load: note: " << o.circuits / o.links
              << " circuits per link is above a relay's default max_circuits_per_link (4096)" << std::endl;

  int status = 0;
  {
    // 2. Our echo server for the streams, when no target was given.
    EchoServer echo(&loop);
    if (o.streams && !o.stream_target)
      if (auto st = echo.start(); !st) return setup_error("echo server: " + st.error());

    // 3. Build, report, hold, report, release.
    Load load(&loop, o, hop(*target), others, echo.port());
    bool stopping = false;
    bool interrupted = false;
    Clock::time_point held_since{};
    uv::Timer hold_timer(&loop);
    uv::Timer closer(&loop);
    std::unique_ptr<StdinWatcher> stdin_watcher;
    std::unique_ptr<uv::Signal> sigint, sigterm;

    auto release = [&] {
      if (stopping) return;
      stopping = true;
      if (!load.done()) {  // told to stop while building: report what was built so far
        interrupted = true;
        load.stop_launching();
        load.freeze();
        print_json(load.built_report(true));
        held_since = Clock::now();
      }
      print_json(load.released_report(seconds_since(held_since)));
      load.teardown();
      hold_timer.stop();
      echo.stop();
      // The signal and stdin handles go on the next turn: this may run inside one of their callbacks.
      closer.start(0, 0, [&] {
        sigint.reset();
        sigterm.reset();
        stdin_watcher.reset();
      });
    };
    sigint = std::make_unique<uv::Signal>(&loop, SIGINT, release);
    sigterm = std::make_unique<uv::Signal>(&loop, SIGTERM, release);
    if (o.hold_seconds < 0) stdin_watcher = std::make_unique<StdinWatcher>(&loop, release);

    std::cerr << "circuit_load: building " << o.circuits << " circuits of " << o.hops << " hop(s) through "
              << target->descriptor.nickname << " (" << target->descriptor.address.to_string() << ") over "
              << o.links << " links, " << o.in_flight << " in flight" << (o.streams ? ", one stream each" : "")
              << std::endl;
    load.start([&] {
      print_json(load.built_report(false));
      held_since = Clock::now();
      if (o.hold_seconds >= 0) {
        hold_timer.start(static_cast<std::uint64_t>(o.hold_seconds * 1000), 0, release);
      } else if (!stdin_watcher || !stdin_watcher->watching()) {
        std::cerr << "circuit_load: holding until SIGINT or SIGTERM (stdin is neither a pipe nor a terminal)"
                  << std::endl;
      } else {
        std::cerr << "circuit_load: holding until stdin closes" << std::endl;
      }
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    status = interrupted || !load.all_held() ? 1 : 0;
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the handles of the objects just destroyed close
  uv_loop_close(&loop);
  return status;
}
