#include "common/crypto/hash.hpp"

#include <sodium.h>

#include <algorithm>
#include <cassert>

namespace thor::crypto {

std::array<std::uint8_t, 32> blake2b_256(std::initializer_list<ByteView> parts, ByteView key) {
  assert(key.empty() || (key.size() >= crypto_generichash_KEYBYTES_MIN && key.size() <= crypto_generichash_KEYBYTES_MAX));
  crypto_generichash_state st;
  crypto_generichash_init(&st, key.empty() ? nullptr : key.data(), key.size(), 32);
  for (auto p : parts) crypto_generichash_update(&st, p.data(), p.size());
  std::array<std::uint8_t, 32> out{};
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

std::array<std::uint8_t, 32> sha256(ByteView data) {
  std::array<std::uint8_t, 32> out{};
  crypto_hash_sha256(out.data(), data.data(), data.size());
  return out;
}

void kdf_expand(const SymmetricKey& secret, std::string_view label, MutableByteView out) {
  std::size_t done = 0;
  std::uint8_t counter = 1;
  while (done < out.size()) {
    std::uint8_t c[1] = {counter++};
    auto block = blake2b_256({as_bytes(label), ByteView(c, 1)}, secret.view());
    std::size_t n = std::min(block.size(), out.size() - done);
    std::copy_n(block.begin(), n, out.begin() + static_cast<std::ptrdiff_t>(done));
    done += n;
    wipe(MutableByteView(block));
  }
}

}  // namespace thor::crypto
