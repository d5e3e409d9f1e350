// Keeps a verified consensus: fetches it from the directory at start, refetches before it stops
// being fresh, and retries quickly (with a capped backoff) while there is none or while it has too
// few relays for a path. A consensus the pinned key does not verify is refused with one log line.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/crypto/keys.hpp"
#include "common/dir/documents.hpp"
#include "common/net_address.hpp"
#include "common/uv/handle.hpp"

namespace thor::proxy {

class ConsensusKeeper {
 public:
  struct Options {
    HostPort directory;
    crypto::Ed25519Public directory_key{};
    std::uint64_t retry_min_ms = 1'000;
    std::uint64_t retry_max_ms = 30'000;
  };
  // What is wrong with a consensus for building paths (nullopt: nothing).
  using Problem = std::function<std::optional<std::string>(const dir::Consensus&)>;

  ConsensusKeeper(uv_loop_t* loop, Options options);
  ~ConsensusKeeper();
  ConsensusKeeper(const ConsensusKeeper&) = delete;
  ConsensusKeeper& operator=(const ConsensusKeeper&) = delete;

  // on_update runs after each consensus accepted (from the loop).
  void start(std::function<void()> on_update, Problem problem);
  void stop();
  // Paths keep failing or none fits: fetch again now, unless a fetch is under way or one started
  // less than retry_min ago (then at that point).
  void refetch_soon();

  std::shared_ptr<const dir::Consensus> current() const { return current_; }
  std::uint64_t fetches_ok() const { return fetches_ok_; }
  std::uint64_t fetches_failed() const { return fetches_failed_; }

 private:
  void fetch_now();
  void on_result(Result<dir::Consensus> r);
  void schedule(std::uint64_t delay_ms);
  std::uint64_t next_backoff();

  uv_loop_t* loop_;
  Options options_;
  uv::Timer timer_;
  std::shared_ptr<void> in_flight_;
  std::shared_ptr<const dir::Consensus> current_;
  std::function<void()> on_update_;
  Problem problem_;
  bool running_ = false;
  std::uint64_t backoff_ms_ = 0;
  std::uint64_t last_start_ms_ = 0;
  std::uint64_t next_fetch_ms_ = 0;
  bool started_once_ = false;
  std::string last_error_;
  int failures_in_a_row_ = 0;
  int insufficient_in_a_row_ = 0;
  std::uint64_t fetches_ok_ = 0, fetches_failed_ = 0;
  std::shared_ptr<bool> alive_;
};

}  // namespace thor::proxy
