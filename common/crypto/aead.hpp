// The link's record AEADs, with Thor's nonce layout 0x00000000 | u64be(n), n counting the records
// sent under one key. The link handshake (crypto/link_session.hpp) picks one per link:
// ChaCha20-Poly1305-IETF, which every node has, or AES-256-GCM, offered only where the CPU has AES
// and carry-less multiply instructions (libsodium has no software AES-GCM), where it is faster.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/bytes.hpp"
#include "common/crypto/keys.hpp"

namespace thor::crypto {

constexpr std::size_t kAeadTagSize = 16;

// One bit each, so that a set of them fits the handshake's one-byte offer.
enum class LinkCipher : std::uint8_t {
  chacha20_poly1305 = 0x01,
  aes256_gcm = 0x02,
};
using LinkCipherSet = std::uint8_t;  // a bitwise OR of LinkCipher values
constexpr LinkCipherSet kAllLinkCiphers = 0x03;

constexpr LinkCipherSet cipher_bit(LinkCipher c) { return static_cast<LinkCipherSet>(c); }
std::string to_string(LinkCipher c);
// ChaCha20-Poly1305 always; AES-256-GCM too when this CPU runs it in hardware.
LinkCipherSet supported_link_ciphers();

// One direction's record cipher: the algorithm and its key, expanded once.
class RecordAead {
 public:
  RecordAead();
  RecordAead(LinkCipher cipher, const SymmetricKey& key);
  RecordAead(const RecordAead&);
  RecordAead& operator=(const RecordAead&);
  ~RecordAead();  // wipes the key

  LinkCipher cipher() const { return cipher_; }
  // Encrypts text in place and writes its 16-byte tag (tag.size() must be kAeadTagSize).
  void seal(std::uint64_t n, ByteView ad, MutableByteView text, MutableByteView tag) const;
  // Checks the tag, then decrypts ciphertext into out (same size; may be the ciphertext itself).
  // False when the tag does not verify; out then holds no plaintext.
  bool open(std::uint64_t n, ByteView ad, ByteView ciphertext, ByteView tag, MutableByteView out) const;

 private:
  LinkCipher cipher_ = LinkCipher::chacha20_poly1305;
  SymmetricKey key_;
  // libsodium's crypto_aead_aes256gcm_state (the expanded AES key), kept opaque here so that only
  // common/crypto includes <sodium.h>; aead.cpp checks the size and alignment.
  alignas(16) std::array<std::uint8_t, 512> aes_state_{};
};

// One-shot forms (tests and tools): the same as a RecordAead made for one record.
void aead_seal(LinkCipher cipher, const SymmetricKey& key, std::uint64_t n, ByteView ad, MutableByteView text,
               MutableByteView tag);
bool aead_open(LinkCipher cipher, const SymmetricKey& key, std::uint64_t n, ByteView ad, ByteView ciphertext,
               ByteView tag, MutableByteView out);

}  // namespace thor::crypto
