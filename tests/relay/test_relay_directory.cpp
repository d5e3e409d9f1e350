// Relays with a real directory (in-process): they join, appear in the consensus, carry a circuit
// built from it, republish a rotated onion key, and rejoin after the directory restarts.
#include <doctest/doctest.h>

#include <algorithm>

#include "common/crypto/hash.hpp"
#include "common/dir/directory_client.hpp"
#include "directory/directory_server.hpp"
#include "tests/relay/relay_test_support.hpp"

using namespace thor;
using namespace thor::relay;
using namespace thor::relay::test;

namespace {

directory::DirectoryServer::Config directory_config(const crypto::IdentityKey& key, std::uint16_t port) {
  directory::DirectoryServer::Config c;
  c.listen = {"127.0.0.1", port};
  c.http = {"127.0.0.1", 0};
  c.identity = key;
  c.heartbeat_interval_ms = 200;
  c.consensus_debounce_ms = 20;
  c.test_network = true;
  return c;
}

// Fetches the consensus once, running the loop until it arrives.
std::optional<dir::Consensus> fetch(uv_loop_t* loop, const HostPort& dir, const crypto::Ed25519Public& key) {
  std::optional<Result<dir::Consensus>> got;
  auto token = dir::fetch_consensus(loop, dir, key, [&](Result<dir::Consensus> r) { got = std::move(r); });
  if (!run_until(loop, [&] { return got.has_value(); }, 10'000) || !*got) return std::nullopt;
  return std::move(**got);
}

// Polls the directory until `pred` holds for its consensus.
std::optional<dir::Consensus> fetch_until(uv_loop_t* loop, const HostPort& dir, const crypto::Ed25519Public& key,
                                          const std::function<bool(const dir::Consensus&)>& pred, std::uint64_t limit_ms = 10'000) {
  const std::uint64_t deadline = uv_hrtime() + limit_ms * 1'000'000;
  while (uv_hrtime() < deadline) {
    auto c = fetch(loop, dir, key);
    if (c && pred(*c)) return c;
    run_for(loop, 50);
  }
  return std::nullopt;
}

const dir::ConsensusRelay* find_relay(const dir::Consensus& c, const crypto::Ed25519Public& id) {
  for (auto& r : c.relays)
    if (r.descriptor.identity == id) return &r;
  return nullptr;
}

}  // namespace

TEST_CASE("relays join the directory, and a circuit built from the consensus carries a stream") {
  TestLoop L;
  auto dir_key = crypto::IdentityKey::generate(crypto::system_rng());
  auto dserver = std::make_unique<directory::DirectoryServer>(L.get(), directory_config(dir_key, 0));
  REQUIRE(dserver->start());
  const HostPort dir_addr{"127.0.0.1", dserver->listen_port()};

  EchoServer echo(L.get());
  int joins = 0;
  LocalRelays relays(L.get(), 3, [&](int i, RelayConfig& c) {
    c.directory = dir_addr;
    c.directory_key = dir_key.public_key();
    c.nickname = "dirrelay" + std::to_string(i);
    c.bandwidth = 1000u * static_cast<unsigned>(i + 1);
  });
  for (int i = 0; i < 3; ++i) relays[i].on_registered([&] { ++joins; });
  REQUIRE(run_until(
      L.get(), [&] { return relays[0].registered() && relays[1].registered() && relays[2].registered(); }, 10'000));

  auto consensus = fetch_until(L.get(), dir_addr, dir_key.public_key(),
                               [](const dir::Consensus& c) { return c.relays.size() == 3; });
  REQUIRE(consensus);
  std::vector<dir::ConsensusRelay> path;
  for (int i = 0; i < 3; ++i) {
    const auto* r = find_relay(*consensus, relays[i].identity());
    REQUIRE(r != nullptr);
    CHECK(r->descriptor.nickname == "dirrelay" + std::to_string(i));
    CHECK(r->descriptor.address == relays[i].advertised_address());
    CHECK(r->descriptor.onion_key == relays[i].descriptor().onion_key);
    CHECK(r->descriptor.exit_policy.to_string() == ExitPolicy::loopback_test_exit().to_string());
    CHECK(r->descriptor.bandwidth == 1000u * static_cast<unsigned>(i + 1));
    path.push_back(*r);
  }

  circuit::CircuitClient client(L.get());
  auto probe = std::make_shared<CircuitProbe>();
  circuit::CircuitCallbacks cb;
  cb.on_built = [probe] { probe->built = true; };
  cb.on_closed = [probe](const circuit::CircuitClosed& c) { probe->closed = c; };
  probe->ref = client.build_circuit(path, std::move(cb));
  REQUIRE(run_until(L.get(), [&] { return probe->done(); }));
  REQUIRE(probe->built);
  auto s = std::make_shared<StreamProbe>();
  s->outgoing = pattern(77, 0, 300'000);
  open_stream(client, probe->ref, {"127.0.0.1", echo.port()}, s);
  REQUIRE(run_until(L.get(), [&] { return s->received.size() >= s->outgoing.size(); }));
  CHECK(crypto::sha256(s->received) == crypto::sha256(s->outgoing));

  SUBCASE("a rotated onion key is republished") {
    auto old_key = relays[0].descriptor().onion_key;
    relays[0].rotate_onion_key();
    auto fresh = relays[0].descriptor().onion_key;
    REQUIRE(!(fresh == old_key));
    auto c = fetch_until(L.get(), dir_addr, dir_key.public_key(), [&](const dir::Consensus& c) {
      auto* r = find_relay(c, relays[0].identity());
      return r && r->descriptor.onion_key == fresh;
    });
    CHECK(c.has_value());
    // The circuit built with the old key is unaffected.
    s->received.clear();
    s->outgoing = pattern(78, 0, 10'000);
    s->sent = 0;
    pump_stream(client, *s);
    REQUIRE(run_until(L.get(), [&] { return s->received.size() >= s->outgoing.size(); }));
    CHECK(s->received == s->outgoing);
  }

  SUBCASE("relays rejoin by themselves after the directory restarts") {
    const int joins_before = joins;
    dserver->stop();
    dserver.reset();
    run_for(L.get(), 300);
    dserver = std::make_unique<directory::DirectoryServer>(L.get(), directory_config(dir_key, dir_addr.port));
    REQUIRE(dserver->start());
    REQUIRE(run_until(L.get(), [&] { return joins >= joins_before + 3; }, 15'000));
    auto c = fetch_until(L.get(), dir_addr, dir_key.public_key(),
                         [](const dir::Consensus& c) { return c.relays.size() == 3; });
    CHECK(c.has_value());
  }
  client.destroy_circuit(probe->ref);
  run_for(L.get(), 50);
  relays.stop(0);
  relays.stop(1);
  relays.stop(2);
  dserver.reset();
}
