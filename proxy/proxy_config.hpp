// Everything the proxy needs to run, as plain values: `thor proxy` fills it from flags and a config
// file, tests fill it directly. Times in milliseconds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/crypto/keys.hpp"
#include "common/net_address.hpp"

namespace thor::proxy {

struct ProxyConfig {
  // Where applications connect. Port 0: any free port (tests read it back from the server).
  HostPort socks{"127.0.0.1", 9050};
  std::optional<HostPort> http_connect;  // an HTTP CONNECT proxy port, for programs without SOCKS

  // The directory's client port and its pinned public key.
  HostPort directory{"127.0.0.1", 50051};
  crypto::Ed25519Public directory_key{};

  // Lets a path's relays share a /16: for test networks where every relay is on 127.0.0.1.
  bool allow_same_subnet = false;

  // A circuit takes new streams for this long after its first stream (Tor's MaxCircuitDirtiness),
  // then is closed once its last stream ends.
  std::uint64_t circuit_dirtiness_ms = 600'000;
  // A circuit not built within this is abandoned and another path tried.
  std::uint64_t circuit_build_timeout_ms = 10'000;
  // Circuits built ahead of time, not yet tied to any isolation key, so a request does not wait.
  std::size_t ready_circuits = 2;
  // At most this many circuits being built at once (a burst of requests does not flood relays).
  std::size_t max_building_circuits = 8;
  // New streams go to another circuit once a circuit carries this many (a relay refuses more than
  // its own limit, 512 by default).
  std::size_t max_streams_per_circuit = 256;
  // A relay on a path that failed to build is avoided for this long (unless nothing else is left).
  std::uint64_t relay_failure_exclusion_ms = 60'000;

  // A client that has not finished its SOCKS or HTTP CONNECT request by then is closed.
  std::uint64_t handshake_timeout_ms = 10'000;
  // Every request is answered by then: TTL expired (0x06) or a general failure (0x01).
  std::uint64_t request_timeout_ms = 60'000;
  // Client connections beyond this are closed at once.
  std::size_t max_clients = 16'384;
  // A BEGIN refused because of the exit (its policy, or a name it could not resolve) is tried again
  // on a circuit through another exit this many times.
  int exit_retries = 2;
  // A stream whose circuit died before it connected is tried again on a new circuit this many times.
  int circuit_retries = 3;

  // Data from the exit for a client: once the client's socket queue holds more than high_water
  // bytes, the stream stops sending SENDMEs (the exit pauses) until the queue falls to low_water.
  std::size_t client_write_high_water = 128 * 1024;
  std::size_t client_write_low_water = 32 * 1024;

  // Consensus fetching: retried after min, doubling up to max, while there is none or it has too
  // few relays for a path.
  std::uint64_t consensus_retry_min_ms = 500;
  std::uint64_t consensus_retry_max_ms = 30'000;
};

}  // namespace thor::proxy
