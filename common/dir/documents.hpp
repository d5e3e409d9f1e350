// Directory documents: a relay's signed descriptor and the directory's signed consensus.
// Both are canonical JSON (nlohmann's dump(): sorted keys, no spaces, integers only) signed with
// Ed25519 over those exact bytes; the signed envelope is {"document": {...}, "signature": "b64"}.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/crypto/keys.hpp"
#include "common/dir/exit_policy.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"

namespace thor::dir {

struct RelayDescriptor {
  crypto::Ed25519Public identity;
  crypto::X25519Public onion_key;
  std::string nickname;          // 1-19 characters [A-Za-z0-9], as in Tor
  HostPort address;              // advertised: numeric IP and the link port
  ExitPolicy exit_policy = ExitPolicy::reject_all();
  std::uint64_t bandwidth = 0;   // bytes per second, advertised
  std::string version;           // "thor 0.1.0"
  std::int64_t published = 0;    // unix seconds
};

nlohmann::json descriptor_to_json(const RelayDescriptor& d);
Result<RelayDescriptor> descriptor_from_json(const nlohmann::json& j);  // checks every field
// {"document": ..., "signature": ...} signed by the relay's identity key.
nlohmann::json sign_descriptor(const RelayDescriptor& d, const crypto::IdentityKey& identity);
// Checks the signature against the identity inside the document, then the fields.
Result<RelayDescriptor> verify_descriptor(const nlohmann::json& envelope);

enum RelayFlag : std::uint32_t {
  kFlagRunning = 1,
  kFlagExit = 2,
  kFlagFast = 4,
  kFlagStable = 8,
  kFlagValid = 16,
};

struct ConsensusRelay {
  RelayDescriptor descriptor;
  std::string fingerprint;
  std::uint32_t flags = 0;
  bool has(RelayFlag f) const { return (flags & f) != 0; }
};

struct Consensus {
  std::string network;             // a label, e.g. "thor"
  crypto::Ed25519Public directory; // who signed it
  std::int64_t valid_after = 0;    // unix seconds
  std::int64_t fresh_until = 0;    // clients refetch after this
  std::int64_t valid_until = 0;    // clients refuse it after this
  std::vector<ConsensusRelay> relays;
};

nlohmann::json consensus_to_json(const Consensus& c);
Result<Consensus> consensus_from_json(const nlohmann::json& j);
nlohmann::json sign_consensus(const Consensus& c, const crypto::IdentityKey& directory_key);
// Verifies with the pinned directory key and checks valid_after <= now <= valid_until (with a
// few seconds of clock skew allowed). Errors: "consensus signature does not verify with the pinned
// directory key", "consensus expired at ...".
Result<Consensus> verify_consensus(const nlohmann::json& envelope, const crypto::Ed25519Public& pinned,
                                   std::int64_t now);

std::string canonical_json(const nlohmann::json& j);

// --- Added helpers shared by the directory, its clients and the status pages. ---

// Format labels inside the signed documents: they make a descriptor's signature useless as a
// consensus signature and the reverse, and name the version.
inline constexpr const char* kDescriptorFormat = "thor-descriptor-1";
inline constexpr const char* kConsensusFormat = "thor-consensus-1";
// Clock skew tolerated between a consensus's validity times and a client's clock.
inline constexpr std::int64_t kConsensusClockSkewSeconds = 30;

// Parses JSON from the network: refuses invalid UTF-8, trailing bytes and nesting deeper than
// max_depth (nlohmann serialises recursively, so depth is bounded before anything is dumped).
Result<nlohmann::json> parse_untrusted_json(std::string_view text, int max_depth = 16);

// Flag names as in Tor's consensus ("Exit", "Fast", "Running", "Stable", "Valid"), sorted.
std::vector<std::string> flag_names(std::uint32_t flags);
// 0 for a name Thor does not know (ignored by readers, for forward compatibility).
std::uint32_t flag_from_name(std::string_view name);

// "2024-05-01 12:00:00" (UTC), the format of Tor's Onionoo documents.
std::string format_utc(std::int64_t unix_seconds);

}  // namespace thor::dir
