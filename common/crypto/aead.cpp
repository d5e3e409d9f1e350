#include "common/crypto/aead.hpp"

#include <sodium.h>

#include <cassert>

namespace thor::crypto {
namespace {

static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == kAeadTagSize);
static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == SymmetricKey::size);
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12);

void make_nonce(std::uint8_t (&nonce)[12], std::uint64_t n) {
  for (int i = 0; i < 4; ++i) nonce[i] = 0;
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<std::uint8_t>(n >> (8 * (7 - i)));
}

}  // namespace

void aead_seal(const SymmetricKey& key, std::uint64_t n, ByteView ad, MutableByteView text, MutableByteView tag) {
  assert(tag.size() == kAeadTagSize);
  std::uint8_t nonce[12];
  make_nonce(nonce, n);
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(text.data(), tag.data(), nullptr, text.data(), text.size(),
                                                     ad.data(), ad.size(), nullptr, nonce, key.bytes.data());
}

bool aead_open(const SymmetricKey& key, std::uint64_t n, ByteView ad, ByteView ciphertext, ByteView tag,
               MutableByteView out) {
  assert(out.size() == ciphertext.size());
  if (tag.size() != kAeadTagSize) return false;
  std::uint8_t nonce[12];
  make_nonce(nonce, n);
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached(out.data(), nullptr, ciphertext.data(), ciphertext.size(),
                                                            tag.data(), ad.data(), ad.size(), nonce,
                                                            key.bytes.data()) == 0;
}

}  // namespace thor::crypto
