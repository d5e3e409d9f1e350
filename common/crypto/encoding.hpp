// Hex and base64 (standard alphabet, with padding) through libsodium's constant-time codecs.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.hpp"

namespace thor::crypto {

std::string to_hex(ByteView data);
std::string to_hex_upper(ByteView data);
std::optional<Bytes> from_hex(std::string_view text);
std::string to_base64(ByteView data);
std::optional<Bytes> from_base64(std::string_view text);

}  // namespace thor::crypto
