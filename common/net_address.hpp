// "host:port" and "[v6]:port" as typed on a command line or carried in BEGIN.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace thor {

struct HostPort {
  std::string host;  // a name, an IPv4 literal, or an IPv6 literal without brackets
  std::uint16_t port = 0;

  std::string to_string() const;  // brackets around IPv6 literals
  bool operator==(const HostPort&) const = default;
};

// Parses "host:port", "[::1]:port". Port 0 is refused unless allow_zero (listen on any free port).
Result<HostPort> parse_host_port(std::string_view text, bool allow_zero = false);

bool is_ipv4_literal(std::string_view host);
bool is_ipv6_literal(std::string_view host);

}  // namespace thor
