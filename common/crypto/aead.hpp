// ChaCha20-Poly1305-IETF with Thor's nonce layout: 0x00000000 | u64be(n), n counting the messages
// sent under one key. The link's record layer is built on it (crypto/link_session.hpp).
#pragma once

#include <cstdint>

#include "common/bytes.hpp"
#include "common/crypto/keys.hpp"

namespace thor::crypto {

constexpr std::size_t kAeadTagSize = 16;

// Encrypts text in place and writes its 16-byte tag (tag.size() must be kAeadTagSize).
void aead_seal(const SymmetricKey& key, std::uint64_t n, ByteView ad, MutableByteView text, MutableByteView tag);

// Checks the tag, then decrypts ciphertext into out (same size; may be the ciphertext itself).
// False when the tag does not verify; out then holds no plaintext.
bool aead_open(const SymmetricKey& key, std::uint64_t n, ByteView ad, ByteView ciphertext, ByteView tag,
               MutableByteView out);

}  // namespace thor::crypto
