// The directory daemon in-process on a libuv loop, with relay stand-ins (RelayRegistration, each with
// its own key, all on 127.0.0.1 with different ports) and raw clients for the bad cases.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "common/crypto/encoding.hpp"
#include "common/dir/directory_client.hpp"
#include "common/dir/dir_protocol.hpp"
#include "directory/directory_server.hpp"
#include "tests/dir/dir_test_support.hpp"
#include "tests/dir/loop_support.hpp"

using namespace thor;
using namespace thor::dir;
using namespace thor::dir::testing;
using nlohmann::json;

namespace {

constexpr std::uint64_t kInterval = 150;

directory::DirectoryServer::Config config_for(const crypto::IdentityKey& key, std::uint16_t listen_port = 0) {
  directory::DirectoryServer::Config c;
  c.listen = HostPort{"127.0.0.1", listen_port};
  c.http = HostPort{"127.0.0.1", 0};
  c.identity = key;
  c.network = "testnet";
  c.heartbeat_interval_ms = kInterval;
  c.http_timeout_ms = 300;
  c.handshake_timeout_ms = 1000;
  return c;
}

// A relay stand-in: its own key and port, registered through the real client.
struct StandIn {
  crypto::IdentityKey key;
  std::uint16_t port;
  std::unique_ptr<RelayRegistration> reg;
  int joins = 0;

  StandIn(uv_loop_t* loop, std::uint64_t seed, std::uint16_t port, std::uint16_t directory_port,
          const crypto::Ed25519Public& directory_key)
      : port(port) {
    crypto::DeterministicRng rng(seed);
    key = crypto::IdentityKey::generate(rng);
    RelayRegistration::Options o;
    o.directory = HostPort{"127.0.0.1", directory_port};
    o.directory_key = directory_key;
    o.identity = &key;
    o.make_descriptor = [this] { return make_descriptor(key, this->port, unix_now(), "standin" + std::to_string(this->port)); };
    o.min_retry_ms = 30;
    o.max_retry_ms = 300;
    reg = std::make_unique<RelayRegistration>(loop, std::move(o));
    reg->on_joined([this] { ++joins; });
    reg->start();
  }
};

std::optional<Consensus> fetch(uv_loop_t* loop, std::uint16_t port, const crypto::Ed25519Public& key,
                               std::string* error = nullptr) {
  std::optional<Result<Consensus>> got;
  auto h = fetch_consensus(loop, HostPort{"127.0.0.1", port}, key, [&](Result<Consensus> r) { got = std::move(r); });
  run_until(loop, [&] { return got.has_value(); }, 5000);
  if (!got) {
    if (error) *error = "no answer";
    return std::nullopt;
  }
  if (!*got) {
    if (error) *error = got->error();
    return std::nullopt;
  }
  return std::move(got->value());
}

bool lists(const Consensus& c, const crypto::Ed25519Public& id) {
  for (const auto& r : c.relays)
    if (r.descriptor.identity == id) return true;
  return false;
}

bool in_consensus(const directory::DirectoryServer& s, const crypto::Ed25519Public& id) { return lists(s.consensus(), id); }

// Joins by hand with the sans-IO builders, then goes silent (no heartbeats, connection kept open).
struct SilentRelay {
  RawClient client;
  crypto::IdentityKey key;
  Nonce nonce{};
  SilentRelay(uv_loop_t* loop, std::uint64_t seed) : client(loop) {
    crypto::DeterministicRng rng(seed);
    key = crypto::IdentityKey::generate(rng);
    rng.fill(nonce);
  }
  bool join(uv_loop_t* loop, std::uint16_t dir_port, const crypto::IdentityKey& dir, std::uint16_t port,
            bool break_signature = false) {
    client.connect(dir_port);
    if (!run_until(loop, [&] { return client.connected; }, 2000)) return false;
    client.send(encode_frame(make_hello(nonce)));
    if (!run_until(loop, [&] { return !client.frames().empty(); }, 2000)) return false;
    auto ch = parse_challenge(client.frames()[0]);
    if (!ch || !check_challenge(*ch, nonce, dir.public_key())) return false;
    json join = build_join(make_descriptor(key, port, unix_now(), "silent"), key, nonce, ch->nonce, dir.public_key());
    if (break_signature) join["descriptor"]["document"]["nickname"] = "forged";
    client.send(encode_frame(join));
    return run_until(loop, [&] { return client.frames().size() >= 2; }, 2000);
  }
};

}  // namespace

TEST_CASE("directory in-process: stand-ins join, the consensus and /relays list them, silence and stops remove them") {
  TestLoop L;
  crypto::DeterministicRng rng(100);
  auto dir_key = crypto::IdentityKey::generate(rng);
  directory::DirectoryServer server(L.get(), config_for(dir_key));
  REQUIRE(server.start());
  const auto dport = server.listen_port();
  REQUIRE(dport != 0);
  REQUIRE(server.http_port() != 0);

  std::vector<std::unique_ptr<StandIn>> relays;
  for (int i = 0; i < 4; ++i)
    relays.push_back(std::make_unique<StandIn>(L.get(), 200 + i, static_cast<std::uint16_t>(7001 + i), dport,
                                               dir_key.public_key()));
  REQUIRE(run_until(L.get(), [&] {
    for (auto& r : relays)
      if (!r->reg->joined()) return false;
    return server.consensus().relays.size() == 4;
  }, 5000));

  SUBCASE("fetch_consensus verifies and sees them all, with flags") {
    std::string err;
    auto c = fetch(L.get(), dport, dir_key.public_key(), &err);
    REQUIRE_MESSAGE(c, err);
    CHECK(c->network == "testnet");
    CHECK(c->relays.size() == 4);
    for (auto& r : relays) CHECK(lists(*c, r->key.public_key()));
    for (const auto& r : c->relays) {
      CHECK(r.has(kFlagRunning));
      CHECK(r.has(kFlagValid));
      CHECK(r.has(kFlagExit));
      CHECK(r.has(kFlagFast));
      CHECK(r.descriptor.address.host == "127.0.0.1");
    }
    // Pinned to another key: refused with a clear error.
    auto other = crypto::IdentityKey::generate(rng);
    auto wrong = fetch(L.get(), dport, other.public_key(), &err);
    CHECK(!wrong);
    CHECK(err.find("does not verify with the pinned directory key") != std::string::npos);
    CHECK(server.counters().consensus_fetches >= 2);
  }

  SUBCASE("HTTP endpoints return valid JSON with the expected fields") {
    auto status = http_get(L.get(), server.http_port(), "/status");
    REQUIRE(status.ok);
    CHECK(status.status == 200);
    CHECK(status.head.find("Content-Type: application/json") != std::string::npos);
    auto s = json::parse(status.body);
    CHECK(s["relays_running"] == 4);
    CHECK(s["relays_total"] == 4);
    CHECK(s["network"] == "testnet");
    CHECK(s["directory_fingerprint"] == crypto::fingerprint(dir_key.public_key()));
    CHECK(s["consensus"]["valid"] == true);
    CHECK(s["consensus"]["relays"] == 4);
    CHECK(s["uptime_seconds"].is_number_integer());

    auto rel = http_get(L.get(), server.http_port(), "/relays");
    REQUIRE(rel.ok);
    auto r = json::parse(rel.body);
    REQUIRE(r["relays"].size() == 4);
    for (const auto& e : r["relays"]) {
      for (const char* f : {"fingerprint", "nickname", "address", "flags", "running", "first_seen", "last_heartbeat",
                            "bandwidth", "exit_policy_summary", "version"})
        CHECK_MESSAGE(e.contains(f), f);
      CHECK(e["running"] == true);
      CHECK(e["address"].get<std::string>().rfind("127.0.0.1:700", 0) == 0);
      CHECK(e["flags"].size() >= 3);
      CHECK(e["exit_policy_summary"]["accept"][0] == "1-65535");
      CHECK(e["fingerprint"].get<std::string>().size() == 40);
    }

    auto cons = http_get(L.get(), server.http_port(), "/consensus");
    REQUIRE(cons.ok);
    auto verified = verify_consensus(json::parse(cons.body), dir_key.public_key(), unix_now());
    REQUIRE_MESSAGE(verified, why(verified));
    CHECK(verified->relays.size() == 4);

    // Let a few heartbeats arrive before scraping.
    run_for(L.get(), 2 * kInterval);
    auto metrics = http_get(L.get(), server.http_port(), "/metrics");
    REQUIRE(metrics.ok);
    CHECK(metrics.head.find("text/plain; version=0.0.4") != std::string::npos);
    CHECK(metrics.body.find("thor_directory_relays_running 4\n") != std::string::npos);
    CHECK(metrics.body.find("thor_directory_joins_total 4\n") != std::string::npos);
    CHECK(metrics.body.find("thor_directory_heartbeats_missed_total 0\n") != std::string::npos);
    CHECK(metrics.body.find("thor_directory_consensus_fetches_total") != std::string::npos);
    CHECK(metrics.body.find("thor_directory_http_requests_total{code=\"200\"} 4\n") != std::string::npos);
    CHECK(server.members().counters().heartbeats >= 4);

    auto head = http_exchange(L.get(), server.http_port(), "HEAD /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    REQUIRE(head.ok);
    CHECK(head.status == 200);
    CHECK(head.body.empty());

    // Keep-alive: two requests on one connection, answered in order.
    RawClient ka(L.get());
    ka.connect(server.http_port(),
               "GET /status HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    REQUIRE(run_until(L.get(), [&] { return ka.closed; }, 3000));
    CHECK(ka.received.find("HTTP/1.1 200 OK") == 0);
    CHECK(ka.received.find("HTTP/1.1 404 Not Found") != std::string::npos);
  }

  SUBCASE("a relay that stops (connection dropped) is out at once; one gone silent within three intervals") {
    relays[0]->reg->stop();
    auto gone = relays[0]->key.public_key();
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(run_until(L.get(), [&] { return !in_consensus(server, gone); }, 3000));
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    CHECK(ms <= static_cast<long>(kInterval));
    CHECK_FALSE(server.members().find(gone)->running);

    SilentRelay silent(L.get(), 300);
    REQUIRE(silent.join(L.get(), server.listen_port(), dir_key, 7100));
    REQUIRE(message_type(silent.client.frames()[1]) == "welcome");
    auto joined_at = std::chrono::steady_clock::now();
    REQUIRE(run_until(L.get(), [&] { return in_consensus(server, silent.key.public_key()); }, 2000));
    REQUIRE(run_until(L.get(), [&] { return !in_consensus(server, silent.key.public_key()); }, 5000));
    auto silent_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - joined_at).count();
    CHECK(silent_ms <= static_cast<long>(3 * kInterval));
    CHECK(silent_ms >= static_cast<long>(2 * kInterval));  // one late heartbeat is forgiven
    CHECK(server.members().counters().heartbeats_missed == 1);
    // The directory closed the silent relay's connection.
    CHECK(run_until(L.get(), [&] { return silent.client.closed; }, 1000));

    // /relays shows both as not running; a fetched consensus no longer lists them.
    auto rel = json::parse(http_get(L.get(), server.http_port(), "/relays").body);
    int not_running = 0;
    for (const auto& e : rel["relays"]) not_running += e["running"] == false ? 1 : 0;
    CHECK(not_running == 2);
    auto c = fetch(L.get(), server.listen_port(), dir_key.public_key());
    REQUIRE(c);
    CHECK(c->relays.size() == 3);
    CHECK_FALSE(lists(*c, gone));

    // The stopped relay comes back and rejoins.
    relays[0]->reg->start();
    CHECK(run_until(L.get(), [&] { return in_consensus(server, gone); }, 3000));
  }

  SUBCASE("the directory restarts on the same port: relays rejoin by themselves") {
    server.stop();
    run_until(L.get(), [&] {
      for (auto& r : relays)
        if (r->reg->joined()) return false;
      return true;
    }, 2000);
    for (auto& r : relays) CHECK_FALSE(r->reg->joined());
    run_for(L.get(), 200);  // they retry against a closed port meanwhile

    auto cfg = config_for(dir_key, dport);
    directory::DirectoryServer again(L.get(), cfg);
    REQUIRE(again.start());
    CHECK(again.listen_port() == dport);
    REQUIRE(run_until(L.get(), [&] { return again.consensus().relays.size() == 4; }, 5000));
    for (auto& r : relays) {
      CHECK(r->reg->joined());
      CHECK(r->joins == 2);
    }
    auto c = fetch(L.get(), dport, dir_key.public_key());
    REQUIRE(c);
    CHECK(c->relays.size() == 4);
    again.stop();
  }

  relays.clear();
  server.stop();
}

TEST_CASE("directory in-process: bad joins and bad frames get an error reply; the daemon keeps serving") {
  TestLoop L;
  crypto::DeterministicRng rng(101);
  auto dir_key = crypto::IdentityKey::generate(rng);
  directory::DirectoryServer server(L.get(), config_for(dir_key));
  REQUIRE(server.start());

  SilentRelay forger(L.get(), 400);
  REQUIRE(forger.join(L.get(), server.listen_port(), dir_key, 7200, /*break_signature=*/true));
  auto frames = forger.client.frames();
  REQUIRE(frames.size() == 2);
  auto reason = parse_error(frames[1]);
  REQUIRE(reason);
  CHECK(reason->find("join refused: descriptor signature does not verify") != std::string::npos);
  CHECK(run_until(L.get(), [&] { return forger.client.closed; }, 1000));
  CHECK(server.members().counters().joins_refused == 1);
  CHECK(server.members().running_count() == 0);

  // An oversized frame: error, then closed.
  RawClient big(L.get());
  Bytes header;
  Writer(header).u32(static_cast<std::uint32_t>(kMaxFrameBytes + 1));
  big.connect(server.listen_port(), std::string(as_chars(header)));
  REQUIRE(run_until(L.get(), [&] { return big.closed; }, 2000));
  REQUIRE(big.frames().size() == 1);
  CHECK(parse_error(big.frames()[0])->find("larger than the limit") != std::string::npos);

  // Garbage, and messages out of order.
  RawClient junk(L.get());
  junk.connect(server.listen_port(), std::string("\x00\x00\x00\x05hello", 9));
  REQUIRE(run_until(L.get(), [&] { return junk.closed; }, 2000));
  CHECK(parse_error(junk.frames().at(0))->find("not valid JSON") != std::string::npos);
  RawClient early(L.get());
  early.connect(server.listen_port());
  REQUIRE(run_until(L.get(), [&] { return early.connected; }, 2000));
  early.send(encode_frame(make_heartbeat(1)));
  REQUIRE(run_until(L.get(), [&] { return early.closed; }, 2000));
  CHECK(parse_error(early.frames().at(0))->find("heartbeat before a successful join") != std::string::npos);

  // An idle connection that never speaks is closed after the handshake timeout.
  RawClient idle(L.get());
  idle.connect(server.listen_port());
  CHECK(run_until(L.get(), [&] { return idle.closed; }, 3000));

  // Still serving: a real registration joins, a fetch works.
  StandIn ok(L.get(), 401, 7201, server.listen_port(), dir_key.public_key());
  REQUIRE(run_until(L.get(), [&] { return in_consensus(server, ok.key.public_key()); }, 3000));
  CHECK(fetch(L.get(), server.listen_port(), dir_key.public_key()));
  CHECK(server.counters().protocol_errors >= 4);

  // A second relay claiming the same endpoint is refused while the first runs.
  SilentRelay squatter(L.get(), 402);
  REQUIRE(squatter.join(L.get(), server.listen_port(), dir_key, 7201));
  auto refused = parse_error(squatter.client.frames().at(1));
  REQUIRE(refused);
  CHECK(refused->find("endpoint 127.0.0.1:7201 is already used") != std::string::npos);
  CHECK(ok.reg->joined());
  ok.reg->stop();
  server.stop();
}

TEST_CASE("directory in-process: bad HTTP gets 400/404/405/408/431 and the server keeps serving") {
  TestLoop L;
  crypto::DeterministicRng rng(102);
  auto dir_key = crypto::IdentityKey::generate(rng);
  directory::DirectoryServer server(L.get(), config_for(dir_key));
  REQUIRE(server.start());
  auto port = server.http_port();

  auto garbage = http_exchange(L.get(), port, "GARBAGE\r\n\r\n");
  REQUIRE(garbage.ok);
  CHECK(garbage.status == 400);
  CHECK(json::parse(garbage.body)["error"].get<std::string>().find("malformed") != std::string::npos);

  auto missing = http_get(L.get(), port, "/nope");
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body)["status"] == 404);

  auto post = http_exchange(L.get(), port, "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  CHECK(post.status == 405);
  CHECK(post.head.find("Allow: GET, HEAD") != std::string::npos);

  auto big = http_exchange(L.get(), port, "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  CHECK(big.status == 431);

  // A slow client: half a request, then nothing. Cut off at the deadline with 408.
  auto t0 = std::chrono::steady_clock::now();
  auto slow = http_exchange(L.get(), port, "GET /status HTTP/1.1\r\nHo");
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(slow.status == 408);
  CHECK(ms >= 250);
  CHECK(ms < 2000);

  // An idle client that sends nothing is closed quietly.
  RawClient idle(L.get());
  idle.connect(port);
  CHECK(run_until(L.get(), [&] { return idle.closed; }, 2000));
  CHECK(idle.received.empty());

  // Still serving, and nothing left open.
  auto ok = http_get(L.get(), port, "/status");
  CHECK(ok.status == 200);
  CHECK(json::parse(ok.body)["relays_running"] == 0);
  CHECK(run_until(L.get(), [&] { return server.open_http_connections() == 0; }, 1000));
  const auto& codes = server.counters().http_responses;
  CHECK(codes.at(400) == 1);
  CHECK(codes.at(404) == 1);
  CHECK(codes.at(405) == 1);
  CHECK(codes.at(408) == 1);
  CHECK(codes.at(431) == 1);
  server.stop();
}

TEST_CASE("directory in-process: a port in use is a clear error") {
  TestLoop L;
  crypto::DeterministicRng rng(103);
  auto dir_key = crypto::IdentityKey::generate(rng);
  directory::DirectoryServer first(L.get(), config_for(dir_key));
  REQUIRE(first.start());
  directory::DirectoryServer second(L.get(), config_for(dir_key, first.listen_port()));
  auto st = second.start();
  REQUIRE(!st);
  CHECK(st.error().find("address already in use") != std::string::npos);
  CHECK(st.error().find(std::to_string(first.listen_port())) != std::string::npos);
  // The HTTP port in use too.
  auto cfg = config_for(dir_key);
  cfg.http.port = first.http_port();
  directory::DirectoryServer third(L.get(), cfg);
  auto st3 = third.start();
  REQUIRE(!st3);
  CHECK(st3.error().find("address already in use") != std::string::npos);
  first.stop();
}

TEST_CASE("directory clients: a closed port is a clear error; callbacks may destroy their owners") {
  TestLoop L;
  crypto::DeterministicRng rng(104);
  auto dir_key = crypto::IdentityKey::generate(rng);
  std::uint16_t free_port = 0;
  {
    uv::TcpListener probe(L.get());
    REQUIRE(probe.listen(HostPort{"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {}));
    free_port = probe.bound_port();
  }
  run_for(L.get(), 10);
  std::string err;
  CHECK(!fetch(L.get(), free_port, dir_key.public_key(), &err));
  CHECK(err.find("cannot reach directory 127.0.0.1:" + std::to_string(free_port)) != std::string::npos);

  directory::DirectoryServer server(L.get(), config_for(dir_key));
  REQUIRE(server.start());
  // The fetch handle dropped inside its own callback.
  std::shared_ptr<void> handle;
  bool done = false;
  handle = fetch_consensus(L.get(), HostPort{"127.0.0.1", server.listen_port()}, dir_key.public_key(),
                           [&](Result<Consensus> r) {
                             done = r.ok();
                             handle.reset();
                           });
  REQUIRE(run_until(L.get(), [&] { return done; }, 3000));
  CHECK(!handle);

  // A registration destroyed inside its on_joined callback.
  auto stand_in = std::make_unique<StandIn>(L.get(), 500, 7300, server.listen_port(), dir_key.public_key());
  bool joined = false;
  stand_in->reg->on_joined([&] {
    joined = true;
    stand_in.reset();
  });
  REQUIRE(run_until(L.get(), [&] { return joined; }, 3000));
  CHECK(!stand_in);
  // Its connection went with it: the directory sees the relay leave.
  CHECK(run_until(L.get(), [&] { return server.members().running_count() == 0 && server.members().counters().joins == 1; },
                  3000));
  server.stop();
}
