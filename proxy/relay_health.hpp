// Which relays to avoid after circuits through them failed to build: sans-IO (times passed in), so
// it is tested without a network.
//
// A failed build counts against every relay on its path (the proxy rarely knows which hop broke),
// except when the link to the first relay failed, which blames that relay alone. A build that
// succeeds clears its relays. Counts expire after the exclusion period.
//
// Path selection asks for tiers of exclusions, strictest first: every suspect relay, then all but
// the least suspect, ..., then only the most suspect, then none, so a small network never runs out
// of paths because of a few transient failures, and still avoids the worst relay when it can.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace thor::proxy {

class RelayHealth {
 public:
  explicit RelayHealth(std::uint64_t exclusion_ms) : exclusion_ms_(exclusion_ms) {}

  // path: fingerprints, first hop first. blame_first_hop: the link to path[0] failed.
  void build_failed(const std::vector<std::string>& path, bool blame_first_hop, std::uint64_t now_ms);
  void build_succeeded(const std::vector<std::string>& path);

  // Relays with an unexpired failure count, and their counts.
  std::map<std::string, int> suspects(std::uint64_t now_ms) const;
  // Exclusion sets, strictest first (each the previous minus its least suspect relay); the last
  // one is always empty.
  std::vector<std::vector<std::string>> exclusion_tiers(std::uint64_t now_ms) const;

 private:
  struct Entry {
    int failures = 0;
    std::uint64_t last_failure_ms = 0;
  };
  std::uint64_t exclusion_ms_;
  std::map<std::string, Entry> entries_;
};

}  // namespace thor::proxy
