// The proxy daemon: SOCKS4/4a/5 (and optionally HTTP CONNECT) on loopback; every application
// connection becomes a stream on a Thor circuit.
//
// It fetches the consensus (ConsensusKeeper), keeps circuits ready and assigns streams to them by
// isolation key (CircuitPool), and runs one ClientSession per application connection. One
// ProxyServer runs on one uv_loop_t; start() and stop() are called on that loop's thread.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/circuit/circuit_client.hpp"
#include "common/result.hpp"
#include "proxy/circuit_pool.hpp"
#include "proxy/client_session.hpp"
#include "proxy/proxy_config.hpp"

namespace thor::proxy {

struct ProxyStats {
  bool have_consensus = false;
  std::size_t consensus_relays = 0;
  std::size_t clients = 0;           // application connections open (SOCKS and HTTP CONNECT)
  std::size_t streams_open = 0;      // connected streams being relayed
  std::size_t requests_pending = 0;  // waiting for a circuit or for the exit's answer
  std::size_t circuits_open = 0;
  std::size_t circuits_building = 0;
  std::size_t circuits_ready = 0;    // open and not yet used by any isolation key
  // Open circuits by isolation key ("" for clients without credentials). The keys hold the
  // credentials applications sent: never log them.
  std::map<std::string, std::size_t> circuits_per_isolation_key;
  ProxyCounters counters;
  PoolCounters circuit_counters;
};

class ProxyServer {
 public:
  using Config = ProxyConfig;

  ProxyServer(uv_loop_t* loop, Config config);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds the SOCKS (and HTTP CONNECT) port and starts fetching the consensus. Errors name the
  // address: "127.0.0.1:9050: cannot listen: address already in use (EADDRINUSE)".
  Status start();
  // Closes the listeners, every client connection, circuit and link; the loop can then end.
  // Final: a stopped proxy does not start again.
  void stop();

  // Ports actually bound (useful with port 0); 0 before start() or when not configured.
  std::uint16_t socks_port() const;
  std::uint16_t http_connect_port() const;

  // A consensus is known and at least one circuit is open.
  bool ready() const;
  ProxyStats stats() const;
  std::vector<PoolCircuitInfo> circuits() const;
  const Config& config() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Whether a listen address is on the loopback interface (127.0.0.0/8 or ::1).
bool is_loopback_address(const std::string& host);

}  // namespace thor::proxy
