// The relay daemon: accepts links, builds and forwards circuits, extends them to the next relay,
// and, as an exit, carries streams to TCP servers under its exit policy. It moves cells between
// libuv and the protocol cores in common/ (cells, relay messages, ntor, onion layers).
//
// One RelayServer runs on one uv_loop_t; start() and stop() are called on that loop's thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "common/dir/documents.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"
#include "relay/relay_config.hpp"

namespace thor::relay {

// Counters for operators (logs) and for tests (memory bounds, leaks).
struct RelayStats {
  // Current state.
  std::size_t links = 0;
  std::size_t links_handshaking = 0;  // incoming links not yet authenticated
  std::size_t circuits = 0;
  std::size_t streams = 0;            // exit streams, resolves included
  std::size_t pending_extends = 0;
  std::size_t link_queued_bytes = 0;   // sum over links of what waits for the socket
  std::size_t stream_queued_bytes = 0; // sum over exit streams of TCP write queues and buffers
  // Totals since start.
  std::uint64_t circuits_created = 0;
  std::uint64_t circuits_destroyed = 0;
  std::uint64_t streams_opened = 0;
  std::uint64_t cells_received = 0;
  std::uint64_t cells_sent = 0;
  std::uint64_t exit_bytes_read = 0;     // from exit TCP connections
  std::uint64_t exit_bytes_written = 0;  // to exit TCP connections
  std::uint64_t protocol_errors = 0;     // circuits torn down because a peer broke the protocol
  std::uint64_t exit_policy_refusals = 0;
  std::uint64_t link_pauses = 0;         // times a link stopped reading for back-pressure
  std::uint64_t stream_pauses = 0;       // times an exit stream stopped reading
  // High-water marks: the most one link queued, the most one exit stream held (TCP write queue
  // plus data received before CONNECTED plus data read but not yet packaged).
  std::size_t peak_link_queued_bytes = 0;
  std::size_t peak_stream_queued_bytes = 0;
};

class RelayServer {
 public:
  using Config = RelayConfig;

  RelayServer(uv_loop_t* loop, Config config);
  ~RelayServer();
  RelayServer(const RelayServer&) = delete;
  RelayServer& operator=(const RelayServer&) = delete;

  // Binds the listener and, when a directory is configured, starts registering with it.
  // Errors: the listen address is unusable ("0.0.0.0:9001: cannot listen: address already in use").
  Status start();
  // Closes the listener, every link and exit stream and the registration; the loop can then end.
  void stop();

  // The port bound (useful with listen port 0); 0 before start().
  std::uint16_t listen_port() const;
  // The address published in the descriptor (valid after start()).
  HostPort advertised_address() const;
  // The descriptor this relay publishes now (current onion key, published = now).
  dir::RelayDescriptor descriptor() const;
  const crypto::Ed25519Public& identity() const;

  // Makes a new onion key; the previous one keeps working for one more rotation period, and the
  // descriptor is republished. Runs by itself every onion_key_rotation_ms.
  void rotate_onion_key();

  // True once the directory has accepted this relay's join (false without a directory).
  bool registered() const;
  // Called each time the directory accepts a (re)join.
  void on_registered(std::function<void()> cb);

  RelayStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace thor::relay
