#include "proxy/circuit_pool.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace thor::proxy {

namespace {
constexpr std::uint64_t kHousekeepingMs = 1000;
// After this many build failures in a row, each further build waits: 250 ms, doubling to 5 s.
constexpr int kFreeFailures = 3;
constexpr std::uint64_t kBackoffFirstMs = 250;
constexpr std::uint64_t kBackoffMaxMs = 5000;
// Exit refusals remembered (exit, target); the set is cleared when it reaches this size.
constexpr std::size_t kMaxRefusals = 4096;
// The prefix ClientCircuit gives a closure caused by the link to the first relay.
constexpr std::string_view kFirstLinkClosed = "the link to the first relay closed";

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
}  // namespace

CircuitPool::CircuitPool(uv_loop_t* loop, circuit::CircuitClient& client, const ProxyConfig& config, crypto::Rng& rng)
    : loop_(loop),
      client_(client),
      config_(config),
      rng_(rng),
      health_(config.relay_failure_exclusion_ms),
      kick_timer_(loop),
      tick_timer_(loop),
      backoff_timer_(loop),
      alive_(std::make_shared<bool>(true)) {}

CircuitPool::~CircuitPool() {
  *alive_ = false;
  stop();
}

void CircuitPool::start() {
  running_ = true;
  tick_timer_.start(kHousekeepingMs, kHousekeepingMs, [this] { housekeeping(); });
  kick();
}

void CircuitPool::stop() {
  running_ = false;
  tick_timer_.stop();
  kick_timer_.stop();
  backoff_timer_.stop();
  waiters_.clear();
  for (const auto& [ref, c] : circs_) client_.destroy_circuit(ref);
  circs_.clear();
}

std::uint64_t CircuitPool::now() {
  uv_update_time(loop_);
  return uv_now(loop_);
}

void CircuitPool::set_consensus(std::shared_ptr<const dir::Consensus> consensus) {
  consensus_ = std::move(consensus);
  PathOptions options;
  options.allow_same_subnet = config_.allow_same_subnet;
  consensus_complete_ = consensus_ && select_path(*consensus_, std::nullopt, options, rng_).ok();
  last_path_error_.clear();
  kick();
}

bool CircuitPool::dirty(const Circ& c, std::uint64_t now) const {
  return c.first_used_ms != 0 && now - c.first_used_ms >= config_.circuit_dirtiness_ms;
}

bool CircuitPool::fits(const Circ& c, const CircuitNeed& need) const {
  if (c.key && *c.key != need.isolation_key) return false;
  if (need.target && (!exit_allows(c.path.exit, *need.target) || refused(c.path.exit.fingerprint, *need.target)))
    return false;
  return !contains(need.avoid_exits, c.path.exit.fingerprint);
}

circuit::CircuitRef CircuitPool::take(const CircuitNeed& need) {
  if (!running_) return 0;
  const std::uint64_t t = now();
  Circ* best = nullptr;
  for (auto& [ref, c] : circs_) {
    if (!c.open || dirty(c, t) || !fits(c, need)) continue;
    if (client_.stream_count(ref) >= config_.max_streams_per_circuit) continue;
    if (!best) {
      best = &c;
      continue;
    }
    // Prefer a circuit this key already uses (keeps the ready ones ready), then the freshest.
    const bool mine = c.key.has_value(), best_mine = best->key.has_value();
    if (mine != best_mine) {
      if (mine) best = &c;
      continue;
    }
    if (c.first_used_ms > best->first_used_ms) best = &c;
  }
  if (!best) return 0;
  if (!best->key) {
    best->key = need.isolation_key;
    kick();  // a ready circuit was used: build its replacement
  }
  if (best->first_used_ms == 0) best->first_used_ms = t;
  return best->ref;
}

bool CircuitPool::exit_possible(const CircuitNeed& need) const {
  // Relays may still be joining: judge only a consensus that can give a path at all.
  if (!consensus_ || !consensus_complete_) return true;
  for (const auto& r : consensus_->relays) {
    if (!r.has(dir::kFlagRunning) || !r.has(dir::kFlagValid)) continue;
    if (contains(need.avoid_exits, r.fingerprint)) continue;
    if (!need.target) {
      if (r.descriptor.exit_policy.is_exit() || r.descriptor.exit_policy.accepts_any_destination()) return true;
      continue;
    }
    if (exit_allows(r, *need.target) && !refused(r.fingerprint, *need.target)) return true;
  }
  return false;
}

bool CircuitPool::can_serve(const CircuitNeed& need) {
  if (!consensus_) return true;
  const std::uint64_t t = now();
  for (const auto& [ref, c] : circs_)
    if (!dirty(c, t) && fits(c, need)) return true;
  PathOptions options;
  options.allow_same_subnet = config_.allow_same_subnet;
  options.exclude_exits = exits_to_avoid(need.target, need.avoid_exits);
  return select_path(*consensus_, need.target, options, rng_).ok();
}

std::vector<std::string> CircuitPool::exits_to_avoid(const std::optional<HostPort>& target,
                                                     std::vector<std::string> avoid) const {
  if (!target) return avoid;
  const std::string where = target->to_string();
  for (const auto& [fp, refused_target] : refusals_)
    if (refused_target == where) avoid.push_back(fp);
  return avoid;
}

bool CircuitPool::refused(const std::string& exit_fingerprint, const HostPort& target) const {
  return !refusals_.empty() && refusals_.count({exit_fingerprint, target.to_string()}) != 0;
}

void CircuitPool::exit_refused(circuit::CircuitRef ref, const HostPort& target) {
  auto it = circs_.find(ref);
  if (it == circs_.end()) return;
  if (refusals_.size() >= kMaxRefusals) refusals_.clear();  // a bound, not a cache policy
  refusals_.emplace(it->second.path.exit.fingerprint, target.to_string());
}

CircuitPool::WaiterId CircuitPool::wait(CircuitNeed need, ReadyCallback ready) {
  const WaiterId id = next_waiter_++;
  waiters_.emplace(id, Waiter{std::move(need), std::move(ready)});
  kick();
  return id;
}

void CircuitPool::cancel(WaiterId id) { waiters_.erase(id); }

const dir::ConsensusRelay* CircuitPool::exit_of(circuit::CircuitRef ref) const {
  auto it = circs_.find(ref);
  return it == circs_.end() ? nullptr : &it->second.path.exit;
}

std::vector<PoolCircuitInfo> CircuitPool::circuits() const {
  uv_update_time(loop_);
  const std::uint64_t t = uv_now(loop_);
  std::vector<PoolCircuitInfo> out;
  for (const auto& [ref, c] : circs_) {
    PoolCircuitInfo i;
    i.ref = ref;
    i.open = c.open;
    i.isolation_key = c.key;
    for (const auto* hop : c.path.hops()) {
      i.nicknames.push_back(hop->descriptor.nickname);
      i.fingerprints.push_back(hop->fingerprint);
    }
    i.streams = client_.stream_count(ref);
    i.dirty = dirty(c, t);
    out.push_back(std::move(i));
  }
  return out;
}

std::string CircuitPool::describe(const Path& p) {
  return p.entry.descriptor.nickname + " -> " + p.middle.descriptor.nickname + " -> " + p.exit.descriptor.nickname;
}

circuit::CircuitRef CircuitPool::launch(const std::optional<HostPort>& target,
                                       std::vector<std::string> avoid_exits) {
  if (!consensus_) return 0;
  avoid_exits = exits_to_avoid(target, std::move(avoid_exits));
  std::optional<Path> path;
  std::string error;
  for (const auto& tier : health_.exclusion_tiers(now())) {
    PathOptions options;
    options.allow_same_subnet = config_.allow_same_subnet;
    options.exclude = tier;
    options.exclude_exits = avoid_exits;
    auto r = select_path(*consensus_, target, options, rng_);
    if (r) {
      path = std::move(*r);
      break;
    }
    if (error.empty()) error = r.error();
  }
  if (!path) {
    if (error != last_path_error_) {
      LOG_WARN("cannot choose a path: " << error);
      last_path_error_ = error;
    }
    if (path_trouble_) path_trouble_();
    return 0;
  }
  auto holder = std::make_shared<circuit::CircuitRef>(0);
  auto alive = alive_;
  circuit::CircuitCallbacks cbs;
  cbs.on_built = [this, alive, holder] {
    if (*alive) on_built(*holder);
  };
  cbs.on_closed = [this, alive, holder](const circuit::CircuitClosed& why) {
    if (*alive) on_closed(*holder, why);
  };
  const circuit::CircuitRef ref = client_.build_circuit(
      std::vector<dir::ConsensusRelay>{path->entry, path->middle, path->exit}, std::move(cbs));
  if (ref == 0) {
    LOG_WARN("cannot start a circuit through " << describe(*path) << ": no free circuit id on the link");
    return 0;
  }
  *holder = ref;
  Circ c;
  c.ref = ref;
  c.path = std::move(*path);
  c.launched_ms = now();
  circs_.emplace(ref, std::move(c));
  ++counters_.launched;
  LOG_DEBUG("circuit " << ref << ": building through " << describe(circs_[ref].path));
  return ref;
}

void CircuitPool::on_built(circuit::CircuitRef ref) {
  auto it = circs_.find(ref);
  if (it == circs_.end()) return;
  Circ& c = it->second;
  c.open = true;
  ++counters_.built;
  failures_in_a_row_ = 0;
  health_.build_succeeded({c.path.entry.fingerprint, c.path.middle.fingerprint, c.path.exit.fingerprint});
  LOG_INFO("circuit " << ref << " built in " << (now() - c.launched_ms) << " ms: " << describe(c.path));
  kick();
}

void CircuitPool::on_closed(circuit::CircuitRef ref, const circuit::CircuitClosed& why) {
  auto it = circs_.find(ref);
  if (it == circs_.end()) return;
  Circ c = std::move(it->second);
  circs_.erase(it);
  const std::uint64_t t = now();
  if (!c.open) {
    ++counters_.build_failures;
    ++failures_in_a_row_;
    last_failure_ms_ = t;
    const bool first_link = why.message.rfind(kFirstLinkClosed, 0) == 0;
    health_.build_failed({c.path.entry.fingerprint, c.path.middle.fingerprint, c.path.exit.fingerprint}, first_link, t);
    LOG_WARN("circuit " << ref << " failed to build after " << (t - c.launched_ms) << " ms (" << describe(c.path)
                        << "): " << why.message);
    // Relays that stopped answering may have left the consensus already.
    if (failures_in_a_row_ >= 2 && path_trouble_) path_trouble_();
  } else {
    ++counters_.died;
    if (c.first_used_ms != 0) {
      LOG_WARN("circuit " << ref << " closed (" << describe(c.path) << "): " << why.message);
    } else {
      LOG_INFO("ready circuit " << ref << " closed (" << describe(c.path) << "): " << why.message);
    }
  }
  kick();
}

bool CircuitPool::launch_allowed(std::uint64_t t) {
  if (failures_in_a_row_ < kFreeFailures) return true;
  const int shift = std::min(failures_in_a_row_ - kFreeFailures, 5);
  const std::uint64_t delay = std::min(kBackoffFirstMs << shift, kBackoffMaxMs);
  if (t >= last_failure_ms_ + delay) return true;
  if (!backoff_timer_.active()) backoff_timer_.start(last_failure_ms_ + delay - t, 0, [this] { kick(); });
  return false;
}

void CircuitPool::kick() {
  if (!running_ || kick_pending_) return;
  kick_pending_ = true;
  kick_timer_.start(0, 0, [this] {
    kick_pending_ = false;
    service();
  });
}

// Hands open circuits to waiters (oldest first), builds for waiters that nothing under way can
// serve, and keeps ready_circuits unused circuits open or building.
void CircuitPool::service() {
  if (!running_ || in_service_) return;
  in_service_ = true;
  auto alive = alive_;

  std::vector<WaiterId> ids;
  ids.reserve(waiters_.size());
  for (const auto& [id, w] : waiters_) ids.push_back(id);
  for (WaiterId id : ids) {
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;
    circuit::CircuitRef ref = 0;
    if (!exit_possible(it->second.need)) {
      ref = 0;
    } else {
      ref = take(it->second.need);
      if (ref == 0) continue;
    }
    ReadyCallback ready = std::move(it->second.ready);
    waiters_.erase(it);
    ready(ref);  // may open streams, add or cancel waiters, or stop the pool
    if (!*alive) return;
    if (!running_) {
      in_service_ = false;
      return;
    }
  }

  const std::uint64_t t = now();
  std::size_t building = 0;
  for (const auto& [ref, c] : circs_)
    if (!c.open) ++building;

  // Circuits under way promised to waiters: a waiter shares one with waiters of its key.
  struct Promise {
    std::string key;
    std::size_t count = 0;
  };
  std::map<circuit::CircuitRef, Promise> promised;
  bool blocked = false;
  for (const auto& [id, w] : waiters_) {
    bool served = false;
    for (const auto& [ref, c] : circs_) {
      if (c.open || !fits(c, w.need)) continue;
      auto p = promised.find(ref);
      if (p == promised.end()) {
        promised[ref] = Promise{w.need.isolation_key, 1};
        served = true;
        break;
      }
      if (p->second.key == w.need.isolation_key && p->second.count < config_.max_streams_per_circuit) {
        ++p->second.count;
        served = true;
        break;
      }
    }
    if (served || blocked || !consensus_) continue;
    if (building >= config_.max_building_circuits || !launch_allowed(t)) {
      blocked = true;
      continue;
    }
    const circuit::CircuitRef ref = launch(w.need.target, w.need.avoid_exits);
    if (ref == 0) continue;
    ++building;
    promised[ref] = Promise{w.need.isolation_key, 1};
  }

  std::size_t ready = 0;
  for (const auto& [ref, c] : circs_)
    if (!c.key && !promised.count(ref)) ++ready;
  while (consensus_ && !blocked && ready < config_.ready_circuits && building < config_.max_building_circuits &&
         launch_allowed(t)) {
    if (launch(std::nullopt, {}) == 0) break;
    ++ready;
    ++building;
  }
  in_service_ = false;
}

void CircuitPool::housekeeping() {
  const std::uint64_t t = now();
  std::vector<circuit::CircuitRef> retire;
  for (const auto& [ref, c] : circs_)
    if (c.open && dirty(c, t) && client_.stream_count(ref) == 0) retire.push_back(ref);
  for (circuit::CircuitRef ref : retire) {
    client_.destroy_circuit(ref);
    circs_.erase(ref);
    ++counters_.retired;
    LOG_DEBUG("circuit " << ref << " retired: past its dirtiness and idle");
  }
  service();
}

}  // namespace thor::proxy
