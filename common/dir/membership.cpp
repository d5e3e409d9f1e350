#include "common/dir/membership.hpp"

#include <algorithm>

namespace thor::dir {

Result<Membership::JoinOutcome> Membership::join(const RelayDescriptor& d, std::uint64_t session,
                                                 std::int64_t now_ms) {
  for (const auto& [id, rec] : relays_) {
    if (rec.running && !(id == d.identity) && rec.descriptor.address == d.address) {
      ++counters_.joins_refused;
      return Error{"endpoint " + d.address.to_string() + " is already used by running relay " + rec.fingerprint};
    }
  }
  auto it = relays_.find(d.identity);
  if (it == relays_.end()) {
    if (relays_.size() >= limits_.max_relays) {
      // Make room by forgetting the longest-silent relay that is not running.
      auto victim = relays_.end();
      for (auto i = relays_.begin(); i != relays_.end(); ++i)
        if (!i->second.running && (victim == relays_.end() || i->second.last_heartbeat_ms < victim->second.last_heartbeat_ms))
          victim = i;
      if (victim == relays_.end()) {
        ++counters_.joins_refused;
        return Error{"the directory is full (" + std::to_string(limits_.max_relays) + " relays)"};
      }
      relays_.erase(victim);
    }
    MemberRecord rec;
    rec.fingerprint = crypto::fingerprint(d.identity);
    rec.first_seen_ms = now_ms;
    it = relays_.emplace(d.identity, std::move(rec)).first;
  }
  MemberRecord& rec = it->second;
  JoinOutcome out;
  if (rec.running && rec.session != session) out.replaced_session = rec.session;
  rec.descriptor = d;
  rec.joined_ms = now_ms;
  rec.last_heartbeat_ms = now_ms;
  rec.running = true;
  rec.session = session;
  ++counters_.joins;
  ++generation_;
  return out;
}

bool Membership::heartbeat(const crypto::Ed25519Public& id, std::uint64_t session, std::int64_t now_ms) {
  auto it = relays_.find(id);
  if (it == relays_.end() || !it->second.running || it->second.session != session) return false;
  it->second.last_heartbeat_ms = std::max(it->second.last_heartbeat_ms, now_ms);
  ++counters_.heartbeats;
  return true;
}

void Membership::disconnect(const crypto::Ed25519Public& id, std::uint64_t session, std::int64_t) {
  auto it = relays_.find(id);
  if (it == relays_.end() || !it->second.running || it->second.session != session) return;
  it->second.running = false;
  it->second.session = 0;
  ++counters_.disconnects;
  ++generation_;
}

std::vector<std::uint64_t> Membership::expire(std::int64_t now_ms) {
  std::vector<std::uint64_t> ended;
  for (auto it = relays_.begin(); it != relays_.end();) {
    MemberRecord& rec = it->second;
    if (rec.running && now_ms - rec.last_heartbeat_ms > timeout_ms()) {
      ended.push_back(rec.session);
      rec.running = false;
      rec.session = 0;
      ++counters_.heartbeats_missed;
      ++generation_;
    }
    if (!rec.running && now_ms - rec.last_heartbeat_ms > limits_.forget_after_ms) {
      it = relays_.erase(it);
      continue;
    }
    ++it;
  }
  return ended;
}

const MemberRecord* Membership::find(const crypto::Ed25519Public& id) const {
  auto it = relays_.find(id);
  return it == relays_.end() ? nullptr : &it->second;
}

std::size_t Membership::running_count() const {
  std::size_t n = 0;
  for (const auto& [id, rec] : relays_) n += rec.running ? 1 : 0;
  return n;
}

Consensus Membership::build_consensus(const ConsensusParams& p, std::int64_t now_ms) const {
  Consensus c;
  c.network = p.network;
  c.directory = p.directory;
  c.valid_after = now_ms / 1000;
  c.fresh_until = c.valid_after + p.fresh_seconds;
  c.valid_until = c.valid_after + std::max(p.lifetime_seconds, p.fresh_seconds);

  std::vector<const MemberRecord*> running;
  for (const auto& [id, rec] : relays_)
    if (rec.running) running.push_back(&rec);
  bool few = running.size() < kFewRelays;

  // Stable: up at least as long as the median running relay, or a day; everyone on a small network.
  std::vector<std::int64_t> uptimes;
  for (const auto* r : running) uptimes.push_back(now_ms - r->joined_ms);
  std::int64_t median = 0;
  if (!uptimes.empty()) {
    std::nth_element(uptimes.begin(), uptimes.begin() + static_cast<std::ptrdiff_t>(uptimes.size() / 2), uptimes.end());
    median = uptimes[uptimes.size() / 2];
  }

  for (const auto* r : running) {
    ConsensusRelay cr;
    cr.descriptor = r->descriptor;
    cr.fingerprint = r->fingerprint;
    cr.flags = kFlagRunning | kFlagValid;
    const ExitPolicy& policy = r->descriptor.exit_policy;
    if (policy.is_exit() || (p.test_network && policy.accepts_any_destination())) cr.flags |= kFlagExit;
    if (few || r->descriptor.bandwidth >= kFastBandwidth) cr.flags |= kFlagFast;
    std::int64_t up = now_ms - r->joined_ms;
    if (few || up >= std::min(median, kStableGuaranteeMs)) cr.flags |= kFlagStable;
    c.relays.push_back(std::move(cr));
  }
  return c;
}

}  // namespace thor::dir
