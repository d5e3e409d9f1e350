#include "common/crypto/random.hpp"

#include <sodium.h>

#include <cassert>

namespace thor::crypto {

std::uint32_t Rng::uniform(std::uint32_t upper_bound) {
  assert(upper_bound > 0);
  // Rejection sampling, as randombytes_uniform does, so any Rng gives an unbiased choice.
  const std::uint32_t min = (0U - upper_bound) % upper_bound;
  for (;;) {
    std::uint8_t b[4];
    fill(b);
    std::uint32_t r = (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
    if (r >= min) return r % upper_bound;
  }
}

std::uint64_t Rng::u64() {
  std::uint8_t b[8];
  fill(b);
  std::uint64_t v = 0;
  for (auto x : b) v = (v << 8) | x;
  return v;
}

namespace {
class SystemRng final : public Rng {
 public:
  void fill(std::span<std::uint8_t> out) override { randombytes_buf(out.data(), out.size()); }
};
}  // namespace

Rng& system_rng() {
  static SystemRng rng;
  return rng;
}

DeterministicRng::DeterministicRng(std::uint64_t seed) {
  for (int i = 0; i < 8; ++i) seed_[i] = static_cast<std::uint8_t>(seed >> (8 * i));
}

void DeterministicRng::fill(std::span<std::uint8_t> out) {
  // Each call draws from a fresh seed (seed XOR counter) so calls never repeat bytes.
  std::array<std::uint8_t, 32> s = seed_;
  std::uint64_t c = counter_++;
  for (int i = 0; i < 8; ++i) s[24 + i] ^= static_cast<std::uint8_t>(c >> (8 * i));
  randombytes_buf_deterministic(out.data(), out.size(), s.data());
}

}  // namespace thor::crypto
