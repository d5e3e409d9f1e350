// Fixtures for the proxy's tests: a loop that runs until a condition holds, a whole Thor network
// in-process on that loop (directory, relays, proxy), local servers (HTTP file, echo), a raw TCP
// client for byte-level SOCKS exchanges, and child processes (curl, python3) run while the loop
// keeps serving them.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"
#include "directory/directory_server.hpp"
#include "proxy/proxy_server.hpp"
#include "relay/relay_server.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/support/test_loop.hpp"

namespace thor::proxy::test {

// A private loop (tests/support/test_loop.hpp); declare it first so that it outlives its users.
using thor::test::TestLoop;

// Answers every GET with `body` (HTTP/1.0, Content-Length, then close).
class FileServer {
 public:
  FileServer(uv_loop_t* loop, Bytes body);
  std::uint16_t port() const { return listener_.bound_port(); }
  std::size_t requests() const { return requests_; }

 private:
  struct Conn {
    std::unique_ptr<uv::TcpConnection> tcp;
    std::string head;
    bool answered = false;
  };
  uv_loop_t* loop_;
  Bytes body_;
  uv::TcpListener listener_;
  std::list<Conn> conns_;
  std::size_t requests_ = 0;
};

using thor::test::EchoServer;  // tests/support/echo_server.hpp

// A TCP client that records what it receives and whether the peer closed.
class RawClient {
 public:
  RawClient(uv_loop_t* loop, std::uint16_t port);
  void send(ByteView data);
  void send(const std::string& text);
  bool connected() const { return connected_; }
  bool closed() const { return closed_; }
  const Bytes& received() const { return received_; }
  std::string received_text() const { return std::string(received_.begin(), received_.end()); }
  void clear() { received_.clear(); }
  // Forgets the first n bytes received (a reply already looked at).
  void drop(std::size_t n) { received_.erase(received_.begin(), received_.begin() + static_cast<std::ptrdiff_t>(n)); }
  void close() { tcp_->close(); }
  void pause() { tcp_->pause_reading(); }
  void resume() { tcp_->resume_reading(); }

 private:
  std::unique_ptr<uv::TcpConnection> tcp_;
  Bytes pending_;
  Bytes received_;
  bool connected_ = false;
  bool closed_ = false;
};

// SOCKS5 bytes for tests.
Bytes socks5_greeting_noauth();                                           // 05 01 00
Bytes socks5_greeting_userpass();                                         // 05 01 02
Bytes socks5_auth(const std::string& user, const std::string& pass);      // 01 len user len pass
Bytes socks5_request(std::uint8_t cmd, const std::string& host, std::uint16_t port);  // name or IPv4 literal

// A directory, relays and a proxy, all in-process on one loop, on loopback with free ports.
struct NetworkOptions {
  int relays = 4;
  // Called on each relay's config before it starts (index from 0).
  std::function<void(int, relay::RelayConfig&)> customize_relay;
  std::function<void(ProxyConfig&)> customize_proxy;
  bool start_proxy = true;
};

class Network {
 public:
  Network(TestLoop& loop, NetworkOptions options = {});
  ~Network();
  directory::DirectoryServer& directory() { return *directory_; }
  relay::RelayServer& relay(int i) { return *relays_.at(static_cast<std::size_t>(i)); }
  int relay_count() const { return static_cast<int>(relays_.size()); }
  // Adds and starts one more relay; returns its index.
  int add_relay(const std::function<void(relay::RelayConfig&)>& customize = {});
  void stop_relay(int i);
  // Waits until the directory's consensus lists `count` running relays.
  bool wait_for_consensus(std::size_t count, std::uint64_t limit_ms = 10'000);
  void start_proxy();
  ProxyServer& proxy() { return *proxy_; }
  std::uint16_t socks_port() const { return proxy_->socks_port(); }
  const crypto::IdentityKey& directory_key() const { return directory_key_; }
  // The relay index whose descriptor has this fingerprint, or -1.
  int relay_index(const std::string& fingerprint) const;

 private:
  TestLoop& loop_;
  NetworkOptions options_;
  crypto::IdentityKey directory_key_;
  std::unique_ptr<directory::DirectoryServer> directory_;
  std::vector<std::unique_ptr<relay::RelayServer>> relays_;
  std::vector<std::string> fingerprints_;
  std::vector<bool> stopped_;
  std::unique_ptr<ProxyServer> proxy_;
};

// A child process run while the loop keeps turning (so in-process servers answer it); its stdout is
// captured, its stderr is the test's.
struct ChildResult {
  bool exited = false;  // false: killed after the time limit
  int exit_code = -1;
  std::string out;      // its standard output
};
ChildResult run_child(TestLoop& loop, const std::vector<std::string>& argv, std::uint64_t limit_ms = 30'000);
// A child process that runs in the background until the object goes away (SIGTERM, then SIGKILL).
class BackgroundChild {
 public:
  // stderr_path: where its standard error goes ("" to inherit).
  BackgroundChild(TestLoop& loop, const std::vector<std::string>& argv, const std::string& stderr_path = "");
  ~BackgroundChild();
  BackgroundChild(const BackgroundChild&) = delete;
  BackgroundChild& operator=(const BackgroundChild&) = delete;
  bool started() const { return child_.started(); }
  bool running() { return child_.running(); }
  int exit_code() const { return thor::test::ChildProcess::exit_code(child_.status()); }
  void terminate();  // SIGTERM and wait (up to 5 s, then SIGKILL), the loop turning meanwhile

 private:
  TestLoop& loop_;
  thor::test::ChildProcess child_;
};

// Whether a program can be found on PATH.
bool have_program(const std::string& name);

// Deterministic test data and its SHA-256 as hex (computed by sha256sum, as a user would).
Bytes test_body(std::size_t n, std::uint64_t seed);
std::string sha256_hex_of_file(const std::string& path);
std::string temp_path(const std::string& name);
bool file_equals(const std::string& path, const Bytes& expected);

}  // namespace thor::proxy::test
