// The directory's view of its relays, sans-IO: who joined, who is alive, and the consensus made from
// them. Time is passed in (unix milliseconds), so expiry is tested with a fake clock.
//
// A relay is identified by its identity key. Its endpoint (address AND port) must not be claimed by
// another running relay: many relays may share a host, never a port. A rejoin replaces the old
// descriptor and takes the registration over from the old connection ("session").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto/keys.hpp"
#include "common/dir/documents.hpp"
#include "common/result.hpp"

namespace thor::dir {

struct MemberRecord {
  RelayDescriptor descriptor;
  std::string fingerprint;
  std::int64_t first_seen_ms = 0;      // first join ever (this directory run)
  std::int64_t joined_ms = 0;          // start of the current registration
  std::int64_t last_heartbeat_ms = 0;  // the join counts as the first heartbeat
  bool running = false;
  std::uint64_t session = 0;  // which connection owns the registration; 0 when none
};

struct ConsensusParams {
  std::string network = "thor";
  crypto::Ed25519Public directory;
  std::int64_t fresh_seconds = 60;      // fresh_until - valid_after
  std::int64_t lifetime_seconds = 3600; // valid_until - valid_after
  bool test_network = false;            // Exit also for policies that accept only private addresses
};

// Flag rules (docs/directory.md):
inline constexpr std::uint64_t kFastBandwidth = 100 * 1024;    // bytes/s: always Fast from here on
inline constexpr std::size_t kFewRelays = 8;                    // below this many running, all Fast and Stable
inline constexpr std::int64_t kStableGuaranteeMs = 24 * 3600 * 1000LL;

class Membership {
 public:
  struct Limits {
    std::uint64_t heartbeat_interval_ms = 5000;
    std::size_t max_relays = 10000;                          // records kept, running or not
    std::int64_t forget_after_ms = 7LL * 24 * 3600 * 1000;  // records of relays gone this long are dropped
  };
  struct Counters {
    std::uint64_t joins = 0;
    std::uint64_t joins_refused = 0;
    std::uint64_t heartbeats = 0;
    std::uint64_t heartbeats_missed = 0;  // registrations ended because heartbeats stopped
    std::uint64_t disconnects = 0;        // registrations ended because the connection dropped
  };
  struct JoinOutcome {
    std::uint64_t replaced_session = 0;  // the older connection of this relay, to be closed; 0 if none
  };

  explicit Membership(Limits limits) : limits_(limits) {}

  // A descriptor already verified (signature, proof, fields). Refused with a reason when another
  // running relay holds the endpoint, or when the table is full.
  Result<JoinOutcome> join(const RelayDescriptor& d, std::uint64_t session, std::int64_t now_ms);
  // false when this session no longer owns the relay's registration (replaced, expired, unknown).
  bool heartbeat(const crypto::Ed25519Public& id, std::uint64_t session, std::int64_t now_ms);
  // The connection of a session closed: its relay, if it still owns one, is not running from now.
  void disconnect(const crypto::Ed25519Public& id, std::uint64_t session, std::int64_t now_ms);
  // Marks not running every relay silent for longer than timeout_ms(); returns their sessions so the
  // daemon closes those connections. Also forgets long-gone records.
  std::vector<std::uint64_t> expire(std::int64_t now_ms);
  // Silence after which a relay is out: two intervals, so one late heartbeat is forgiven.
  std::int64_t timeout_ms() const { return 2 * static_cast<std::int64_t>(limits_.heartbeat_interval_ms); }

  Consensus build_consensus(const ConsensusParams& p, std::int64_t now_ms) const;

  const std::map<crypto::Ed25519Public, MemberRecord>& relays() const { return relays_; }
  const MemberRecord* find(const crypto::Ed25519Public& id) const;
  std::size_t running_count() const;
  const Counters& counters() const { return counters_; }
  void count_refused_join() { ++counters_.joins_refused; }
  // Bumped by every change that alters the consensus; the daemon rebuilds when it moves.
  std::uint64_t generation() const { return generation_; }
  const Limits& limits() const { return limits_; }

 private:
  Limits limits_;
  std::map<crypto::Ed25519Public, MemberRecord> relays_;
  Counters counters_;
  std::uint64_t generation_ = 0;
};

}  // namespace thor::dir
