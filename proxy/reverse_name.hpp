// The name a RESOLVE_PTR request asks the exit to look up: "4.3.2.1.in-addr.arpa" for 1.2.3.4, 32
// nibbles + ".ip6.arpa" for an IPv6 address (what the exit's reverse lookup expects).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace thor::proxy {

// nullopt when ip is not an IPv4 or IPv6 literal.
std::optional<std::string> reverse_lookup_name(std::string_view ip);

}  // namespace thor::proxy
