// Tor-style exit policies: ordered accept/reject rules on address/mask and port ranges; the first
// rule that matches decides. Text form, one rule per comma or newline:
//   "accept 127.0.0.0/8:*, accept *:80-443, reject *:*"
// Addresses: "*", "*4", "*6", an IPv4 or IPv6 address with optional /bits (IPv6 in brackets),
// or "private" (loopback, RFC 1918, link-local, CGNAT, ULA, ...). Ports: "*", N, or N-M.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace thor {

struct ExitRule {
  bool accept = false;
  // Address match: any (v4 and v6), any v4, any v6, private, or a prefix.
  enum class Kind { any, any4, any6, private_addresses, prefix4, prefix6 } kind = Kind::any;
  std::uint8_t addr[16] = {};  // prefix bytes (4 used for v4)
  int bits = 0;
  std::uint16_t port_lo = 1, port_hi = 65535;
};

class ExitPolicy {
 public:
  // Parses rules; "reject private:*" is put first unless the rules mention private/loopback
  // addresses themselves with an accept (so an operator's explicit accept wins) — see docs.
  static Result<ExitPolicy> parse(std::string_view text);
  static ExitPolicy reject_all();                     // a non-exit
  static ExitPolicy default_exit();                   // reject private:*, accept *:*
  // The policy `thor up` gives its exits: loopback accepted, other private ranges rejected.
  static ExitPolicy loopback_test_exit();

  // Decides for a numeric destination (IPv4 or IPv6 text).
  bool allows(std::string_view ip, std::uint16_t port) const;
  // For a hostname target (resolved at the exit): could any public address on this port pass?
  bool may_allow_port(std::uint16_t port) const;
  bool is_exit() const;  // accepts some port on some public address
  // Accepts some destination at all, public or not (an exit of a loopback test network). Checked at
  // the addresses each accept rule names, so "accept 127.0.0.0/8:*, reject *:*" counts.
  bool accepts_any_destination() const;
  // The canonical text form (round-trips through parse).
  std::string to_string() const;
  // Tor-style port summary: "accept 80,443" or "reject 1-65535".
  std::string summary() const;
  const std::vector<ExitRule>& rules() const { return rules_; }

 private:
  std::vector<ExitRule> rules_;
};

// True for loopback, RFC 1918, link-local, CGNAT, 0.0.0.0/8, multicast, ULA, ... (IPv4 or IPv6 text).
bool is_private_address(std::string_view ip);

}  // namespace thor
