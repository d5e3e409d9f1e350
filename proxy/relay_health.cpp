#include "proxy/relay_health.hpp"

#include <algorithm>
#include <utility>

namespace thor::proxy {

void RelayHealth::build_failed(const std::vector<std::string>& path, bool blame_first_hop, std::uint64_t now_ms) {
  // Forget what expired, so the map holds only relays that failed recently.
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now_ms - it->second.last_failure_ms >= exclusion_ms_) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  const std::size_t blamed = blame_first_hop && !path.empty() ? 1 : path.size();
  for (std::size_t i = 0; i < blamed; ++i) {
    Entry& e = entries_[path[i]];
    ++e.failures;
    e.last_failure_ms = now_ms;
  }
}

void RelayHealth::build_succeeded(const std::vector<std::string>& path) {
  for (const auto& fp : path) entries_.erase(fp);
}

std::map<std::string, int> RelayHealth::suspects(std::uint64_t now_ms) const {
  std::map<std::string, int> out;
  for (const auto& [fp, e] : entries_)
    if (now_ms - e.last_failure_ms < exclusion_ms_) out.emplace(fp, e.failures);
  return out;
}

std::vector<std::vector<std::string>> RelayHealth::exclusion_tiers(std::uint64_t now_ms) const {
  // Most suspect first: more failures, then the most recent failure, then by fingerprint.
  std::vector<std::pair<std::string, Entry>> ranked;
  for (const auto& [fp, e] : entries_)
    if (now_ms - e.last_failure_ms < exclusion_ms_) ranked.emplace_back(fp, e);
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    if (a.second.failures != b.second.failures) return a.second.failures > b.second.failures;
    if (a.second.last_failure_ms != b.second.last_failure_ms) return a.second.last_failure_ms > b.second.last_failure_ms;
    return a.first < b.first;
  });
  std::vector<std::vector<std::string>> tiers;
  for (std::size_t k = ranked.size(); k > 0; --k) {
    std::vector<std::string> tier;
    for (std::size_t i = 0; i < k; ++i) tier.push_back(ranked[i].first);
    tiers.push_back(std::move(tier));
  }
  tiers.emplace_back();
  return tiers;
}

}  // namespace thor::proxy
