// One application connection to the proxy (SOCKS or HTTP CONNECT): the handshake through the
// sans-IO core, a circuit from the pool, a stream on it, then bytes spliced both ways with
// back-pressure. Everything a session holds is small and fixed, except the bytes of one read kept
// between the end of the handshake and CONNECTED (the client's early data).
//
//   handshake ──request──> waiting for a circuit ──> connecting / resolving ──CONNECTED──> open
//        │                         │   ^                  │                                │
//        └─ bad input, timeout     │   └── circuit died, exit refused: another circuit ───┘│
//                                  └── deadline ──> error reply ──> closing <── END ──────┘
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/circuit/circuit_client.hpp"
#include "common/socks/http_connect.hpp"
#include "common/socks/socks_server.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"
#include "proxy/circuit_pool.hpp"
#include "proxy/proxy_config.hpp"

namespace thor::proxy {

// Totals since start, for stats and tests.
struct ProxyCounters {
  std::uint64_t clients_accepted = 0;
  std::uint64_t clients_refused = 0;       // over max_clients
  std::uint64_t handshake_failures = 0;    // malformed or unsupported requests (answered or closed)
  std::uint64_t handshake_timeouts = 0;    // stalled mid-handshake
  std::uint64_t requests = 0;              // complete requests (CONNECT, RESOLVE, RESOLVE_PTR)
  std::uint64_t requests_succeeded = 0;
  std::uint64_t requests_failed = 0;       // answered with an error reply
  std::uint64_t request_timeouts = 0;      // of those, by the overall deadline
  std::uint64_t exit_retries = 0;          // tried again through another exit
  std::uint64_t circuit_retries = 0;       // tried again after the circuit died
  std::uint64_t streams_cut = 0;           // connected streams closed because their circuit died
  std::uint64_t bytes_to_network = 0;      // from applications
  std::uint64_t bytes_from_network = 0;    // to applications
};

// What sessions share: the proxy's parts, and a way to say "I am done" (the owner frees the
// session later, never inside its own callbacks).
struct SessionContext {
  uv_loop_t* loop = nullptr;
  const ProxyConfig* config = nullptr;
  circuit::CircuitClient* client = nullptr;
  CircuitPool* pool = nullptr;
  ProxyCounters* counters = nullptr;
  std::function<void(std::uint64_t id)> finished;
};

class ClientSession {
 public:
  enum class Protocol { socks, http_connect };
  enum class State { handshake, waiting_circuit, connecting, resolving, open, closing, done };

  ClientSession(SessionContext& ctx, std::uint64_t id, Protocol protocol, std::unique_ptr<uv::TcpConnection> tcp);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  void start();
  // Ends the session at once (the proxy stops): no reply, the stream is closed.
  void abort();

  std::uint64_t id() const { return id_; }
  State state() const { return state_; }
  circuit::CircuitRef circuit() const { return circuit_; }

 private:
  enum class Command { connect, resolve, resolve_ptr };

  void on_client_data(ByteView data);
  void on_client_closed(const std::string& reason);
  void handshake_input(ByteView data);
  void handle_request();
  void attach();
  void on_circuit(circuit::CircuitRef ref);
  void on_connected(const std::string& address);
  void on_stream_data(ByteView data);
  void on_stream_end(const circuit::StreamEnd& end);
  void on_writable();
  void on_resolved(const circuit::ResolveOutcome& outcome);
  void on_deadline();
  bool retry_elsewhere(EndReason reason);
  void fail(EndReason reason, const std::string& why);
  void close_gracefully();
  void release_circuit(EndReason reason);
  void finish();
  CircuitNeed need() const;

  SessionContext& ctx_;
  std::uint64_t id_;
  Protocol protocol_;
  State state_ = State::handshake;
  std::unique_ptr<uv::TcpConnection> tcp_;
  uv::Timer timer_;  // handshake timeout, then the request's deadline, then the closing linger

  // Handshake: only the one for protocol_ exists, and only until the request is complete.
  std::unique_ptr<socks::ServerHandshake> socks_;
  std::unique_ptr<socks::HttpConnectParser> http_;
  Bytes inbuf_;  // unconsumed handshake bytes, then the early data

  // The request.
  Command command_ = Command::connect;
  socks::Version version_ = socks::Version::v5;
  HostPort target_;
  std::string isolation_key_;
  std::vector<std::string> avoid_exits_;
  int exit_retries_left_ = 0;
  int resolve_retries_left_ = 1;
  int circuit_retries_left_ = 0;

  CircuitPool::WaiterId waiter_ = 0;
  circuit::CircuitRef circuit_ = 0;
  circuit::StreamRef stream_ = 0;
  bool client_paused_ = false;  // not reading the client: the stream's buffer is full
  bool stream_paused_ = false;  // the stream withholds SENDMEs: the client's socket queue is full
  std::shared_ptr<bool> alive_;
};

}  // namespace thor::proxy
