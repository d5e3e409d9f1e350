#include "proxy/consensus_keeper.hpp"

#include <algorithm>
#include <chrono>

#include "common/dir/directory_client.hpp"
#include "common/log.hpp"

namespace thor::proxy {

namespace {
// Fetches at retry_min while a consensus has too few relays, before backing off.
constexpr int kQuickRetries = 10;

std::int64_t wall_seconds() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}
}  // namespace

ConsensusKeeper::ConsensusKeeper(uv_loop_t* loop, Options options)
    : loop_(loop), options_(std::move(options)), timer_(loop), alive_(std::make_shared<bool>(true)) {
  options_.retry_min_ms = std::max<std::uint64_t>(1, options_.retry_min_ms);
  options_.retry_max_ms = std::max(options_.retry_max_ms, options_.retry_min_ms);
}

ConsensusKeeper::~ConsensusKeeper() {
  *alive_ = false;
  in_flight_.reset();
}

void ConsensusKeeper::start(std::function<void()> on_update, Problem problem) {
  on_update_ = std::move(on_update);
  problem_ = std::move(problem);
  running_ = true;
  fetch_now();
}

void ConsensusKeeper::stop() {
  running_ = false;
  timer_.stop();
  in_flight_.reset();
}

void ConsensusKeeper::refetch_soon() {
  if (!running_ || in_flight_) return;
  uv_update_time(loop_);
  const std::uint64_t now = uv_now(loop_);
  const std::uint64_t earliest = last_start_ms_ + options_.retry_min_ms;
  if (!started_once_ || now >= earliest) {
    fetch_now();
  } else if (!timer_.active() || next_fetch_ms_ > earliest) {
    schedule(earliest - now);  // brings a later planned refetch forward
  }
}

void ConsensusKeeper::fetch_now() {
  if (!running_) return;
  timer_.stop();
  uv_update_time(loop_);
  last_start_ms_ = uv_now(loop_);
  started_once_ = true;
  auto alive = alive_;
  in_flight_ = dir::fetch_consensus(loop_, options_.directory, options_.directory_key,
                                    [this, alive](Result<dir::Consensus> r) {
                                      if (!*alive) return;
                                      on_result(std::move(r));
                                    });
}

std::uint64_t ConsensusKeeper::next_backoff() {
  backoff_ms_ = backoff_ms_ == 0 ? options_.retry_min_ms : std::min(backoff_ms_ * 2, options_.retry_max_ms);
  return backoff_ms_;
}

void ConsensusKeeper::on_result(Result<dir::Consensus> r) {
  // The fetch is finished; dropping its handle here is allowed (directory_client.hpp).
  auto done = std::move(in_flight_);
  if (!running_) return;
  if (!r) {
    ++fetches_failed_;
    ++failures_in_a_row_;
    const std::uint64_t delay = next_backoff();
    if (r.error() != last_error_) {
      LOG_WARN("no usable consensus: " << r.error() << " (retrying every few seconds)");
      last_error_ = r.error();
    } else {
      LOG_DEBUG("consensus fetch failed again: " << r.error() << "; next try in " << delay << " ms");
    }
    schedule(delay);
    return;
  }
  ++fetches_ok_;
  if (failures_in_a_row_ > 0)
    LOG_NOTICE("consensus fetched after " << failures_in_a_row_ << " failed attempt"
                                          << (failures_in_a_row_ == 1 ? "" : "s"));
  failures_in_a_row_ = 0;
  last_error_.clear();

  auto consensus = std::make_shared<const dir::Consensus>(std::move(*r));
  const bool changed = !current_ || current_->relays.size() != consensus->relays.size() ||
                       current_->valid_after != consensus->valid_after;
  std::size_t exits = 0;
  for (const auto& relay : consensus->relays)
    if (relay.has(dir::kFlagExit)) ++exits;
  if (changed)
    LOG_INFO("consensus: " << consensus->relays.size() << " relays (" << exits << " exits), fresh until "
                           << dir::format_utc(consensus->fresh_until) << " UTC");
  current_ = consensus;

  std::optional<std::string> problem = problem_ ? problem_(*consensus) : std::nullopt;
  if (problem) {
    // Relays are probably still joining (a network that just started): ask again soon, and back
    // off only if it stays that way.
    const std::uint64_t delay = ++insufficient_in_a_row_ <= kQuickRetries ? options_.retry_min_ms : next_backoff();
    if (*problem != last_error_) {
      LOG_WARN("the consensus is not enough to build circuits yet: " << *problem << " (fetching again)");
      last_error_ = *problem;
    }
    schedule(delay);
  } else {
    backoff_ms_ = 0;
    insufficient_in_a_row_ = 0;
    // Refetch when it stops being fresh; if that already passed (a short-lived consensus or clock
    // skew), in a quarter of what is left of its validity, between 5 and 60 seconds.
    std::int64_t secs = consensus->fresh_until - wall_seconds();
    if (secs <= 0) secs = std::clamp<std::int64_t>((consensus->valid_until - wall_seconds()) / 4, 5, 60);
    schedule(static_cast<std::uint64_t>(secs) * 1000);
  }
  if (on_update_) on_update_();
}

void ConsensusKeeper::schedule(std::uint64_t delay_ms) {
  if (!running_) return;
  uv_update_time(loop_);
  next_fetch_ms_ = uv_now(loop_) + delay_ms;
  auto alive = alive_;
  timer_.start(delay_ms, 0, [this, alive] {
    if (!*alive) return;
    fetch_now();
  });
}

}  // namespace thor::proxy
