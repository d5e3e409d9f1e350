#include "relay/advertise.hpp"

#include <uv.h>

#include "common/dir/exit_policy.hpp"
#include "common/uv/tcp.hpp"

namespace thor::relay {

std::string pick_advertise_ip(const std::vector<std::string>& addresses) {
  std::string first_private;
  for (const auto& a : addresses) {
    if (!is_ipv4_literal(a)) continue;
    if (a.rfind("127.", 0) == 0 || a.rfind("169.254.", 0) == 0 || a.rfind("0.", 0) == 0) continue;
    if (!is_private_address(a)) return a;
    if (first_private.empty()) first_private = a;
  }
  return first_private.empty() ? std::string("127.0.0.1") : first_private;
}

std::vector<std::string> interface_addresses() {
  std::vector<std::string> out;
  uv_interface_address_t* ifs = nullptr;
  int count = 0;
  if (uv_interface_addresses(&ifs, &count) != 0) return out;
  for (int i = 0; i < count; ++i) {
    out.push_back(uv::sockaddr_ip(reinterpret_cast<const sockaddr*>(&ifs[i].address)));
  }
  uv_free_interface_addresses(ifs, count);
  return out;
}

Result<HostPort> resolve_advertise(const HostPort& listen, std::uint16_t bound_port, const HostPort& advertise) {
  HostPort out = advertise;
  if (out.host.empty()) {
    bool wildcard = listen.host == "0.0.0.0" || listen.host == "::" || listen.host.empty();
    out.host = wildcard ? pick_advertise_ip(interface_addresses()) : listen.host;
  }
  if (out.port == 0) out.port = bound_port;
  if (!is_ipv4_literal(out.host) && !is_ipv6_literal(out.host))
    return Error{"advertise address '" + out.host + "' is not a numeric IPv4 or IPv6 address"};
  if (out.port == 0) return Error{"advertise address has no port"};
  return out;
}

}  // namespace thor::relay
