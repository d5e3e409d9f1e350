// How an exit names what happened to a stream: the END reason for a failed connect or a closed
// TCP connection, from the error text the libuv helpers give ("... (ECONNREFUSED)").
#pragma once

#include <string_view>

#include "common/cell/relay_msg.hpp"

namespace thor::relay {

// For a TCP connect that failed: refused, timeout, no route (unreachable), else misc.
EndReason end_reason_for_connect_error(std::string_view error_text);
// For an established exit connection that ended: done on a clean EOF (empty text), reset on
// ECONNRESET/EPIPE, timeout on ETIMEDOUT, else misc.
EndReason end_reason_for_close(std::string_view error_text);

}  // namespace thor::relay
