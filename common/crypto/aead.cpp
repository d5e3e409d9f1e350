#include "common/crypto/aead.hpp"

#include <sodium.h>

#include <cassert>

namespace thor::crypto {
namespace {

static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == kAeadTagSize);
static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == SymmetricKey::size);
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12);
static_assert(crypto_aead_aes256gcm_ABYTES == kAeadTagSize);
static_assert(crypto_aead_aes256gcm_KEYBYTES == SymmetricKey::size);
static_assert(crypto_aead_aes256gcm_NPUBBYTES == 12);
static_assert(sizeof(crypto_aead_aes256gcm_state) <= 512 && alignof(crypto_aead_aes256gcm_state) <= 16);

void make_nonce(std::uint8_t (&nonce)[12], std::uint64_t n) {
  for (int i = 0; i < 4; ++i) nonce[i] = 0;
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<std::uint8_t>(n >> (8 * (7 - i)));
}

}  // namespace

std::string to_string(LinkCipher c) {
  switch (c) {
    case LinkCipher::chacha20_poly1305: return "ChaCha20-Poly1305";
    case LinkCipher::aes256_gcm: return "AES-256-GCM";
  }
  return "unknown cipher " + std::to_string(static_cast<unsigned>(c));
}

LinkCipherSet supported_link_ciphers() {
  init();
  LinkCipherSet set = cipher_bit(LinkCipher::chacha20_poly1305);
  if (crypto_aead_aes256gcm_is_available()) set |= cipher_bit(LinkCipher::aes256_gcm);
  return set;
}

RecordAead::RecordAead() = default;

RecordAead::RecordAead(LinkCipher cipher, const SymmetricKey& key) : cipher_(cipher), key_(key) {
  if (cipher_ == LinkCipher::aes256_gcm) {
    // Only reached when the handshake agreed on AES-GCM, which this node offers only with hardware.
    assert(crypto_aead_aes256gcm_is_available());
    crypto_aead_aes256gcm_beforenm(reinterpret_cast<crypto_aead_aes256gcm_state*>(aes_state_.data()),
                                   key_.bytes.data());
  }
}

RecordAead::RecordAead(const RecordAead&) = default;
RecordAead& RecordAead::operator=(const RecordAead&) = default;

RecordAead::~RecordAead() {
  sodium_memzero(key_.bytes.data(), key_.bytes.size());
  sodium_memzero(aes_state_.data(), aes_state_.size());
}

void RecordAead::seal(std::uint64_t n, ByteView ad, MutableByteView text, MutableByteView tag) const {
  assert(tag.size() == kAeadTagSize);
  std::uint8_t nonce[12];
  make_nonce(nonce, n);
  if (cipher_ == LinkCipher::aes256_gcm) {
    crypto_aead_aes256gcm_encrypt_detached_afternm(
        text.data(), tag.data(), nullptr, text.data(), text.size(), ad.data(), ad.size(), nullptr, nonce,
        reinterpret_cast<const crypto_aead_aes256gcm_state*>(aes_state_.data()));
    return;
  }
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(text.data(), tag.data(), nullptr, text.data(), text.size(),
                                                     ad.data(), ad.size(), nullptr, nonce, key_.bytes.data());
}

bool RecordAead::open(std::uint64_t n, ByteView ad, ByteView ciphertext, ByteView tag, MutableByteView out) const {
  assert(out.size() == ciphertext.size());
  if (tag.size() != kAeadTagSize) return false;
  std::uint8_t nonce[12];
  make_nonce(nonce, n);
  if (cipher_ == LinkCipher::aes256_gcm) {
    return crypto_aead_aes256gcm_decrypt_detached_afternm(
               out.data(), nullptr, ciphertext.data(), ciphertext.size(), tag.data(), ad.data(), ad.size(), nonce,
               reinterpret_cast<const crypto_aead_aes256gcm_state*>(aes_state_.data())) == 0;
  }
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached(out.data(), nullptr, ciphertext.data(), ciphertext.size(),
                                                            tag.data(), ad.data(), ad.size(), nonce,
                                                            key_.bytes.data()) == 0;
}

void aead_seal(LinkCipher cipher, const SymmetricKey& key, std::uint64_t n, ByteView ad, MutableByteView text,
               MutableByteView tag) {
  RecordAead(cipher, key).seal(n, ad, text, tag);
}

bool aead_open(LinkCipher cipher, const SymmetricKey& key, std::uint64_t n, ByteView ad, ByteView ciphertext,
               ByteView tag, MutableByteView out) {
  return RecordAead(cipher, key).open(n, ad, ciphertext, tag, out);
}

}  // namespace thor::crypto
