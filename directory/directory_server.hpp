// The directory daemon: the root of trust of a Thor network. On --listen it speaks the directory
// protocol (common/dir/dir_protocol.hpp): relays join and heartbeat, anyone fetches the signed
// consensus. On --http it serves status pages (/status, /relays, /consensus, /metrics). It runs on the
// caller's libuv loop, single-threaded; the protocol logic lives in common/dir's sans-IO cores.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/crypto/keys.hpp"
#include "common/dir/dir_protocol.hpp"
#include "common/dir/dir_session.hpp"
#include "common/dir/membership.hpp"
#include "common/http/http_request.hpp"
#include "common/http/http_response.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"

namespace thor::directory {

class HttpServer;

class DirectoryServer {
 public:
  struct Config {
    HostPort listen{"0.0.0.0", 50051};  // directory protocol: relays and consensus fetches; port 0 = any
    HostPort http{"127.0.0.1", 50052};  // status pages; port 0 = any
    crypto::IdentityKey identity;       // signs challenges and the consensus
    std::string network = "thor";       // a label carried in the consensus
    std::uint64_t heartbeat_interval_ms = 5000;
    std::uint64_t consensus_interval_ms = 60000;    // rebuilt at least this often; also fresh_until
    std::uint64_t consensus_lifetime_ms = 3600000;  // valid_until - valid_after
    std::uint64_t consensus_debounce_ms = 500;      // membership changes batched this long (<= interval/4)
    std::uint64_t handshake_timeout_ms = 10000;     // a connection that has not joined is closed when idle this long
    std::uint64_t http_timeout_ms = 10000;          // per HTTP request, and idle keep-alive
    std::size_t max_http_header_bytes = 16 * 1024;
    std::size_t max_relays = 10000;
    std::size_t max_connections = 20000;
    std::size_t max_http_connections = 256;
    bool test_network = false;  // Exit flag also for exits to private addresses only
  };

  struct Counters {
    std::uint64_t consensus_fetches = 0;  // over the protocol and GET /consensus
    std::uint64_t consensus_builds = 0;
    std::uint64_t protocol_errors = 0;    // connections closed for a peer's mistake
    std::map<int, std::uint64_t> http_responses;  // by status code
  };

  DirectoryServer(uv_loop_t* loop, Config config);
  ~DirectoryServer();
  DirectoryServer(const DirectoryServer&) = delete;
  DirectoryServer& operator=(const DirectoryServer&) = delete;

  // Binds both ports and starts serving. Errors name the address and the reason
  // ("0.0.0.0:50051: cannot listen: address already in use (EADDRINUSE)").
  Status start();
  // Closes the listeners and every connection; the loop then ends once their handles are closed.
  void stop();
  bool running() const { return started_; }

  std::uint16_t listen_port() const;
  std::uint16_t http_port() const;

  // For the status pages and tests.
  const Config& config() const { return config_; }
  const dir::Membership& members() const { return members_; }
  const dir::Consensus& consensus() const { return consensus_; }
  const nlohmann::json& consensus_envelope() const { return consensus_envelope_; }
  const Counters& counters() const { return counters_; }
  std::int64_t started_ms() const { return started_ms_; }
  std::size_t open_connections() const { return conns_.size(); }
  std::size_t open_http_connections() const;
  // Answers one HTTP request (the status pages); public so tests can call it without sockets.
  http::Response handle_http(const http::Request& req);

 private:
  struct Conn;
  void on_accept(std::unique_ptr<uv::TcpConnection> tcp);
  void on_data(std::uint64_t id, ByteView data);
  void on_closed(std::uint64_t id, const std::string& reason);
  void on_idle(std::uint64_t id);
  void close_conn(std::uint64_t id, bool graceful);
  void sweep();
  void schedule_rebuild();
  void rebuild_consensus();
  std::int64_t now_ms() const;

  uv_loop_t* loop_;
  Config config_;
  dir::Membership members_;
  std::unique_ptr<uv::TcpListener> listener_;
  std::unique_ptr<HttpServer> http_;
  std::map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> retired_;
  uv::Timer reaper_, sweep_timer_, refresh_timer_, debounce_timer_;
  std::uint64_t next_id_ = 1;
  bool started_ = false;
  std::int64_t started_ms_ = 0;

  dir::Consensus consensus_;
  nlohmann::json consensus_envelope_;
  Bytes consensus_frame_;
  std::string consensus_body_;
  std::uint64_t built_generation_ = ~0ULL;
  Counters counters_;
};

}  // namespace thor::directory
