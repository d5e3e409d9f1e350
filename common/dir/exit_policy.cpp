#include "common/dir/exit_policy.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>

namespace thor {

namespace {

// A numeric address as 16 bytes; IPv4 uses the first four. IPv4-mapped IPv6 (::ffff:a.b.c.d) is
// turned into the IPv4 address it carries, so it can never slip past an IPv4 rule.
struct Ip {
  bool v6 = false;
  std::uint8_t b[16] = {};
};

std::optional<Ip> parse_ip(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string s(text);
  Ip ip;
  in_addr a4{};
  if (inet_pton(AF_INET, s.c_str(), &a4) == 1) {
    std::memcpy(ip.b, &a4, 4);
    return ip;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
    std::memcpy(ip.b, &a6, 16);
    static const std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(ip.b, mapped, 12) == 0) {
      std::memmove(ip.b, ip.b + 12, 4);
      std::memset(ip.b + 4, 0, 12);
      return ip;
    }
    ip.v6 = true;
    return ip;
  }
  return std::nullopt;
}

// What a prefix rule's address family decides: how the address is written and read, its length, and
// the longest prefix. IPv4 and IPv6 prefixes share every code path through this.
struct Family {
  ExitRule::Kind kind;
  int af;  // AF_INET or AF_INET6, for inet_pton / inet_ntop
  std::size_t bytes;
  int max_bits;
};
constexpr Family kIpv4{ExitRule::Kind::prefix4, AF_INET, 4, 32};
constexpr Family kIpv6{ExitRule::Kind::prefix6, AF_INET6, 16, 128};

const Family* prefix_family(ExitRule::Kind kind) {
  if (kind == ExitRule::Kind::prefix4) return &kIpv4;
  if (kind == ExitRule::Kind::prefix6) return &kIpv6;
  return nullptr;
}

bool prefix_match(const std::uint8_t* addr, const std::uint8_t* prefix, int bits) {
  int full = bits / 8;
  if (std::memcmp(addr, prefix, static_cast<std::size_t>(full)) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (addr[full] & mask) == (prefix[full] & mask);
}

struct Range4 {
  std::uint8_t a, b, c, d;
  int bits;
};
// Loopback, "this network", RFC 1918, CGNAT, link-local, IETF protocol assignments, documentation,
// benchmarking, multicast, reserved and broadcast.
constexpr Range4 kPrivate4[] = {
    {0, 0, 0, 0, 8},      {10, 0, 0, 0, 8},     {100, 64, 0, 0, 10},  {127, 0, 0, 0, 8},
    {169, 254, 0, 0, 16}, {172, 16, 0, 0, 12},  {192, 0, 0, 0, 24},   {192, 0, 2, 0, 24},
    {192, 168, 0, 0, 16}, {198, 18, 0, 0, 15},  {198, 51, 100, 0, 24}, {203, 0, 113, 0, 24},
    {224, 0, 0, 0, 4},    {240, 0, 0, 0, 4},
};

bool is_private4(const std::uint8_t* a) {
  for (const auto& r : kPrivate4) {
    std::uint8_t p[4] = {r.a, r.b, r.c, r.d};
    if (prefix_match(a, p, r.bits)) return true;
  }
  return false;
}

bool is_private6(const std::uint8_t* a) {
  static const std::uint8_t zero[16] = {};
  // ::/96 holds the unspecified address, loopback and the deprecated IPv4-compatible addresses.
  if (prefix_match(a, zero, 96)) return true;
  if (a[0] == 0xfc || a[0] == 0xfd) return true;                    // fc00::/7 unique local
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return true;           // fe80::/10 link-local
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return true;           // fec0::/10 site-local
  if (a[0] == 0xff) return true;                                    // ff00::/8 multicast
  static const std::uint8_t doc[4] = {0x20, 0x01, 0x0d, 0xb8};       // 2001:db8::/32 documentation
  if (prefix_match(a, doc, 32)) return true;
  static const std::uint8_t discard[8] = {0x01, 0x00, 0, 0, 0, 0, 0, 0};  // 100::/64 discard
  if (prefix_match(a, discard, 64)) return true;
  // Addresses that carry an IPv4 address: NAT64 64:ff9b::/96 and 6to4 2002::/16.
  static const std::uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (prefix_match(a, nat64, 96)) return is_private4(a + 12);
  if (a[0] == 0x20 && a[1] == 0x02) return is_private4(a + 2);
  return false;
}

bool is_private(const Ip& ip) { return ip.v6 ? is_private6(ip.b) : is_private4(ip.b); }

bool rule_matches_address(const ExitRule& r, const Ip& ip) {
  switch (r.kind) {
    case ExitRule::Kind::any: return true;
    case ExitRule::Kind::any4: return !ip.v6;
    case ExitRule::Kind::any6: return ip.v6;
    case ExitRule::Kind::private_addresses: return is_private(ip);
    case ExitRule::Kind::prefix4:
    case ExitRule::Kind::prefix6:
      return ip.v6 == (r.kind == ExitRule::Kind::prefix6) && prefix_match(ip.b, r.addr, r.bits);
  }
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

Result<std::uint16_t> parse_port_number(std::string_view s, std::string_view rule) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v == 0 || v > 65535)
    return Error{"exit policy rule '" + std::string(rule) + "': bad port '" + std::string(s) + "' (expected 1-65535)"};
  return static_cast<std::uint16_t>(v);
}

Result<int> parse_bits(std::string_view s, int max, std::string_view rule) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < 0 || v > max)
    return Error{"exit policy rule '" + std::string(rule) + "': bad prefix length '/" + std::string(s) +
                 "' (expected 0-" + std::to_string(max) + ")"};
  return v;
}

void clear_host_bits(std::uint8_t* addr, int bits, std::size_t total_bytes) {
  for (std::size_t i = 0; i < total_bytes; ++i) {
    int keep = std::clamp(bits - 8 * static_cast<int>(i), 0, 8);
    addr[i] &= static_cast<std::uint8_t>(0xff << (8 - keep));
  }
}

// A prefix: "1.2.3.0/24" (IPv4) or "[2001:db8::]/32" (IPv6, in brackets so the port stays apart);
// without /bits it names one host. Sets r's kind, address (host bits cleared) and bits.
Status parse_prefix(std::string_view addr, bool only6, std::string_view text, ExitRule& r) {
  auto fail = [&](const std::string& why) { return Error{"exit policy rule '" + std::string(text) + "': " + why}; };
  const bool bracketed = !addr.empty() && addr.front() == '[';
  const Family& family = bracketed ? kIpv6 : kIpv4;
  std::string_view host = addr, bits;
  bool has_bits = false;
  if (bracketed) {
    auto close = addr.find(']');
    if (close == std::string_view::npos) return fail("missing ']' after IPv6 address");
    host = addr.substr(1, close - 1);
    std::string_view after = addr.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != '/') return fail("junk after ']'");
      has_bits = true;
      bits = after.substr(1);
    }
  } else if (auto slash = addr.find('/'); slash != std::string_view::npos) {
    host = addr.substr(0, slash);
    has_bits = true;
    bits = addr.substr(slash + 1);
  }
  if (has_bits && bits.empty()) return fail("empty prefix length");

  std::string h(host);
  std::uint8_t parsed[16] = {};
  if (inet_pton(family.af, h.c_str(), parsed) != 1) {
    if (bracketed) return fail("'" + h + "' is not an IPv6 address");
    if (h.find(':') != std::string::npos) return fail("put IPv6 addresses in brackets, [::1]:PORTS");
    return fail("'" + h + "' is not an address (use *, *4, *6, private, an IPv4 address or [IPv6])");
  }
  if (only6 && family.kind != ExitRule::Kind::prefix6) return fail("accept6/reject6 take IPv6 addresses");
  r.kind = family.kind;
  std::memcpy(r.addr, parsed, family.bytes);
  r.bits = family.max_bits;
  if (has_bits) {
    auto b = parse_bits(bits, family.max_bits, text);
    if (!b) return Error{b.error()};
    r.bits = *b;
  }
  clear_host_bits(r.addr, r.bits, family.bytes);
  return {};
}

Result<ExitRule> parse_rule(std::string_view text) {
  ExitRule r;
  std::string_view rest;
  bool only6 = false;
  if (text.rfind("accept6", 0) == 0 || text.rfind("reject6", 0) == 0) {
    r.accept = text[0] == 'a';
    only6 = true;
    rest = text.substr(7);
  } else if (text.rfind("accept", 0) == 0 || text.rfind("reject", 0) == 0) {
    r.accept = text[0] == 'a';
    rest = text.substr(6);
  } else {
    return Error{"exit policy rule '" + std::string(text) + "': must start with 'accept' or 'reject'"};
  }
  if (rest.empty() || (rest.front() != ' ' && rest.front() != '\t'))
    return Error{"exit policy rule '" + std::string(text) + "': expected 'accept ADDRESS:PORTS'"};
  rest = trim(rest);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos)
    return Error{"exit policy rule '" + std::string(text) + "': expected ADDRESS:PORTS"};
  std::string_view addr = rest.substr(0, colon), ports = rest.substr(colon + 1);

  if (addr == "*") {
    r.kind = only6 ? ExitRule::Kind::any6 : ExitRule::Kind::any;
  } else if (addr == "*4") {
    if (only6) return Error{"exit policy rule '" + std::string(text) + "': accept6/reject6 take IPv6 addresses"};
    r.kind = ExitRule::Kind::any4;
  } else if (addr == "*6") {
    r.kind = ExitRule::Kind::any6;
  } else if (addr == "private") {
    r.kind = ExitRule::Kind::private_addresses;
  } else {
    auto prefix = parse_prefix(addr, only6, text, r);
    if (!prefix) return Error{prefix.error()};
  }

  if (ports == "*") {
    r.port_lo = 1;
    r.port_hi = 65535;
  } else {
    auto dash = ports.find('-');
    if (dash == std::string_view::npos) {
      auto p = parse_port_number(ports, text);
      if (!p) return Error{p.error()};
      r.port_lo = r.port_hi = *p;
    } else {
      auto lo = parse_port_number(ports.substr(0, dash), text);
      if (!lo) return Error{lo.error()};
      auto hi = parse_port_number(ports.substr(dash + 1), text);
      if (!hi) return Error{hi.error()};
      if (*lo > *hi)
        return Error{"exit policy rule '" + std::string(text) + "': port range " + std::string(ports) + " is backwards"};
      r.port_lo = *lo;
      r.port_hi = *hi;
    }
  }
  return r;
}

std::string rule_to_string(const ExitRule& r) {
  std::string s = r.accept ? "accept " : "reject ";
  switch (r.kind) {
    case ExitRule::Kind::any: s += "*"; break;
    case ExitRule::Kind::any4: s += "*4"; break;
    case ExitRule::Kind::any6: s += "*6"; break;
    case ExitRule::Kind::private_addresses: s += "private"; break;
    case ExitRule::Kind::prefix4:
    case ExitRule::Kind::prefix6: {
      const Family& family = *prefix_family(r.kind);
      char buf[INET6_ADDRSTRLEN] = {};
      inet_ntop(family.af, r.addr, buf, sizeof buf);
      s += r.kind == ExitRule::Kind::prefix6 ? "[" + std::string(buf) + "]" : std::string(buf);
      if (r.bits != family.max_bits) s += "/" + std::to_string(r.bits);
      break;
    }
  }
  s += ":";
  if (r.port_lo == 1 && r.port_hi == 65535) s += "*";
  else if (r.port_lo == r.port_hi) s += std::to_string(r.port_lo);
  else s += std::to_string(r.port_lo) + "-" + std::to_string(r.port_hi);
  return s;
}

// Does this accept rule cover some private address (so the operator has spoken about them)?
bool mentions_private(const ExitRule& r) {
  if (r.kind == ExitRule::Kind::private_addresses) return true;
  if (r.kind == ExitRule::Kind::prefix4) {
    if (is_private4(r.addr)) return true;
    // A wide prefix (10.0.0.0/7) contains private ranges even when its first address does not.
    for (const auto& p : kPrivate4) {
      std::uint8_t pa[4] = {p.a, p.b, p.c, p.d};
      if (r.bits <= p.bits && prefix_match(pa, r.addr, r.bits)) return true;
    }
    return false;
  }
  if (r.kind == ExitRule::Kind::prefix6) return r.bits < 8 || is_private6(r.addr);
  return false;
}

constexpr std::size_t kMaxRules = 1024;

}  // namespace

bool is_private_address(std::string_view ip) {
  auto parsed = parse_ip(ip);
  return parsed && is_private(*parsed);
}

Result<ExitPolicy> ExitPolicy::parse(std::string_view text) {
  ExitPolicy p;
  bool has_accept = false, operator_spoke_of_private = false;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find_first_of(",\n", start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view item = text.substr(start, end - start);
    // '#' starts a comment (policies in config files).
    if (auto hash = item.find('#'); hash != std::string_view::npos) item = item.substr(0, hash);
    item = trim(item);
    if (!item.empty()) {
      if (p.rules_.size() >= kMaxRules)
        return Error{"exit policy has more than " + std::to_string(kMaxRules) + " rules"};
      auto r = parse_rule(item);
      if (!r) return Error{r.error()};
      has_accept = has_accept || r->accept;
      if (r->kind == ExitRule::Kind::private_addresses || (r->accept && mentions_private(*r)))
        operator_spoke_of_private = true;
      p.rules_.push_back(*r);
    }
    start = end + 1;
  }
  if (p.rules_.empty()) return Error{"exit policy is empty (use 'reject *:*' for a relay that is not an exit)"};
  // Private and loopback destinations stay closed unless the operator wrote a rule about them.
  if (has_accept && !operator_spoke_of_private) {
    ExitRule r;
    r.accept = false;
    r.kind = ExitRule::Kind::private_addresses;
    p.rules_.insert(p.rules_.begin(), r);
  }
  return p;
}

ExitPolicy ExitPolicy::reject_all() {
  ExitPolicy p;
  ExitRule r;
  r.accept = false;
  r.kind = ExitRule::Kind::any;
  p.rules_.push_back(r);
  return p;
}

ExitPolicy ExitPolicy::default_exit() {
  ExitPolicy p;
  ExitRule priv;
  priv.accept = false;
  priv.kind = ExitRule::Kind::private_addresses;
  ExitRule all;
  all.accept = true;
  all.kind = ExitRule::Kind::any;
  p.rules_ = {priv, all};
  return p;
}

ExitPolicy ExitPolicy::loopback_test_exit() {
  ExitPolicy p;
  ExitRule lo4;
  lo4.accept = true;
  lo4.kind = ExitRule::Kind::prefix4;
  lo4.addr[0] = 127;
  lo4.bits = 8;
  ExitRule lo6;
  lo6.accept = true;
  lo6.kind = ExitRule::Kind::prefix6;
  lo6.addr[15] = 1;
  lo6.bits = 128;
  ExitPolicy rest = default_exit();
  p.rules_ = {lo4, lo6};
  p.rules_.insert(p.rules_.end(), rest.rules_.begin(), rest.rules_.end());
  return p;
}

bool ExitPolicy::allows(std::string_view ip, std::uint16_t port) const {
  auto parsed = parse_ip(ip);
  if (!parsed || port == 0) return false;
  for (const auto& r : rules_) {
    if (port < r.port_lo || port > r.port_hi) continue;
    if (rule_matches_address(r, *parsed)) return r.accept;
  }
  return false;  // nothing matched: closed
}

bool ExitPolicy::may_allow_port(std::uint16_t port) const {
  if (port == 0) return false;
  // Only rules that cover every public address of a family decide: rules on private addresses never
  // touch public ones, and a rule on one prefix neither makes a port generally usable nor unusable.
  auto decide = [&](bool v6) {
    for (const auto& r : rules_) {
      if (port < r.port_lo || port > r.port_hi) continue;
      bool covers = r.kind == ExitRule::Kind::any || (!v6 && r.kind == ExitRule::Kind::any4) ||
                    (v6 && r.kind == ExitRule::Kind::any6) ||
                    (!v6 && r.kind == ExitRule::Kind::prefix4 && r.bits == 0) ||
                    (v6 && r.kind == ExitRule::Kind::prefix6 && r.bits == 0);
      if (covers) return r.accept;
    }
    return false;
  };
  return decide(false) || decide(true);
}

namespace {
// Port ranges [lo, hi] over 1..65535 on which may_allow_port is constant, with its value.
std::vector<std::pair<std::pair<unsigned, unsigned>, bool>> port_segments(const ExitPolicy& p) {
  std::set<unsigned> cuts{1, 65536};
  for (const auto& r : p.rules()) {
    cuts.insert(r.port_lo);
    cuts.insert(static_cast<unsigned>(r.port_hi) + 1);
  }
  std::vector<std::pair<std::pair<unsigned, unsigned>, bool>> out;
  for (auto it = cuts.begin(); std::next(it) != cuts.end(); ++it) {
    unsigned lo = *it, hi = *std::next(it) - 1;
    bool ok = p.may_allow_port(static_cast<std::uint16_t>(lo));
    if (!out.empty() && out.back().second == ok) out.back().first.second = hi;
    else out.push_back({{lo, hi}, ok});
  }
  return out;
}

std::string join_ranges(const std::vector<std::pair<unsigned, unsigned>>& ranges) {
  std::string s;
  for (const auto& [lo, hi] : ranges) {
    if (!s.empty()) s += ",";
    s += lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
  }
  return s;
}
}  // namespace

bool ExitPolicy::is_exit() const {
  for (const auto& seg : port_segments(*this))
    if (seg.second) return true;
  return false;
}

bool ExitPolicy::accepts_any_destination() const {
  if (is_exit()) return true;
  // Try each accept rule at addresses it covers: its own prefix, or typical private addresses.
  for (const auto& r : rules_) {
    if (!r.accept) continue;
    std::vector<std::string> probes;
    switch (r.kind) {
      case ExitRule::Kind::any: probes = {"127.0.0.1", "10.0.0.1", "::1"}; break;
      case ExitRule::Kind::any4: probes = {"127.0.0.1", "10.0.0.1", "192.168.0.1"}; break;
      case ExitRule::Kind::any6: probes = {"::1", "fd00::1"}; break;
      case ExitRule::Kind::private_addresses: probes = {"127.0.0.1", "10.0.0.1", "192.168.0.1", "::1"}; break;
      case ExitRule::Kind::prefix4:
      case ExitRule::Kind::prefix6: {
        const Family& family = *prefix_family(r.kind);
        std::uint8_t a[16] = {};
        std::memcpy(a, r.addr, family.bytes);
        if (r.bits < family.max_bits) a[family.bytes - 1] |= 1;  // first host of the network
        char buf[INET6_ADDRSTRLEN] = {};
        inet_ntop(family.af, a, buf, sizeof buf);
        probes = {buf};
        break;
      }
    }
    for (const auto& ip : probes)
      if (allows(ip, r.port_lo) || allows(ip, r.port_hi)) return true;
  }
  return false;
}

std::string ExitPolicy::to_string() const {
  std::string s;
  for (const auto& r : rules_) {
    if (!s.empty()) s += ", ";
    s += rule_to_string(r);
  }
  return s;
}

std::string ExitPolicy::summary() const {
  std::vector<std::pair<unsigned, unsigned>> accepted, rejected;
  for (const auto& seg : port_segments(*this)) (seg.second ? accepted : rejected).push_back(seg.first);
  if (accepted.empty()) return "reject 1-65535";
  if (rejected.empty()) return "accept 1-65535";
  std::string a = join_ranges(accepted), r = join_ranges(rejected);
  return a.size() <= r.size() ? "accept " + a : "reject " + r;
}

}  // namespace thor
