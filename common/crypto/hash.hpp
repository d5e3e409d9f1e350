// Hashes and key derivation: BLAKE2b (libsodium's generichash) and SHA-256 for file checks.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>

#include "common/bytes.hpp"
#include "common/crypto/keys.hpp"

namespace thor::crypto {

// BLAKE2b-256 of the concatenation of parts, keyed when key is non-empty (a MAC).
std::array<std::uint8_t, 32> blake2b_256(std::initializer_list<ByteView> parts, ByteView key = {});
std::array<std::uint8_t, 32> sha256(ByteView data);

// Expands a 32-byte secret into out.size() bytes of independent key material, separated by a
// context label: BLAKE2b keyed with the secret over (label || counter) blocks (an HKDF-expand).
void kdf_expand(const SymmetricKey& secret, std::string_view label, MutableByteView out);

}  // namespace thor::crypto
