// Choosing a circuit's three relays from the consensus: sans-IO (a consensus and an Rng in, a path
// or the reason there is none out), so it is tested with a hand-built consensus and a
// DeterministicRng.
//
// Rules (Tor's, simplified to what the consensus carries):
//   - only relays with the Running and Valid flags; none named in PathOptions::exclude;
//   - three distinct relays (distinct fingerprints);
//   - no two in the same IPv4 /16 or IPv6 /32 (one operator or one network rarely owns both ends),
//     unless allow_same_subnet (a loopback test network, where every relay is 127.0.0.1);
//   - the exit's policy allows the target: ExitPolicy::allows for an IP literal; for a hostname
//     (resolved at the exit), may_allow_port, or failing any such exit, an exit with an accept rule
//     on that port for some addresses (it may resolve the name into them; its END says if not);
//   - each hop chosen with probability proportional to its advertised bandwidth, raised to a floor
//     (a tenth of the mean, at least 1) so new or unmeasured relays still get picked now and then.
// The exit is chosen first (it is the most constrained), then the entry, then the middle.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/random.hpp"
#include "common/dir/documents.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"

namespace thor::proxy {

struct PathOptions {
  // Lets relays share a /16 (/32 for IPv6): for test networks on one host or one LAN.
  bool allow_same_subnet = false;
  // Fingerprints of relays not to use at all, e.g. a relay whose circuit failed to build.
  std::vector<std::string> exclude;
  // Fingerprints of relays not to use as the exit (they may still be entry or middle), e.g. an
  // exit that refused this destination: in a small network the other relays are still needed.
  std::vector<std::string> exclude_exits;
};

struct Path {
  dir::ConsensusRelay entry;
  dir::ConsensusRelay middle;
  dir::ConsensusRelay exit;
  std::array<const dir::ConsensusRelay*, 3> hops() const { return {&entry, &middle, &exit}; }
};

// target: where the first stream will go. nullopt builds a circuit ahead of time for any stream,
// preferring exits that allow ports 443 or 80 (falling back to any exit); RESOLVE requests, which
// any exit answers, pass nullopt too.
// Errors say what is missing: "no exit allows port 25", "need 3 relays in distinct /16s, the
// usable relays span 2", "consensus has no running and valid relays".
Result<Path> select_path(const dir::Consensus& consensus, const std::optional<HostPort>& target,
                         const PathOptions& options, crypto::Rng& rng);

// Whether this relay's exit policy lets a stream to target out (the same test select_path uses;
// the daemon asks it before putting a new stream on an existing circuit).
bool exit_allows(const dir::ConsensusRelay& relay, const HostPort& target);

// The network a relay's address belongs to for the distinct-subnet rule: "4:a.b" for IPv4 /16,
// "6:xxxx:xxxx" for IPv6 /32, the address itself when it is not an IP literal.
std::string subnet_of(std::string_view ip);

}  // namespace thor::proxy
