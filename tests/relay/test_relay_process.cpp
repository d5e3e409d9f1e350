// `thor relay` as an operator runs it: three relay processes and a `thor directory` process started
// from the command line carry a stream from a test client to a local server and back; a relay
// killed mid-stream tears the circuit down; bad flags, unreadable keys and a taken port each end
// the process with one clear line and a non-zero status.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/crypto/hash.hpp"
#include "common/dir/directory_client.hpp"
#include "common/keyfile.hpp"
#include "tests/relay/relay_test_support.hpp"
#include "tests/support/child_process.hpp"

using namespace thor;
using namespace thor::relay::test;
using thor::test::ChildProcess;
namespace fs = std::filesystem;

namespace {

std::string thor_exe() {
  const char* e = std::getenv("THOR_EXE");
  return e ? e : "";
}

// A `thor` process with its stderr (the log) in a file; killed and reaped when it goes away.
struct Child : ChildProcess {
  Child(const std::vector<std::string>& args, const std::string& log_path) : ChildProcess(args, "", log_path) {}
  std::string log() const { return stderr_text(); }
};

// Runs a command to completion (at most 10 s); returns its exit code (or -1) and stderr.
std::pair<int, std::string> run(const std::vector<std::string>& args, const std::string& log_path) {
  Child c(args, log_path);
  auto st = c.wait(10'000);
  if (!st || !WIFEXITED(*st)) return {-1, c.log()};
  return {WEXITSTATUS(*st), c.log()};
}

std::uint16_t free_port() {
  TestLoop L;
  uv::TcpListener l(L.get());
  auto st = l.listen({"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {});
  REQUIRE(st);
  return l.bound_port();
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "thor-relay-test-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::size_t line_count(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("three `thor relay` processes and `thor directory` carry a stream to a local server") {
  const std::string exe = thor_exe();
  REQUIRE_MESSAGE(!exe.empty(), "THOR_EXE is not set (run through meson test)");
  TempDir dir;
  REQUIRE(run({exe, "keygen", dir / "dir.key"}, dir / "keygen.log").first == 0);
  REQUIRE(run({exe, "keygen", "--public", dir / "dir.key", dir / "dir.pub"}, dir / "keygen.log").first == 0);
  for (int i = 1; i <= 3; ++i)
    REQUIRE(run({exe, "keygen", dir / ("relay" + std::to_string(i) + ".key")}, dir / "keygen.log").first == 0);
  auto dir_pub = read_public_key_file(dir / "dir.pub");
  REQUIRE(dir_pub);

  const HostPort dir_addr{"127.0.0.1", free_port()};
  Child directory({exe, "directory", "--key", dir / "dir.key", "--listen", dir_addr.to_string(), "--http",
                   "127.0.0.1:" + std::to_string(free_port()), "--heartbeat-interval", "0.5", "--test-network"},
                  dir / "directory.log");
  REQUIRE(directory.pid() > 0);
  std::vector<std::unique_ptr<Child>> relays;
  for (int i = 1; i <= 3; ++i) {
    std::string n = std::to_string(i);
    relays.push_back(std::make_unique<Child>(
        std::vector<std::string>{exe, "relay", "--key", dir / ("relay" + n + ".key"), "--directory",
                                 dir_addr.to_string(), "--directory-key", dir / "dir.pub", "--listen", "127.0.0.1:0",
                                 "--nickname", "proc" + n, "--exit-policy", "accept 127.0.0.0/8:*, reject *:*",
                                 "--log-level", "info"},
        dir / ("relay" + n + ".log")));
    REQUIRE(relays.back()->pid() > 0);
  }

  TestLoop L;
  EchoServer echo(L.get());
  // The relays join; the consensus lists all three.
  std::optional<dir::Consensus> consensus;
  std::shared_ptr<void> token;
  const std::uint64_t deadline = uv_hrtime() + 20'000'000'000ull;
  while (uv_hrtime() < deadline) {
    std::optional<Result<dir::Consensus>> got;
    token = dir::fetch_consensus(L.get(), dir_addr, *dir_pub, [&](Result<dir::Consensus> r) { got = std::move(r); });
    run_until(L.get(), [&] { return got.has_value(); }, 5000);
    if (got && *got && (*got)->relays.size() == 3) {
      consensus = std::move(**got);
      break;
    }
    run_for(L.get(), 100);
  }
  REQUIRE_MESSAGE(consensus.has_value(), "directory log:\n" << directory.log() << "\nrelay1 log:\n" << relays[0]->log());

  std::vector<dir::ConsensusRelay> path;
  for (const char* nick : {"proc1", "proc2", "proc3"})
    for (auto& r : consensus->relays)
      if (r.descriptor.nickname == nick) path.push_back(r);
  REQUIRE(path.size() == 3);

  circuit::CircuitClient client(L.get());
  auto circ = std::make_shared<CircuitProbe>();
  circuit::CircuitCallbacks cb;
  cb.on_built = [circ] { circ->built = true; };
  cb.on_closed = [circ](const circuit::CircuitClosed& c) { circ->closed = c; };
  circ->ref = client.build_circuit(path, std::move(cb));
  REQUIRE(run_until(L.get(), [&] { return circ->done(); }, 15'000));
  REQUIRE_MESSAGE(circ->built, (circ->closed ? circ->closed->message : std::string()));

  auto s = std::make_shared<StreamProbe>();
  s->outgoing = pattern(5, 0, 2'000'000);
  open_stream(client, circ->ref, {"127.0.0.1", echo.port()}, s);
  REQUIRE(run_until(L.get(), [&] { return s->received.size() >= s->outgoing.size() || s->ended; }, 30'000));
  REQUIRE(s->received.size() == s->outgoing.size());
  CHECK(crypto::sha256(s->received) == crypto::sha256(s->outgoing));

  // The middle relay is killed mid-stream: the guard tells the client the circuit is gone.
  auto s2 = std::make_shared<StreamProbe>();
  s2->outgoing_seed = 6;
  s2->outgoing_total = 200ull * 1024 * 1024;
  s2->keep_data = false;
  open_stream(client, circ->ref, {"127.0.0.1", echo.port()}, s2);
  REQUIRE(run_until(L.get(), [&] { return s2->received_count > 200'000; }, 15'000));
  relays[1]->signal(SIGKILL);
  REQUIRE(run_until(L.get(), [&] { return circ->closed.has_value(); }, 10'000));
  CHECK(circ->closed->reason == DestroyReason::channel_closed);
  CHECK(s2->ended.has_value());
  CHECK(run_until(L.get(), [&] { return echo.connections_open() == 0; }, 10'000));

  // The others stop cleanly on SIGTERM.
  for (std::size_t i : {0u, 2u}) {
    relays[i]->signal(SIGTERM);
    auto st = relays[i]->wait(10'000);
    REQUIRE(st.has_value());
    CHECK(WIFEXITED(*st));
    CHECK(WEXITSTATUS(*st) == 0);
  }
  CHECK(relays[0]->log().find("joined the directory") != std::string::npos);
  // The exit never logs the destination at the default levels.
  const std::string exit_log = relays[2]->log();
  CHECK(exit_log.find("joined the directory") != std::string::npos);
  CHECK(exit_log.find(std::to_string(echo.port())) == std::string::npos);
  directory.signal(SIGTERM);
  CHECK(directory.wait(10'000).has_value());
}

TEST_CASE("`thor relay` refuses bad input with one clear line and a non-zero status") {
  const std::string exe = thor_exe();
  REQUIRE(!exe.empty());
  TempDir dir;
  REQUIRE(run({exe, "keygen", dir / "relay.key"}, dir / "k.log").first == 0);
  REQUIRE(run({exe, "keygen", "--public", dir / "relay.key", dir / "dir.pub"}, dir / "k.log").first == 0);
  const std::vector<std::string> base{exe, "relay", "--directory", "127.0.0.1:1", "--directory-key", dir / "dir.pub"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };

  SUBCASE("unknown flag") {
    auto [code, err] = run(with({"--key", dir / "relay.key", "--bogus"}), dir / "e.log");
    CHECK(code != 0);
    CHECK(err.find("--bogus") != std::string::npos);
  }
  SUBCASE("unreadable key") {
    auto [code, err] = run(with({"--key", dir / "missing.key"}), dir / "e.log");
    CHECK(code == 1);
    CHECK(line_count(err) == 1);
    CHECK(err.find("missing.key") != std::string::npos);
  }
  SUBCASE("bad exit policy") {
    auto [code, err] = run(with({"--key", dir / "relay.key", "--exit-policy", "accept everything"}), dir / "e.log");
    CHECK(code == 1);
    CHECK(line_count(err) == 1);
    CHECK(err.find("--exit-policy") != std::string::npos);
  }
  SUBCASE("port in use") {
    TestLoop L;
    uv::TcpListener taken(L.get());
    REQUIRE(taken.listen({"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {}));
    auto [code, err] = run(with({"--key", dir / "relay.key", "--listen", "127.0.0.1:" + std::to_string(taken.bound_port())}),
                           dir / "e.log");
    CHECK(code == 1);
    CHECK(line_count(err) == 1);
    CHECK(err.find("address already in use") != std::string::npos);
  }
  SUBCASE("a config file supplies the flags") {
    std::ofstream(dir / "relay.toml") << "key = \"" << (dir / "missing-from-config.key") << "\"\n"
                                      << "nickname = \"fromconfig\"\n";
    auto [code, err] = run(with({"--config", dir / "relay.toml"}), dir / "e.log");
    CHECK(code == 1);
    CHECK(err.find("missing-from-config.key") != std::string::npos);
  }
}
