// Reverse lookups for RESOLVE "d.c.b.a.in-addr.arpa" (and ip6.arpa): the name back to an address,
// and an asynchronous getnameinfo on the loop.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace thor::relay {

// "4.3.2.1.in-addr.arpa" -> "1.2.3.4"; 32 nibbles + ".ip6.arpa" -> the IPv6 text. nullopt otherwise.
std::optional<std::string> reverse_name_to_ip(std::string_view name);

// Asks the system for the name of ip. Destroying the token cancels: the callback then never runs.
std::shared_ptr<void> reverse_lookup(uv_loop_t* loop, const std::string& ip,
                                     std::function<void(Result<std::string>)> done);

}  // namespace thor::relay
