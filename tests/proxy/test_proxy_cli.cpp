// `thor proxy` as a user runs it: flag errors, and a whole network of `thor` processes (directory,
// three relays, proxy) carrying curl to a local server.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/proxy/proxy_test_support.hpp"

using namespace thor;
using namespace thor::proxy::test;

namespace {

std::string thor_exe() {
  const char* e = std::getenv("THOR_EXE");
  return e ? e : "";
}

// Runs thor with its standard error folded into the captured output.
ChildResult run_thor(TestLoop& loop, const std::vector<std::string>& args, std::uint64_t limit_ms = 10'000) {
  std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", thor_exe()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_child(loop, argv, limit_ms);
}

std::uint16_t free_port(TestLoop& loop) {
  uv::TcpListener l(loop.get());
  if (!l.listen({"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {})) return 0;
  return l.bound_port();
}

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A directory key pair written with `thor keygen`.
struct Keys {
  std::string secret, pub;
};
Keys make_keys(TestLoop& loop, const std::string& name) {
  Keys k{temp_path(name + ".key"), temp_path(name + ".pub")};
  std::remove(k.secret.c_str());
  std::remove(k.pub.c_str());
  run_thor(loop, {"keygen", k.secret});
  run_thor(loop, {"keygen", "--public", k.secret, k.pub});
  return k;
}

}  // namespace

TEST_CASE("thor proxy: a bad flag, an unreadable key or a busy port give one clear line and a failure") {
  if (thor_exe().empty()) {
    MESSAGE("THOR_EXE not set: skipped");
    return;
  }
  TestLoop loop;
  const Keys keys = make_keys(loop, "cli-dir");

  ChildResult r = run_thor(loop, {"proxy", "--directory", "127.0.0.1:1", "--directory-key", keys.pub, "--bogus"});
  CHECK(r.exit_code == 2);
  CHECK(r.out.find("--bogus") != std::string::npos);

  r = run_thor(loop, {"proxy", "--directory", "127.0.0.1:1", "--directory-key", "/nonexistent/dir.pub"});
  CHECK(r.exit_code != 0);
  CHECK(lines(r.out) == 1);
  CHECK(r.out.find("/nonexistent/dir.pub") != std::string::npos);

  r = run_thor(loop, {"proxy", "--directory", "127.0.0.1:1", "--directory-key", keys.pub, "--socks", "localhost:9050"});
  CHECK(r.exit_code != 0);
  CHECK(lines(r.out) == 1);
  CHECK(r.out.find("--socks") != std::string::npos);

  r = run_thor(loop, {"proxy", "--directory", "nowhere", "--directory-key", keys.pub});
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("--directory") != std::string::npos);

  // A port already taken (by this test).
  uv::TcpListener busy(loop.get());
  REQUIRE(busy.listen({"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {}));
  r = run_thor(loop, {"proxy", "--directory", "127.0.0.1:1", "--directory-key", keys.pub, "--socks",
                  "127.0.0.1:" + std::to_string(busy.bound_port())});
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("address already in use") != std::string::npos);
  CHECK(r.out.find("[") == std::string::npos);  // no log lines before the error: just the one line

  r = run_thor(loop, {"proxy", "--directory-key", keys.pub});
  CHECK(r.exit_code != 0);
  CHECK(lines(r.out) == 1);
  CHECK(r.out.find("--directory") != std::string::npos);

  // The same options from a --config file (keys named like the long flags); unknown keys refused.
  const std::uint16_t config_port = free_port(loop);
  const std::string config = temp_path("proxy.toml");
  {
    std::ofstream f(config);
    f << "[proxy]\ndirectory = \"127.0.0.1:1\"\ndirectory-key = \"" << keys.pub << "\"\nsocks = \"127.0.0.1:"
      << config_port << "\"\nno-distinct-subnets = true\n";
  }
  const std::string config_log = temp_path("config.log");
  {
    BackgroundChild p(loop, {thor_exe(), "proxy", "--config", config}, config_log);
    REQUIRE(p.started());
    loop.run_until([&] { return slurp(config_log).find("SOCKS proxy on") != std::string::npos; }, 5000);
    p.terminate();
    CHECK(p.exit_code() == 0);
  }
  CHECK(slurp(config_log).find("SOCKS proxy on 127.0.0.1:" + std::to_string(config_port)) != std::string::npos);
  {
    std::ofstream f(config, std::ios::app);
    f << "bogus = 1\n";
  }
  r = run_thor(loop, {"proxy", "--config", config});
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("bogus") != std::string::npos);
  std::remove(config.c_str());
  std::remove(config_log.c_str());

  // Binding a non-loopback address is allowed, with a warning (then SIGTERM stops it cleanly).
  const std::uint16_t port = free_port(loop);
  const std::string log = temp_path("warn.log");
  {
    BackgroundChild p(loop, {thor_exe(), "proxy", "--directory", "127.0.0.1:1", "--directory-key", keys.pub,
                             "--socks", "0.0.0.0:" + std::to_string(port)},
                      log);
    REQUIRE(p.started());
    loop.run_until([&] { return slurp(log).find("not a loopback address") != std::string::npos; }, 5000);
    p.terminate();
    CHECK(p.exit_code() == 0);
  }
  CHECK(slurp(log).find("not a loopback address") != std::string::npos);
  std::remove(log.c_str());
  std::remove(keys.secret.c_str());
  std::remove(keys.pub.c_str());
}

TEST_CASE("thor directory, three thor relays and thor proxy carry curl --socks5-hostname to a local server") {
  if (thor_exe().empty() || !have_program("curl")) {
    MESSAGE("THOR_EXE or curl missing: skipped");
    return;
  }
  TestLoop loop;
  const Bytes body = test_body(2 * 1024 * 1024, 42);
  FileServer files(loop.get(), body);
  const Keys dir = make_keys(loop, "net-dir");
  const std::uint16_t dir_port = free_port(loop), http_port = free_port(loop), socks_port = free_port(loop);
  const std::string dir_addr = "127.0.0.1:" + std::to_string(dir_port);

  std::vector<std::unique_ptr<BackgroundChild>> procs;
  procs.push_back(std::make_unique<BackgroundChild>(
      loop, std::vector<std::string>{thor_exe(), "directory", "--key", dir.secret, "--listen", dir_addr, "--http",
                                     "127.0.0.1:" + std::to_string(http_port), "--heartbeat-interval", "0.3",
                                     "--consensus-interval", "1", "--test-network"},
      "/dev/null"));
  loop.run_for(200);
  std::vector<std::string> relay_keys;
  for (int i = 0; i < 3; ++i) {
    const std::string key = temp_path("relay" + std::to_string(i) + ".key");
    std::remove(key.c_str());
    run_thor(loop, {"keygen", key});
    relay_keys.push_back(key);
    procs.push_back(std::make_unique<BackgroundChild>(
        loop, std::vector<std::string>{thor_exe(), "relay", "--key", key, "--directory", dir_addr, "--directory-key",
                                       dir.pub, "--listen", "127.0.0.1:" + std::to_string(free_port(loop)),
                                       "--nickname", "cli" + std::to_string(i), "--exit-policy",
                                       "accept 127.0.0.0/8:*, reject *:*"},
        "/dev/null"));
  }
  const std::string proxy_log = temp_path("proxy.log");
  procs.push_back(std::make_unique<BackgroundChild>(
      loop, std::vector<std::string>{thor_exe(), "proxy", "--directory", dir_addr, "--directory-key", dir.pub,
                                     "--socks", "127.0.0.1:" + std::to_string(socks_port), "--no-distinct-subnets",
                                     "--log-level", "info"},
      proxy_log));
  for (const auto& p : procs) REQUIRE(p->started());

  // The proxy answers once it has a consensus with three relays and a circuit; a request made
  // before then waits for it.
  const std::string out = temp_path("cli-out");
  ChildResult r = run_child(loop, {"curl", "-sS", "--max-time", "40", "--socks5-hostname",
                                   "127.0.0.1:" + std::to_string(socks_port), "-o", out, "-w", "%{http_code}",
                                   "http://localhost:" + std::to_string(files.port()) + "/"},
                            50'000);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "200");
  CHECK(file_equals(out, body));
  const std::string log = slurp(proxy_log);
  CHECK(log.find(" built in ") != std::string::npos);
  // Destinations never appear in the log at info.
  CHECK(log.find("localhost:" + std::to_string(files.port())) == std::string::npos);

  for (auto it = procs.rbegin(); it != procs.rend(); ++it) {
    (*it)->terminate();
    CHECK((*it)->exit_code() == 0);
  }
  std::remove(out.c_str());
  std::remove(proxy_log.c_str());
  for (const auto& k : relay_keys) std::remove(k.c_str());
  std::remove(dir.secret.c_str());
  std::remove(dir.pub.c_str());
}
