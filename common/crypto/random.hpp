// Where randomness comes from. Handshakes and key generation take an Rng& so that tests can pass a
// DeterministicRng and pin exact bytes; daemons pass system_rng().
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace thor::crypto {

class Rng {
 public:
  virtual ~Rng() = default;
  virtual void fill(std::span<std::uint8_t> out) = 0;
  std::uint32_t uniform(std::uint32_t upper_bound);  // in [0, upper_bound), unbiased; upper_bound > 0
  std::uint64_t u64();
};

// libsodium's randombytes (the OS generator).
Rng& system_rng();

// A reproducible stream from a 32-byte seed (libsodium's randombytes_buf_deterministic, with a
// counter so successive calls differ). For tests only.
class DeterministicRng final : public Rng {
 public:
  explicit DeterministicRng(std::uint64_t seed);
  explicit DeterministicRng(const std::array<std::uint8_t, 32>& seed) : seed_(seed) {}
  void fill(std::span<std::uint8_t> out) override;

 private:
  std::array<std::uint8_t, 32> seed_{};
  std::uint64_t counter_ = 0;
};

}  // namespace thor::crypto
