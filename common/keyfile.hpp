// Key files on disk.
//   secret: one line "thor-ed25519-secret-v1 BASE64(32-byte seed)", mode 0600
//   public: one line "BASE64(32-byte public key)" (also accepted: 64 hex digits)
#pragma once

#include <string>

#include "common/crypto/keys.hpp"
#include "common/result.hpp"

namespace thor {

// Creates path with mode 0600; refuses to overwrite an existing file.
Status write_secret_key_file(const std::string& path, const crypto::IdentityKey& key);
Result<crypto::IdentityKey> read_secret_key_file(const std::string& path);

Status write_public_key_file(const std::string& path, const crypto::Ed25519Public& key);
Result<crypto::Ed25519Public> read_public_key_file(const std::string& path);
// Accepts base64 or hex text (as printed by `thor keygen`).
Result<crypto::Ed25519Public> parse_public_key(std::string_view text);

}  // namespace thor
