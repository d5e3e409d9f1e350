#include "relay/end_reasons.hpp"

namespace thor::relay {

namespace {
bool names(std::string_view text, std::string_view code) {
  // error_text() ends with the libuv error name in parentheses: "connection refused (ECONNREFUSED)".
  std::string tagged = "(" + std::string(code) + ")";
  return text.find(tagged) != std::string_view::npos;
}
}  // namespace

EndReason end_reason_for_connect_error(std::string_view text) {
  if (names(text, "ECONNREFUSED")) return EndReason::connect_refused;
  if (names(text, "ETIMEDOUT")) return EndReason::timeout;
  if (names(text, "ENETUNREACH") || names(text, "EHOSTUNREACH") || names(text, "EADDRNOTAVAIL") ||
      names(text, "ENETDOWN") || names(text, "EHOSTDOWN"))
    return EndReason::no_route;
  if (names(text, "ECONNRESET")) return EndReason::conn_reset;
  return EndReason::misc;
}

EndReason end_reason_for_close(std::string_view text) {
  if (text.empty()) return EndReason::done;
  if (names(text, "ECONNRESET") || names(text, "EPIPE")) return EndReason::conn_reset;
  if (names(text, "ETIMEDOUT")) return EndReason::timeout;
  return EndReason::misc;
}

}  // namespace thor::relay
