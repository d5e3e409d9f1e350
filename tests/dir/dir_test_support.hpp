// Shared helpers for the directory tests: descriptors made from deterministic keys.
#pragma once

#include <chrono>
#include <string>

#include "common/crypto/keys.hpp"
#include "common/crypto/random.hpp"
#include "common/dir/documents.hpp"

namespace thor::dir::testing {

// The error of a failed Result, or "" (for REQUIRE_MESSAGE).
template <class T>
std::string why(const Result<T>& r) {
  return r.ok() ? std::string() : r.error();
}

inline std::int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

inline RelayDescriptor make_descriptor(const crypto::IdentityKey& id, std::uint16_t port, std::int64_t published,
                                       std::string nickname = "relay", std::uint64_t bandwidth = 1 << 20) {
  crypto::DeterministicRng rng(port);
  RelayDescriptor d;
  d.identity = id.public_key();
  d.onion_key = crypto::X25519Keypair::generate(rng).public_key;
  d.nickname = std::move(nickname);
  d.address = HostPort{"127.0.0.1", port};
  d.exit_policy = ExitPolicy::loopback_test_exit();
  d.bandwidth = bandwidth;
  d.version = "thor 0.1.0";
  d.published = published;
  return d;
}

}  // namespace thor::dir::testing
