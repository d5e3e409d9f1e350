#include <doctest/doctest.h>

#include "common/dir/membership.hpp"
#include "tests/dir/dir_test_support.hpp"

using namespace thor;
using namespace thor::dir;

namespace {
constexpr std::int64_t kT0 = 1'700'000'000'000;  // a fake clock, in ms
constexpr std::uint64_t kInterval = 1000;

struct Net {
  crypto::DeterministicRng rng{40};
  crypto::IdentityKey dir = crypto::IdentityKey::generate(rng);
  std::vector<crypto::IdentityKey> keys;
  Membership m{Membership::Limits{kInterval, 100, 3600 * 1000}};
  explicit Net(int n) {
    for (int i = 0; i < n; ++i) keys.push_back(crypto::IdentityKey::generate(rng));
  }
  RelayDescriptor desc(int i, std::uint16_t port, std::uint64_t bw = 1 << 20) {
    return testing::make_descriptor(keys[static_cast<std::size_t>(i)], port, kT0 / 1000, "r" + std::to_string(i), bw);
  }
  ConsensusParams params(bool test_network = false) {
    ConsensusParams p;
    p.network = "t";
    p.directory = dir.public_key();
    p.test_network = test_network;
    return p;
  }
};
}  // namespace

TEST_CASE("membership: join, heartbeats keep a relay running, silence expires it within the timeout") {
  Net n(3);
  for (int i = 0; i < 3; ++i) REQUIRE(n.m.join(n.desc(i, static_cast<std::uint16_t>(5000 + i)), 10 + i, kT0));
  CHECK(n.m.running_count() == 3);
  CHECK(n.m.counters().joins == 3);

  // Relays 0 and 1 heartbeat every interval; relay 2 goes silent.
  std::int64_t t = kT0;
  for (int beat = 1; beat <= 2; ++beat) {
    t = kT0 + beat * static_cast<std::int64_t>(kInterval);
    CHECK(n.m.heartbeat(n.keys[0].public_key(), 10, t));
    CHECK(n.m.heartbeat(n.keys[1].public_key(), 11, t));
    CHECK(n.m.expire(t).empty());  // exactly at the timeout: still in
  }
  auto ended = n.m.expire(kT0 + n.m.timeout_ms() + 1);
  REQUIRE(ended.size() == 1);
  CHECK(ended[0] == 12);
  CHECK(n.m.running_count() == 2);
  CHECK_FALSE(n.m.find(n.keys[2].public_key())->running);
  CHECK(n.m.counters().heartbeats_missed == 1);
  CHECK(n.m.timeout_ms() < 3 * static_cast<std::int64_t>(kInterval));
  // A heartbeat after expiry is refused: the relay must rejoin.
  CHECK_FALSE(n.m.heartbeat(n.keys[2].public_key(), 12, kT0 + 2500));
  // It leaves the consensus.
  auto c = n.m.build_consensus(n.params(), kT0 + 2500);
  CHECK(c.relays.size() == 2);
  for (const auto& r : c.relays) CHECK_FALSE(r.descriptor.identity == n.keys[2].public_key());
}

TEST_CASE("membership: a dropped connection ends the registration at once; rejoin replaces the descriptor") {
  Net n(2);
  REQUIRE(n.m.join(n.desc(0, 5000), 1, kT0));
  auto g = n.m.generation();
  n.m.disconnect(n.keys[0].public_key(), 1, kT0 + 10);
  CHECK(n.m.running_count() == 0);
  CHECK(n.m.generation() != g);
  CHECK(n.m.counters().disconnects == 1);

  // Rejoin on a new connection with a new port: the old descriptor is replaced, first_seen kept.
  REQUIRE(n.m.join(n.desc(0, 5005), 2, kT0 + 20));
  const auto* rec = n.m.find(n.keys[0].public_key());
  CHECK(rec->descriptor.address.port == 5005);
  CHECK(rec->first_seen_ms == kT0);
  CHECK(rec->joined_ms == kT0 + 20);

  // A rejoin while the old connection is still open takes the registration over.
  auto again = n.m.join(n.desc(0, 5005), 3, kT0 + 30);
  REQUIRE(again);
  CHECK(again->replaced_session == 2);
  CHECK_FALSE(n.m.heartbeat(n.keys[0].public_key(), 2, kT0 + 40));  // the old session is out
  n.m.disconnect(n.keys[0].public_key(), 2, kT0 + 41);             // and its close changes nothing
  CHECK(n.m.running_count() == 1);
  CHECK(n.m.heartbeat(n.keys[0].public_key(), 3, kT0 + 42));
}

TEST_CASE("membership: endpoints are address and port; a running relay's endpoint cannot be taken") {
  Net n(3);
  REQUIRE(n.m.join(n.desc(0, 5000), 1, kT0));
  REQUIRE(n.m.join(n.desc(1, 5001), 2, kT0));  // same host, another port: fine
  auto clash = n.m.join(n.desc(2, 5000), 3, kT0);
  REQUIRE(!clash);
  CHECK(clash.error().find("endpoint 127.0.0.1:5000 is already used by running relay") != std::string::npos);
  CHECK(n.m.counters().joins_refused == 1);
  // Once the holder is gone, the endpoint is free (a relay that came back with a new key).
  n.m.disconnect(n.keys[0].public_key(), 1, kT0 + 1);
  CHECK(n.m.join(n.desc(2, 5000), 3, kT0 + 2));
}

TEST_CASE("membership: the table is bounded; silent records make room, running ones do not") {
  crypto::DeterministicRng rng(41);
  Membership m(Membership::Limits{kInterval, 2, 3600 * 1000});
  auto a = crypto::IdentityKey::generate(rng), b = crypto::IdentityKey::generate(rng),
       c = crypto::IdentityKey::generate(rng);
  REQUIRE(m.join(testing::make_descriptor(a, 5000, kT0 / 1000), 1, kT0));
  REQUIRE(m.join(testing::make_descriptor(b, 5001, kT0 / 1000), 2, kT0));
  auto full = m.join(testing::make_descriptor(c, 5002, kT0 / 1000), 3, kT0);
  REQUIRE(!full);
  CHECK(full.error().find("full") != std::string::npos);
  m.disconnect(a.public_key(), 1, kT0);
  REQUIRE(m.join(testing::make_descriptor(c, 5002, kT0 / 1000), 3, kT0));
  CHECK(m.find(a.public_key()) == nullptr);
  // Long-gone records are forgotten by expire.
  m.disconnect(b.public_key(), 2, kT0);
  m.expire(kT0 + 3600 * 1000 + 1);
  CHECK(m.find(b.public_key()) == nullptr);
}

TEST_CASE("membership: consensus flags") {
  Net n(10);
  // A non-exit, a loopback-only exit, a slow relay.
  auto non_exit = n.desc(0, 5000);
  non_exit.exit_policy = ExitPolicy::reject_all();
  auto lo_only = n.desc(1, 5001);
  lo_only.exit_policy = *ExitPolicy::parse("accept 127.0.0.0/8:*, reject *:*");
  auto slow = n.desc(2, 5002, 1000);
  REQUIRE(n.m.join(non_exit, 1, kT0));
  REQUIRE(n.m.join(lo_only, 2, kT0));
  REQUIRE(n.m.join(slow, 3, kT0));

  auto flags_of = [](const Consensus& c, const crypto::IdentityKey& k) {
    for (const auto& r : c.relays)
      if (r.descriptor.identity == k.public_key()) return r.flags;
    return 0u;
  };
  // Few relays: everyone Fast and Stable.
  auto c = n.m.build_consensus(n.params(), kT0 + 1000);
  CHECK(c.valid_after == kT0 / 1000 + 1);
  CHECK(c.fresh_until == c.valid_after + 60);
  CHECK(c.valid_until == c.valid_after + 3600);
  CHECK(flags_of(c, n.keys[0]) == (kFlagRunning | kFlagValid | kFlagFast | kFlagStable));
  CHECK(flags_of(c, n.keys[1]) == (kFlagRunning | kFlagValid | kFlagFast | kFlagStable));
  CHECK((flags_of(c, n.keys[2]) & kFlagFast) != 0);
  // On a test network, an exit to loopback only is an Exit.
  auto t = n.m.build_consensus(n.params(true), kT0 + 1000);
  CHECK((flags_of(t, n.keys[1]) & kFlagExit) != 0);
  CHECK_FALSE((flags_of(t, n.keys[0]) & kFlagExit) != 0);

  // Many relays: Fast needs bandwidth; Stable needs the median uptime.
  for (int i = 3; i < 10; ++i)
    REQUIRE(n.m.join(n.desc(i, static_cast<std::uint16_t>(5000 + i)), static_cast<std::uint64_t>(10 + i), kT0 + 500000));
  auto many = n.m.build_consensus(n.params(), kT0 + 1000000);
  CHECK(many.relays.size() == 10);
  CHECK_FALSE((flags_of(many, n.keys[2]) & kFlagFast) != 0);
  CHECK((flags_of(many, n.keys[3]) & kFlagFast) != 0);
  CHECK((flags_of(many, n.keys[0]) & kFlagStable) != 0);  // up longer than the median
  CHECK((flags_of(many, n.keys[9]) & kFlagStable) != 0);  // up as long as the median
  CHECK((flags_of(many, n.keys[3]) & kFlagExit) != 0);    // loopback_test_exit accepts *:* too
  // A relay that has just (re)joined is below the median: not Stable.
  REQUIRE(n.m.join(n.desc(9, 5009), 99, kT0 + 999000));
  auto later = n.m.build_consensus(n.params(), kT0 + 1000000);
  CHECK_FALSE((flags_of(later, n.keys[9]) & kFlagStable) != 0);
  CHECK((flags_of(later, n.keys[8]) & kFlagStable) != 0);
}
