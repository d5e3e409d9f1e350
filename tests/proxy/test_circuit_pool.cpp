// The circuit pool against in-process relays and a hand-made consensus: ready circuits, a relay that
// never answers (builds time out, another path is tried, the relay is avoided), waiters.
#include <doctest/doctest.h>

#include "common/crypto/random.hpp"
#include "common/dir/exit_policy.hpp"
#include "proxy/circuit_pool.hpp"
#include "tests/proxy/proxy_test_support.hpp"

using namespace thor;
using namespace thor::proxy;
using namespace thor::proxy::test;

namespace {

dir::ConsensusRelay consensus_entry(const dir::RelayDescriptor& d) {
  dir::ConsensusRelay r;
  r.descriptor = d;
  r.fingerprint = crypto::fingerprint(d.identity);
  r.flags = dir::kFlagRunning | dir::kFlagValid | dir::kFlagExit | dir::kFlagFast;
  return r;
}

// Three real relays (no directory) and one "relay" that accepts TCP connections and never answers.
struct Fixture {
  TestLoop loop;
  std::vector<std::unique_ptr<relay::RelayServer>> relays;
  uv::TcpListener black_hole{loop.get()};
  std::vector<std::unique_ptr<uv::TcpConnection>> swallowed;
  std::string hole_fingerprint;
  std::shared_ptr<dir::Consensus> consensus = std::make_shared<dir::Consensus>();

  Fixture() {
    for (int i = 0; i < 3; ++i) {
      relay::RelayConfig c;
      c.identity = crypto::IdentityKey::generate(crypto::system_rng());
      c.listen = {"127.0.0.1", 0};
      c.exit_policy = ExitPolicy::loopback_test_exit();
      c.nickname = "real" + std::to_string(i);
      c.onion_key_rotation_ms = 0;
      relays.push_back(std::make_unique<relay::RelayServer>(loop.get(), std::move(c)));
      REQUIRE(relays.back()->start());
      consensus->relays.push_back(consensus_entry(relays.back()->descriptor()));
    }
    REQUIRE(black_hole.listen({"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> c) {
      swallowed.push_back(std::move(c));  // held open, never read from
    }));
    dir::RelayDescriptor hole;
    hole.identity = crypto::IdentityKey::generate(crypto::system_rng()).public_key();
    hole.onion_key = crypto::X25519Keypair::generate(crypto::system_rng()).public_key;
    hole.nickname = "blackhole";
    hole.address = {"127.0.0.1", black_hole.bound_port()};
    hole.exit_policy = ExitPolicy::loopback_test_exit();
    hole.bandwidth = 1'000'000;
    consensus->relays.push_back(consensus_entry(hole));
    hole_fingerprint = consensus->relays.back().fingerprint;
    consensus->valid_after = 1;
    consensus->fresh_until = 2;
    consensus->valid_until = 3;
  }
  ~Fixture() {
    for (auto& r : relays) r->stop();
  }
};

bool uses(const PoolCircuitInfo& c, const std::string& fp) {
  return std::find(c.fingerprints.begin(), c.fingerprints.end(), fp) != c.fingerprints.end();
}

}  // namespace

TEST_CASE("circuit pool: builds through a silent relay time out; other paths are tried and it is avoided") {
  Fixture f;
  ProxyConfig cfg;
  cfg.allow_same_subnet = true;
  cfg.ready_circuits = 3;
  cfg.circuit_build_timeout_ms = 300;
  circuit::CircuitClientOptions copts;
  copts.build_timeout_ms = cfg.circuit_build_timeout_ms;
  copts.link_handshake_timeout_ms = cfg.circuit_build_timeout_ms;
  circuit::CircuitClient client(f.loop.get(), copts);
  // With this seed, the first three paths chosen include the silent relay at least once.
  crypto::DeterministicRng rng(7);
  CircuitPool pool(f.loop.get(), client, cfg, rng);
  pool.start();
  pool.set_consensus(f.consensus);

  f.loop.run_for(20);
  const auto first = pool.circuits();
  REQUIRE(first.size() == 3);
  std::size_t through_hole = 0;
  for (const auto& c : first) through_hole += uses(c, f.hole_fingerprint) ? 1 : 0;
  REQUIRE(through_hole >= 1);

  // Eventually three ready circuits, none through the silent relay.
  REQUIRE(f.loop.run_until(
      [&] {
        std::size_t open = 0;
        for (const auto& c : pool.circuits())
          if (c.open && !c.isolation_key) ++open;
        return open >= 3;
      },
      10'000));
  for (const auto& c : pool.circuits())
    if (c.open) CHECK_FALSE(uses(c, f.hole_fingerprint));
  CHECK(pool.counters().build_failures >= through_hole);
  CHECK(pool.counters().built >= 3);

  // A waiter for a key gets an open circuit, which then belongs to that key; a ready one replaces it.
  circuit::CircuitRef got = 0;
  CircuitNeed need;
  need.isolation_key = "k1";
  need.target = HostPort{"127.0.0.1", 80};
  pool.wait(need, [&](circuit::CircuitRef ref) { got = ref; });
  CHECK(got == 0);  // never inside wait()
  REQUIRE(f.loop.run_until([&] { return got != 0; }, 5000));
  CHECK(pool.take(need) == got);  // the same key reuses its circuit
  CircuitNeed other = need;
  other.isolation_key = "k2";
  const circuit::CircuitRef k2 = pool.take(other);
  CHECK(k2 != 0);
  CHECK(k2 != got);
  // Two ready circuits were used: the pool builds replacements.
  REQUIRE(f.loop.run_until(
      [&] {
        std::size_t ready = 0;
        for (const auto& c : pool.circuits())
          if (c.open && !c.isolation_key) ++ready;
        return ready >= 3;
      },
      10'000));

  // No exit allows a private address: the waiter is told so (ref 0), not left waiting.
  CircuitNeed impossible;
  impossible.target = HostPort{"10.0.0.1", 80};
  CHECK_FALSE(pool.exit_possible(impossible));
  bool told = false;
  pool.wait(impossible, [&](circuit::CircuitRef ref) { told = ref == 0; });
  CHECK(f.loop.run_until([&] { return told; }, 2000));
  pool.stop();
}
