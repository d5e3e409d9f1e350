// The stream isolation key: streams whose keys differ never share a circuit (Tor's IsolateSOCKSAuth).
// SOCKS5 username/password, the SOCKS4 user id and HTTP Proxy-Authorization all map to one key, so
// the same credentials isolate the same way whichever port the application used.
#pragma once

#include <string>
#include <string_view>

namespace thor::socks {

// Empty when no credentials were given (or both parts are empty, which Tor treats the same way).
// The length prefix keeps the split unambiguous: ("a:b", "c") and ("a", "b:c") get different keys.
inline std::string isolation_key(std::string_view username, std::string_view password) {
  if (username.empty() && password.empty()) return {};
  std::string key = std::to_string(username.size());
  key += ':';
  key += username;
  key += password;
  return key;
}

}  // namespace thor::socks
