// `thor directory` as a process (THOR_EXE): a real key, /status over a raw HTTP GET, a clean exit 0 on
// SIGTERM; a port in use, an unreadable key and a bad flag give one clear line and a non-zero exit.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.hpp"

namespace {

namespace fs = std::filesystem;

std::string thor_exe() {
  const char* p = std::getenv("THOR_EXE");
  return p ? p : "";
}

// A `thor` process with its stderr in a file; killed and reaped when it goes away.
struct Child : thor::test::ChildProcess {
  Child(const std::vector<std::string>& args, const std::string& err_path) : ChildProcess(args, "", err_path) {}
  std::string err() const { return stderr_text(); }
  // Waits until stderr contains needle; false when the child exits or the time runs out first.
  bool wait_for_output(const std::string& needle, std::uint64_t timeout_ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (err().find(needle) == std::string::npos) {
      if (!running() || std::chrono::steady_clock::now() >= end) return err().find(needle) != std::string::npos;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  bool exited(std::uint64_t timeout_ms) { return wait(timeout_ms).has_value(); }
};

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/thor-dir-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

int run_keygen(const std::string& keyfile) {
  Child k({thor_exe(), "keygen", keyfile}, keyfile + ".log");
  REQUIRE(k.exited(10000));
  return WIFEXITED(*k.status()) ? WEXITSTATUS(*k.status()) : -1;
}

// A blocking HTTP GET on 127.0.0.1 (no loop in this test); returns the raw response.
std::string http_get(std::uint16_t port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    }
  }
  close(fd);
  return out;
}

// The port from a log line "... on http://127.0.0.1:PORT/status".
std::uint16_t port_after(const std::string& text, const std::string& prefix) {
  auto at = text.find(prefix);
  if (at == std::string::npos) return 0;
  return static_cast<std::uint16_t>(std::stoi(text.substr(at + prefix.size())));
}

// A listening socket on an ephemeral loopback port, held for the test.
struct HeldPort {
  int fd = -1;
  std::uint16_t port = 0;
  HeldPort() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd, 1) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~HeldPort() { close(fd); }
};

std::size_t line_count(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("thor directory process: serves /status, exits 0 on SIGTERM") {
  REQUIRE_MESSAGE(!thor_exe().empty(), "THOR_EXE is not set (run through meson test)");
  TempDir dir;
  std::string key = (dir.path / "directory.key").string();
  REQUIRE(run_keygen(key) == 0);

  // Options from a config file too (keys are the long flag names).
  std::string conf = (dir.path / "directory.toml").string();
  {
    FILE* f = std::fopen(conf.c_str(), "w");
    REQUIRE(f);
    std::fputs("[directory]\nheartbeat-interval = 0.2\nhttp = \"127.0.0.1:0\"\n", f);
    std::fclose(f);
  }
  Child d({thor_exe(), "directory", "--key", key, "--listen", "127.0.0.1:0", "--config", conf, "--log-level", "info"},
          (dir.path / "directory1.err").string());
  REQUIRE_MESSAGE(d.wait_for_output("/status", 10000), d.err());
  std::uint16_t http_port = port_after(d.err(), "status pages on http://127.0.0.1:");
  REQUIRE(http_port != 0);

  std::string raw = http_get(http_port, "/status");
  REQUIRE_MESSAGE(raw.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, raw);
  auto body = nlohmann::json::parse(raw.substr(raw.find("\r\n\r\n") + 4));
  CHECK(body["relays_running"] == 0);
  CHECK(body["heartbeat_interval_ms"] == 200);
  CHECK(body["directory_fingerprint"].get<std::string>().size() == 40);
  CHECK(body["consensus"]["valid"] == true);
  std::string missing = http_get(http_port, "/missing");
  CHECK(missing.rfind("HTTP/1.1 404", 0) == 0);

  REQUIRE(kill(d.pid(), SIGTERM) == 0);
  REQUIRE_MESSAGE(d.exited(10000), d.err());
  CHECK(WIFEXITED(*d.status()));
  CHECK(WEXITSTATUS(*d.status()) == 0);
  CHECK(d.err().find("directory stopped") != std::string::npos);
}

TEST_CASE("thor directory process: port in use, unreadable key, bad flag -> one clear line, non-zero exit") {
  REQUIRE(!thor_exe().empty());
  TempDir dir;
  std::string key = (dir.path / "directory.key").string();
  REQUIRE(run_keygen(key) == 0);

  HeldPort held;
  {
    Child d({thor_exe(), "directory", "--key", key, "--listen", "127.0.0.1:" + std::to_string(held.port), "--http",
             "127.0.0.1:0"}, (dir.path / "directory2.err").string());
    REQUIRE(d.exited(10000));
    CHECK(WIFEXITED(*d.status()));
    CHECK(WEXITSTATUS(*d.status()) != 0);
    CHECK_MESSAGE(line_count(d.err()) == 1, d.err());
    CHECK_MESSAGE(d.err().find("address already in use") != std::string::npos, d.err());
    CHECK(d.err().find(std::to_string(held.port)) != std::string::npos);
  }
  {
    Child d({thor_exe(), "directory", "--key", key, "--listen", "127.0.0.1:0", "--http",
             "127.0.0.1:" + std::to_string(held.port)}, (dir.path / "directory3.err").string());
    REQUIRE(d.exited(10000));
    CHECK(WEXITSTATUS(*d.status()) != 0);
    CHECK_MESSAGE(line_count(d.err()) == 1, d.err());
    CHECK(d.err().find("address already in use") != std::string::npos);
  }
  {
    Child d({thor_exe(), "directory", "--key", (dir.path / "nope.key").string(), "--listen", "127.0.0.1:0", "--http",
             "127.0.0.1:0"}, (dir.path / "directory4.err").string());
    REQUIRE(d.exited(10000));
    CHECK(WEXITSTATUS(*d.status()) != 0);
    CHECK_MESSAGE(line_count(d.err()) == 1, d.err());
    CHECK(d.err().find("nope.key") != std::string::npos);
  }
  {
    Child d({thor_exe(), "directory", "--key", key, "--listen", "nonsense"}, (dir.path / "directory5.err").string());
    REQUIRE(d.exited(10000));
    CHECK(WEXITSTATUS(*d.status()) != 0);
    CHECK_MESSAGE(line_count(d.err()) == 1, d.err());
    CHECK(d.err().find("--listen") != std::string::npos);
  }
  {
    Child d({thor_exe(), "directory", "--key", key, "--heartbeat-interval", "0"},
            (dir.path / "directory6.err").string());
    REQUIRE(d.exited(10000));
    CHECK(WEXITSTATUS(*d.status()) != 0);
    // The first line names the problem (the command line parser adds a usage hint after it).
    CHECK_MESSAGE(d.err().find("heartbeat-interval") < d.err().find('\n'), d.err());
  }
}
