// Everything a relay needs to run, as plain values: the `thor relay` command fills it from flags and
// a config file, tests fill it directly. Every limit has a default sized for a small VPS.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/crypto/keys.hpp"
#include "common/dir/exit_policy.hpp"
#include "common/net_address.hpp"

namespace thor::relay {

// Bounds against abuse and against unbounded memory. Times in milliseconds.
struct RelayLimits {
  // CREATE (or EXTEND toward a link) beyond these: DESTROY resource_limit. A proxy's link carries
  // one user's circuits; a link to another relay carries every circuit between the two, however
  // many users that is (one link per relay pair), so it gets far more room.
  std::size_t max_circuits_per_link = 4096;         // a link from a proxy (anonymous)
  std::size_t max_circuits_per_relay_link = 65536;  // a link to or from a relay (proven identity)
  std::size_t max_streams_per_circuit = 512;     // BEGIN/RESOLVE beyond this: END resource_limit
  std::size_t max_links = 8192;                  // incoming links beyond this are closed at once
  std::size_t max_pending_link_handshakes = 256; // incoming links not yet authenticated
  std::size_t max_pending_extends = 1024;        // circuits waiting for CREATED from the next relay

  // A link whose queue (cells waiting for the socket) rises above link_queue_high stops the links
  // and exit streams that feed it from reading until it falls to link_queue_low.
  std::size_t link_queue_high = 256 * 1024;
  std::size_t link_queue_low = 64 * 1024;
  // An exit stream whose TCP write queue is above stream_queue_high gets no SENDME (so the client
  // stops sending) until it falls to stream_queue_low.
  std::size_t stream_queue_high = 128 * 1024;
  std::size_t stream_queue_low = 32 * 1024;
  // The same for the sum over a circuit's streams, which holds back the circuit-level SENDME.
  std::size_t circuit_queue_high = 512 * 1024;

  std::uint64_t link_handshake_timeout_ms = 15'000;
  std::uint64_t link_idle_timeout_ms = 180'000;     // a link with no circuits for this long is closed
  // A circuit with no cells for this long is destroyed, unless this relay is its exit and it still
  // has streams (an idle SSH session must not die; its exit connection is the resource it holds).
  std::uint64_t circuit_idle_timeout_ms = 3'600'000;
  std::uint64_t extend_timeout_ms = 15'000;         // EXTEND waiting for CREATED
  std::uint64_t connect_timeout_ms = 15'000;        // exit stream: resolve + TCP connect
  std::uint64_t housekeeping_interval_ms = 1'000;   // how often the timeouts above are checked
};

struct RelayConfig {
  crypto::IdentityKey identity;
  HostPort listen{"0.0.0.0", 9001};  // port 0: any free port (tests)
  // The address published in the descriptor. Empty host: derived from listen (see advertise.hpp).
  HostPort advertise{"", 0};
  // No directory: the relay runs unregistered (tests hand its descriptor to a client directly).
  std::optional<HostPort> directory;
  crypto::Ed25519Public directory_key;
  ExitPolicy exit_policy = ExitPolicy::reject_all();
  std::string nickname = "thorrelay";
  std::uint64_t bandwidth = 1'000'000;  // advertised bytes per second
  std::uint64_t onion_key_rotation_ms = 7ull * 24 * 3600 * 1000;  // 0: never rotate
  RelayLimits limits;
};

}  // namespace thor::relay
