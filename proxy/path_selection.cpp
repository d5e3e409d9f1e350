#include "proxy/path_selection.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <set>

namespace thor::proxy {

namespace {

// An advertised bandwidth above this (1 TB/s) is a lie or a bug; capping it also keeps the sum of
// weights far from overflowing.
constexpr std::uint64_t kMaxWeight = std::uint64_t{1} << 40;

struct Candidate {
  const dir::ConsensusRelay* relay = nullptr;
  std::string subnet;
  std::uint64_t weight = 0;
};

// Uniform in [0, bound), unbiased (rejection sampling, like Rng::uniform for 64 bits).
std::uint64_t uniform64(crypto::Rng& rng, std::uint64_t bound) {
  const std::uint64_t min = (0 - bound) % bound;
  for (;;) {
    std::uint64_t r = rng.u64();
    if (r >= min) return r % bound;
  }
}

// Picks one of `pool` with probability proportional to weight; nullptr when the pool is empty.
const Candidate* pick(const std::vector<const Candidate*>& pool, crypto::Rng& rng) {
  std::uint64_t total = 0;
  for (const auto* c : pool) total += c->weight;
  if (total == 0) return nullptr;
  std::uint64_t x = uniform64(rng, total);
  for (const auto* c : pool) {
    if (x < c->weight) return c;
    x -= c->weight;
  }
  return nullptr;  // unreachable: x < total
}

bool has_accept_rule_for_port(const ExitPolicy& p, std::uint16_t port) {
  if (port == 0) return false;
  return std::any_of(p.rules().begin(), p.rules().end(),
                     [&](const ExitRule& r) { return r.accept && port >= r.port_lo && port <= r.port_hi; });
}

bool is_ip_literal(std::string_view host) { return is_ipv4_literal(host) || is_ipv6_literal(host); }

std::string excluded_note(std::size_t excluded) {
  if (excluded == 0) return "";
  return " (" + std::to_string(excluded) + " excluded after failures)";
}

}  // namespace

std::string subnet_of(std::string_view ip) {
  std::string text(ip);
  std::uint8_t a[16];
  char buf[32];
  if (inet_pton(AF_INET, text.c_str(), a) == 1) {
    std::snprintf(buf, sizeof buf, "4:%u.%u", a[0], a[1]);
    return buf;
  }
  if (inet_pton(AF_INET6, text.c_str(), a) == 1) {
    std::snprintf(buf, sizeof buf, "6:%02x%02x:%02x%02x", a[0], a[1], a[2], a[3]);
    return buf;
  }
  return "host:" + text;
}

bool exit_allows(const dir::ConsensusRelay& relay, const HostPort& target) {
  const ExitPolicy& p = relay.descriptor.exit_policy;
  if (is_ip_literal(target.host)) return p.allows(target.host, target.port);
  return p.may_allow_port(target.port) || has_accept_rule_for_port(p, target.port);
}

Result<Path> select_path(const dir::Consensus& consensus, const std::optional<HostPort>& target,
                         const PathOptions& options, crypto::Rng& rng) {
  const std::set<std::string> excluded_set(options.exclude.begin(), options.exclude.end());
  const std::set<std::string> excluded_exits(options.exclude_exits.begin(), options.exclude_exits.end());
  std::vector<Candidate> usable;
  std::set<std::string> seen;
  std::size_t excluded = 0;
  for (const auto& r : consensus.relays) {
    if (!r.has(dir::kFlagRunning) || !r.has(dir::kFlagValid)) continue;
    if (excluded_set.count(r.fingerprint)) {
      ++excluded;
      continue;
    }
    if (!seen.insert(r.fingerprint).second) continue;  // listed twice: one relay all the same
    usable.push_back({&r, subnet_of(r.descriptor.address.host), std::min(r.descriptor.bandwidth, kMaxWeight)});
  }
  if (usable.empty())
    return Error{"consensus has no running and valid relays" + excluded_note(excluded)};

  if (options.allow_same_subnet) {
    if (usable.size() < 3)
      return Error{"need 3 distinct relays, consensus has " + std::to_string(usable.size()) +
                   " running and valid" + excluded_note(excluded)};
  } else {
    std::set<std::string> subnets;
    for (const auto& c : usable) subnets.insert(c.subnet);
    if (subnets.size() < 3)
      return Error{"need 3 relays in distinct /16s (IPv6: /32s), consensus has " + std::to_string(subnets.size()) +
                   excluded_note(excluded) +
                   "; a test network on one host must allow relays in the same subnet"};
  }

  // The floor: a tenth of the mean weight, at least 1.
  std::uint64_t total = 0;
  for (const auto& c : usable) total += c.weight;
  const std::uint64_t floor = std::max<std::uint64_t>(1, total / usable.size() / 10);
  for (auto& c : usable) c.weight = std::max(c.weight, floor);

  // Exit candidates, most specific test first.
  std::size_t refused_exits = 0;  // relays that would have been exits but are excluded as exits
  auto exits_where = [&](auto&& test) {
    std::vector<const Candidate*> out;
    refused_exits = 0;
    for (const auto& c : usable) {
      if (!test(c.relay->descriptor.exit_policy)) continue;
      if (excluded_exits.count(c.relay->fingerprint)) {
        ++refused_exits;
        continue;
      }
      out.push_back(&c);
    }
    return out;
  };
  auto exit_note = [&] {
    std::string note = excluded_note(excluded);
    if (refused_exits != 0) note += " (" + std::to_string(refused_exits) + " not usable as the exit: they refused it)";
    return note;
  };
  std::vector<const Candidate*> exits;
  if (target) {
    const std::string port = std::to_string(target->port);
    if (is_ip_literal(target->host)) {
      exits = exits_where([&](const ExitPolicy& p) { return p.allows(target->host, target->port); });
      if (exits.empty()) return Error{"no exit allows this address on port " + port + exit_note()};
    } else {
      exits = exits_where([&](const ExitPolicy& p) { return p.may_allow_port(target->port); });
      if (exits.empty())
        exits = exits_where([&](const ExitPolicy& p) { return has_accept_rule_for_port(p, target->port); });
      if (exits.empty()) return Error{"no exit allows port " + port + exit_note()};
    }
  } else {
    exits = exits_where([](const ExitPolicy& p) { return p.may_allow_port(443) || p.may_allow_port(80); });
    if (exits.empty())
      exits = exits_where([](const ExitPolicy& p) { return p.is_exit() || p.accepts_any_destination(); });
    if (exits.empty()) return Error{"no relay in the consensus is an exit" + exit_note()};
  }

  const Candidate* exit = pick(exits, rng);
  std::vector<const Candidate*> chosen{exit};
  auto compatible = [&](const Candidate& c) {
    for (const auto* x : chosen) {
      if (x == &c) return false;
      if (!options.allow_same_subnet && x->subnet == c.subnet) return false;
    }
    return true;
  };
  auto next_hop = [&]() -> const Candidate* {
    std::vector<const Candidate*> pool;
    for (const auto& c : usable)
      if (compatible(c)) pool.push_back(&c);
    const Candidate* c = pick(pool, rng);
    if (c) chosen.push_back(c);
    return c;
  };
  // With three subnets (or three relays) among the usable ones, any exit leaves room for the other
  // two hops; these checks only guard against that reasoning being wrong.
  const Candidate* entry = next_hop();
  const Candidate* middle = entry ? next_hop() : nullptr;
  if (!exit || !entry || !middle) return Error{"no three relays fit the path rules" + excluded_note(excluded)};
  return Path{*entry->relay, *middle->relay, *exit->relay};
}

}  // namespace thor::proxy
