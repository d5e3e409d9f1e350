#include "proxy/relay_health.hpp"

#include <set>

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
  const auto current = suspects(now_ms);
  std::set<int> thresholds;
  for (const auto& [fp, n] : current) thresholds.insert(n);
  std::vector<std::vector<std::string>> tiers;
  for (int t : thresholds) {  // ascending: the lowest threshold excludes the most relays
    std::vector<std::string> tier;
    for (const auto& [fp, n] : current)
      if (n >= t) tier.push_back(fp);
    tiers.push_back(std::move(tier));
  }
  tiers.emplace_back();
  return tiers;
}

}  // namespace thor::proxy
