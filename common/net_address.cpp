#include "common/net_address.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace thor {

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool is_ipv4_literal(std::string_view host) {
  std::string h(host);
  in_addr a{};
  return inet_pton(AF_INET, h.c_str(), &a) == 1;
}

bool is_ipv6_literal(std::string_view host) {
  std::string h(host);
  in6_addr a{};
  return inet_pton(AF_INET6, h.c_str(), &a) == 1;
}

Result<HostPort> parse_host_port(std::string_view text, bool allow_zero) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return Error{"bad address '" + std::string(text) + "': expected [IPv6]:PORT"};
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (!is_ipv6_literal(host)) return Error{"bad address '" + std::string(text) + "': not an IPv6 address"};
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return Error{"bad address '" + std::string(text) + "': expected HOST:PORT"};
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return Error{"bad address '" + std::string(text) + "': put IPv6 addresses in brackets, [::1]:PORT"};
  }
  if (host.empty() || host.size() > 255) return Error{"bad address '" + std::string(text) + "': empty or overlong host"};
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535 || (value == 0 && !allow_zero))
    return Error{"bad port in '" + std::string(text) + "': expected 1-65535"};
  return HostPort{std::string(host), static_cast<std::uint16_t>(value)};
}

}  // namespace thor
