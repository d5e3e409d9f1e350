// Which address a relay publishes in its descriptor when the operator did not say (--advertise).
//
// A relay listening on one address publishes that address. A relay listening on every address
// (0.0.0.0 or ::) publishes the first public IPv4 address of the machine's interfaces (a VPS
// usually has one), else its first private one (a LAN test network), else 127.0.0.1. Behind NAT
// none of those is right: the operator passes --advertise PUBLIC_IP:PORT.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/net_address.hpp"
#include "common/result.hpp"

namespace thor::relay {

// The choice itself, over a list of interface addresses (numeric text), so tests can pin it.
std::string pick_advertise_ip(const std::vector<std::string>& interface_addresses);

// listen: the configured listen address; bound_port: the port actually bound (listen port 0);
// advertise: the configured advertise address (empty host: choose). Port 0 in advertise means the
// bound port. Errors when the advertised host is not a numeric address.
Result<HostPort> resolve_advertise(const HostPort& listen, std::uint16_t bound_port, const HostPort& advertise);

// The machine's interface addresses (IPv4 and IPv6 text), loopback included.
std::vector<std::string> interface_addresses();

}  // namespace thor::relay
