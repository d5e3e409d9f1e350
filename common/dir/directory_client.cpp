#include "common/dir/directory_client.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/dir/dir_protocol.hpp"
#include "common/log.hpp"
#include "common/uv/tcp.hpp"

namespace thor::dir {

using nlohmann::json;

namespace {

constexpr std::uint64_t kFetchTimeoutMs = 15000;
constexpr std::uint64_t kJoinTimeoutMs = 10000;

std::int64_t wall_seconds() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

// Connects to HOST:PORT, resolving a name first when it is not numeric. The token cancels.
std::shared_ptr<void> connect_to(uv::TcpConnection& conn, const HostPort& where, uv::TcpConnection::ConnectCallback done) {
  if (is_ipv4_literal(where.host) || is_ipv6_literal(where.host)) {
    conn.connect(where, std::move(done));
    return nullptr;
  }
  auto* c = &conn;
  return uv::Resolver::resolve(conn.loop(), where.host, where.port,
                               [c, done = std::move(done)](Result<uv::Resolver::Answer> a) mutable {
                                 if (!a) {
                                   done(Error{a.error()});
                                   return;
                                 }
                                 c->connect(reinterpret_cast<const sockaddr*>(&a->addresses.front()), std::move(done));
                               });
}

// One fetch: connect, ask, read one frame, verify. Owned by the handle returned to the caller.
struct Fetch {
  Fetch(uv_loop_t* loop, crypto::Ed25519Public key, std::function<void(Result<Consensus>)> done)
      : conn(std::make_unique<uv::TcpConnection>(loop)), timer(loop), key(key), done(std::move(done)) {}

  std::unique_ptr<uv::TcpConnection> conn;
  uv::Timer timer;
  std::shared_ptr<void> resolving;
  crypto::Ed25519Public key;
  std::function<void(Result<Consensus>)> done;
  FrameReader reader;
  bool finished = false;
  std::string where;

  // The last thing any callback does: the caller may destroy this Fetch inside done.
  void finish(Result<Consensus> r) {
    if (finished) return;
    finished = true;
    timer.stop();
    conn->close();
    auto cb = std::move(done);
    if (cb) cb(std::move(r));
  }

  void on_data(ByteView data) {
    reader.append(data);
    auto d = reader.next();
    if (d.is_incomplete()) return;
    if (d.is_invalid()) return finish(Error{"directory " + where + " sent a bad frame: " + d.error});
    const json& m = *d.value;
    if (message_type(m) == "error") {
      auto reason = parse_error(m);
      return finish(Error{"directory " + where + " refused: " + (reason ? *reason : std::string("?"))});
    }
    auto env = parse_consensus_message(m);
    if (!env) return finish(Error{"directory " + where + ": " + env.error()});
    auto c = verify_consensus(*env, key, wall_seconds());
    if (!c) return finish(Error{"directory " + where + ": " + c.error()});
    finish(std::move(*c));
  }
};

}  // namespace

std::shared_ptr<void> fetch_consensus(uv_loop_t* loop, const HostPort& directory,
                                      const crypto::Ed25519Public& directory_key,
                                      std::function<void(Result<Consensus>)> done) {
  auto f = std::make_shared<Fetch>(loop, directory_key, std::move(done));
  f->where = directory.to_string();
  Fetch* self = f.get();
  self->timer.start(kFetchTimeoutMs, 0, [self] {
    self->finish(Error{"directory " + self->where + " did not send a consensus within " +
                       std::to_string(kFetchTimeoutMs / 1000) + " s"});
  });
  self->resolving = connect_to(*self->conn, directory, [self](Status st) {
    if (!st) return self->finish(Error{"cannot reach directory " + self->where + ": " + st.error()});
    self->conn->set_callbacks([self](ByteView data) { self->on_data(data); },
                              [self](const std::string& reason) {
                                self->finish(Error{"directory " + self->where + " closed the connection" +
                                                   (reason.empty() ? std::string() : ": " + reason)});
                              });
    self->conn->start_reading();
    self->conn->write(encode_frame(make_get_consensus()));
  });
  return f;
}

struct RelayRegistration::Impl {
  enum class Phase { stopped, connecting, hello_sent, join_sent, joined, waiting };

  Impl(uv_loop_t* loop, Options o)
      : loop(loop), opts(std::move(o)), retry_timer(loop), heartbeat_timer(loop), join_timer(loop) {
    backoff_ms = std::max<std::uint64_t>(1, opts.min_retry_ms);
  }

  uv_loop_t* loop;
  Options opts;
  uv::Timer retry_timer, heartbeat_timer, join_timer;
  std::unique_ptr<uv::TcpConnection> conn;
  // Connections that ended inside their own callbacks; freed at the next attempt, never in the callback.
  std::vector<std::unique_ptr<uv::TcpConnection>> finished_conns;
  std::shared_ptr<void> resolving;
  FrameReader reader;
  Phase phase = Phase::stopped;
  Nonce nonce{};
  std::uint64_t backoff_ms = 200;
  std::uint64_t interval_ms = 5000;
  std::uint64_t seq = 0;
  std::uint64_t last_ack_ms = 0;
  int failures_in_a_row = 0;
  std::function<void()> joined_cb;
  std::string where;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);  // expires with this object

  void connect_now() {
    finished_conns.clear();
    reader = FrameReader();
    phase = Phase::connecting;
    where = opts.directory.to_string();
    conn = std::make_unique<uv::TcpConnection>(loop);
    join_timer.start(kJoinTimeoutMs, 0, [this] { fail("the directory did not welcome us within " +
                                                       std::to_string(kJoinTimeoutMs / 1000) + " s"); });
    resolving = connect_to(*conn, opts.directory, [this](Status st) {
      if (!st) return fail("cannot reach directory " + where + ": " + st.error());
      on_connected();
    });
  }

  void on_connected() {
    conn->set_callbacks([this](ByteView data) { on_data(data); },
                        [this](const std::string& reason) {
                          fail("directory " + where + " closed the connection" +
                               (reason.empty() ? std::string() : ": " + reason));
                        });
    conn->set_nodelay(true);
    conn->start_reading();
    crypto::system_rng().fill(nonce);
    conn->write(encode_frame(make_hello(nonce)));
    phase = Phase::hello_sent;
  }

  void on_data(ByteView data) {
    reader.append(data);
    for (;;) {
      auto d = reader.next();
      if (d.is_incomplete()) return;
      if (d.is_invalid()) return fail("directory " + where + " sent a bad frame: " + d.error);
      if (!handle(*d.value)) return;  // failed: this connection is over
    }
  }

  // false when the connection was given up.
  bool handle(const json& m) {
    std::string type = message_type(m);
    if (type == "error") {
      auto reason = parse_error(m);
      fail("directory " + where + " refused: " + (reason ? *reason : std::string("?")));
      return false;
    }
    if (phase == Phase::hello_sent && type == "challenge") {
      auto c = parse_challenge(m);
      if (!c) return fail("directory " + where + ": " + c.error()), false;
      if (auto st = check_challenge(*c, nonce, opts.directory_key); !st)
        return fail("directory " + where + ": " + st.error()), false;
      RelayDescriptor d = opts.make_descriptor();
      conn->write(encode_frame(build_join(d, *opts.identity, nonce, c->nonce, opts.directory_key)));
      phase = Phase::join_sent;
      return true;
    }
    if (phase == Phase::join_sent && type == "welcome") {
      auto w = parse_welcome(m);
      if (!w) return fail("directory " + where + ": " + w.error()), false;
      join_timer.stop();
      phase = Phase::joined;
      backoff_ms = std::max<std::uint64_t>(1, opts.min_retry_ms);
      failures_in_a_row = 0;
      interval_ms = std::clamp<std::uint64_t>(w->heartbeat_interval_ms, 20, 3600 * 1000);
      last_ack_ms = uv_now(loop);
      heartbeat_timer.start(interval_ms, interval_ms, [this] { beat(); });
      LOG_NOTICE("joined directory " << where << " as " << w->fingerprint << " (heartbeat every " << interval_ms
                                     << " ms)");
      // The callback may stop() or even destroy the registration: check before touching anything.
      std::weak_ptr<bool> still_here = alive;
      if (joined_cb) joined_cb();
      if (still_here.expired()) return false;
      return phase == Phase::joined;
    }
    if (phase == Phase::joined && type == "heartbeat_ack") {
      if (!parse_heartbeat_ack(m)) return fail("directory " + where + " sent a bad heartbeat_ack"), false;
      last_ack_ms = uv_now(loop);
      return true;
    }
    fail("directory " + where + " sent an unexpected '" + type.substr(0, 64) + "' message");
    return false;
  }

  void beat() {
    if (phase != Phase::joined) return;
    // A directory that stops answering (a cut network, a frozen host) is left and rejoined.
    if (uv_now(loop) - last_ack_ms > 3 * interval_ms) return fail("directory " + where + " stopped answering heartbeats");
    conn->write(encode_frame(make_heartbeat(++seq)));
  }

  void drop_connection() {
    resolving.reset();
    if (conn) {
      conn->close();
      finished_conns.push_back(std::move(conn));
    }
    heartbeat_timer.stop();
    join_timer.stop();
  }

  void fail(const std::string& why) {
    if (phase == Phase::stopped || phase == Phase::waiting) return;
    bool was_joined = phase == Phase::joined;
    drop_connection();
    phase = Phase::waiting;
    // Jitter spreads the rejoins of many relays after a directory restart.
    std::uint64_t delay = backoff_ms + crypto::system_rng().uniform(static_cast<std::uint32_t>(backoff_ms / 4 + 1));
    backoff_ms = std::min(std::max<std::uint64_t>(opts.max_retry_ms, 1), backoff_ms * 2);
    if (was_joined || failures_in_a_row == 0)
      LOG_WARN((was_joined ? "lost the directory registration: " : "directory registration failed: ")
               << why << "; retrying in " << delay << " ms");
    else
      LOG_INFO("directory registration failed again: " << why << "; retrying in " << delay << " ms");
    ++failures_in_a_row;
    retry_timer.start(delay, 0, [this] { connect_now(); });
  }
};

RelayRegistration::RelayRegistration(uv_loop_t* loop, Options options)
    : impl_(std::make_unique<Impl>(loop, std::move(options))) {}

RelayRegistration::~RelayRegistration() = default;

void RelayRegistration::start() {
  if (impl_->phase != Impl::Phase::stopped) return;
  impl_->failures_in_a_row = 0;
  impl_->backoff_ms = std::max<std::uint64_t>(1, impl_->opts.min_retry_ms);
  impl_->connect_now();
}

void RelayRegistration::stop() {
  if (impl_->phase == Impl::Phase::stopped) return;
  impl_->drop_connection();
  impl_->retry_timer.stop();
  impl_->phase = Impl::Phase::stopped;
}

bool RelayRegistration::joined() const { return impl_->phase == Impl::Phase::joined; }

void RelayRegistration::on_joined(std::function<void()> cb) { impl_->joined_cb = std::move(cb); }

}  // namespace thor::dir
