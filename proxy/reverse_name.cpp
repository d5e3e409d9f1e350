#include "proxy/reverse_name.hpp"

#include <arpa/inet.h>

#include <cstdint>

namespace thor::proxy {

std::optional<std::string> reverse_lookup_name(std::string_view ip) {
  const std::string text(ip);
  std::uint8_t a[16];
  if (inet_pton(AF_INET, text.c_str(), a) == 1) {
    std::string out;
    for (int i = 3; i >= 0; --i) {
      out += std::to_string(a[i]);
      out += '.';
    }
    return out + "in-addr.arpa";
  }
  if (inet_pton(AF_INET6, text.c_str(), a) == 1) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (int i = 15; i >= 0; --i) {
      out += kHex[a[i] & 0xF];
      out += '.';
      out += kHex[a[i] >> 4];
      out += '.';
    }
    return out + "ip6.arpa";
  }
  return std::nullopt;
}

}  // namespace thor::proxy
