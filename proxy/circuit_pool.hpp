// The proxy's circuits: which exist, which isolation key each belongs to, which are ready for the
// next request, and which must be built for requests that wait.
//
// - A few circuits are built ahead of time, tied to no isolation key ("ready"), so a request does
//   not wait for a build. The first stream that uses one ties it to its isolation key.
// - A new stream goes to an open circuit of the same isolation key (or a ready one) whose exit
//   allows the target, that carries fewer than max_streams_per_circuit streams and that is not past
//   its dirtiness (counted from its first stream, Tor's MaxCircuitDirtiness). Streams of different
//   isolation keys never share a circuit.
// - A dirty circuit is closed once its last stream ends.
// - A build that fails or times out counts against its relays (RelayHealth) and another path is
//   tried for whoever waits; repeated failures slow further builds down (a capped backoff).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/circuit/circuit_client.hpp"
#include "common/crypto/random.hpp"
#include "common/dir/documents.hpp"
#include "common/net_address.hpp"
#include "common/uv/handle.hpp"
#include "proxy/path_selection.hpp"
#include "proxy/proxy_config.hpp"
#include "proxy/relay_health.hpp"

namespace thor::proxy {

struct CircuitNeed {
  std::string isolation_key;
  std::optional<HostPort> target;        // nullopt: any exit will do (a RESOLVE)
  std::vector<std::string> avoid_exits;  // fingerprints of exits that already refused this request
};

struct PoolCircuitInfo {
  circuit::CircuitRef ref = 0;
  bool open = false;                          // built (false: still building)
  std::optional<std::string> isolation_key;   // nullopt: not used yet (a ready circuit)
  std::vector<std::string> nicknames;         // entry, middle, exit
  std::vector<std::string> fingerprints;      // the same relays
  std::size_t streams = 0;
  bool dirty = false;                         // past its dirtiness: takes no new streams
};

struct PoolCounters {
  std::uint64_t launched = 0;       // builds started
  std::uint64_t built = 0;
  std::uint64_t build_failures = 0; // failed or timed out before being built
  std::uint64_t died = 0;           // closed by the network after being built
  std::uint64_t retired = 0;        // closed here after their dirtiness, once idle
};

class CircuitPool {
 public:
  using WaiterId = std::uint64_t;
  // ref: an open circuit for the need; 0: no relay in the consensus can be its exit.
  using ReadyCallback = std::function<void(circuit::CircuitRef ref)>;

  CircuitPool(uv_loop_t* loop, circuit::CircuitClient& client, const ProxyConfig& config, crypto::Rng& rng);
  ~CircuitPool();
  CircuitPool(const CircuitPool&) = delete;
  CircuitPool& operator=(const CircuitPool&) = delete;

  // Starts housekeeping (dirty circuits, ready circuits). Circuits are built once a consensus is set.
  void start();
  // Destroys every circuit; waiters are dropped without callbacks.
  void stop();

  void set_consensus(std::shared_ptr<const dir::Consensus> consensus);
  bool has_consensus() const { return consensus_ != nullptr; }
  // Runs when no path fits the consensus or builds keep failing: the consensus may be stale.
  void on_path_trouble(std::function<void()> cb) { path_trouble_ = std::move(cb); }

  // An open circuit for need, now (a ready circuit becomes need's isolation key's), or 0.
  circuit::CircuitRef take(const CircuitNeed& need);
  // Whether some running relay could be the exit for need (true while there is no consensus or
  // while it has too few relays for any path: more may be joining).
  bool exit_possible(const CircuitNeed& need) const;
  // Whether the pool can give need a circuit: one it has (open or building) fits, or a path can be
  // chosen (PathOptions::exclude removes a relay from every position, so in a small network
  // avoiding an exit can leave no path at all).
  bool can_serve(const CircuitNeed& need);
  // Waits for a circuit; ready runs from the loop (never inside wait()), after which the waiter is
  // gone. Builds what is needed.
  WaiterId wait(CircuitNeed need, ReadyCallback ready);
  void cancel(WaiterId id);

  // The exit of this circuit refused a stream to target because of its policy: no later stream to
  // that target goes through that exit (Tor adds a reject rule to its copy of the exit's policy).
  void exit_refused(circuit::CircuitRef ref, const HostPort& target);
  // The exit relay of a circuit of this pool (nullptr when unknown).
  const dir::ConsensusRelay* exit_of(circuit::CircuitRef ref) const;
  std::vector<PoolCircuitInfo> circuits() const;
  std::size_t waiting() const { return waiters_.size(); }
  const PoolCounters& counters() const { return counters_; }

 private:
  struct Circ {
    circuit::CircuitRef ref = 0;
    Path path;
    bool open = false;
    std::optional<std::string> key;
    std::uint64_t launched_ms = 0;
    std::uint64_t first_used_ms = 0;
  };
  struct Waiter {
    CircuitNeed need;
    ReadyCallback ready;
  };

  std::uint64_t now();
  bool dirty(const Circ& c, std::uint64_t now) const;
  bool fits(const Circ& c, const CircuitNeed& need) const;
  // avoid_exits: relays not to use as the exit (they refused this target); they may be other hops.
  circuit::CircuitRef launch(const std::optional<HostPort>& target, std::vector<std::string> avoid_exits);
  bool refused(const std::string& exit_fingerprint, const HostPort& target) const;
  // avoid plus every exit remembered as having refused target: not to be chosen as its exit.
  std::vector<std::string> exits_to_avoid(const std::optional<HostPort>& target,
                                          std::vector<std::string> avoid) const;
  void on_built(circuit::CircuitRef ref);
  void on_closed(circuit::CircuitRef ref, const circuit::CircuitClosed& why);
  bool launch_allowed(std::uint64_t now);
  void kick();
  void service();
  void housekeeping();
  static std::string describe(const Path& p);

  uv_loop_t* loop_;
  circuit::CircuitClient& client_;
  const ProxyConfig& config_;
  crypto::Rng& rng_;
  RelayHealth health_;
  std::shared_ptr<const dir::Consensus> consensus_;
  bool consensus_complete_ = false;  // it has enough relays for a path
  std::function<void()> path_trouble_;
  std::map<circuit::CircuitRef, Circ> circs_;
  std::map<WaiterId, Waiter> waiters_;
  std::set<std::pair<std::string, std::string>> refusals_;  // (exit fingerprint, target)  // ordered by id: oldest first
  WaiterId next_waiter_ = 1;
  uv::Timer kick_timer_, tick_timer_, backoff_timer_;
  bool kick_pending_ = false;
  bool running_ = false;
  bool in_service_ = false;
  int failures_in_a_row_ = 0;
  std::uint64_t last_failure_ms_ = 0;
  std::string last_path_error_;
  PoolCounters counters_;
  std::shared_ptr<bool> alive_;
};

}  // namespace thor::proxy
