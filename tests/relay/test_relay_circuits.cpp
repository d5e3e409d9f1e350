// Circuits through in-process relays over loopback, with the client circuit engine as the client:
// data both ways, many streams, teardown on every path, exit policy, END reasons, limits.
#include <doctest/doctest.h>

#include <algorithm>

#include "common/crypto/hash.hpp"
#include "tests/relay/relay_test_support.hpp"

using namespace thor;
using namespace thor::relay;
using namespace thor::relay::test;
using circuit::CircuitClient;

namespace {
HostPort local(std::uint16_t port) { return {"127.0.0.1", port}; }
}  // namespace

TEST_CASE("three relays carry megabytes to an echo server and back, intact") {
  TestLoop L;
  EchoServer echo(L.get());
  CircuitFixture net(L.get(), 3);

  auto s = std::make_shared<StreamProbe>();
  s->outgoing = pattern(7, 0, 4 * 1024 * 1024 + 123);
  open_stream(net.client, net.circ->ref, local(echo.port()), s);
  REQUIRE(run_until(L.get(), [&] { return s->received.size() >= s->outgoing.size() || s->ended; }, 60'000));
  CHECK(s->connected);
  CHECK(s->address == "127.0.0.1");
  REQUIRE(s->received.size() == s->outgoing.size());
  CHECK(crypto::sha256(s->received) == crypto::sha256(s->outgoing));

  // Only the exit touched the server; the other two only forwarded.
  CHECK(net.relays[2].stats().exit_bytes_written == s->outgoing.size());
  CHECK(net.relays[2].stats().exit_bytes_read == s->outgoing.size());
  CHECK(net.relays[0].stats().exit_bytes_written == 0);
  CHECK(net.relays[1].stats().exit_bytes_written == 0);
  CHECK(net.relays[0].stats().cells_received > 8000);

  // Closing the stream frees it at the exit and closes the server's connection.
  net.client.close_stream(s->ref);
  CHECK(run_until(L.get(), [&] { return net.relays.streams() == 0 && echo.connections_open() == 0; }));
  // Destroying the circuit frees it on every relay.
  net.client.destroy_circuit(net.circ->ref);
  CHECK(run_until(L.get(), [&] { return net.relays.circuits() == 0; }));
}

TEST_CASE("data sent right before END reaches the server, then the connection closes") {
  // The DATA cells and the END arrive at the exit in one read: the exit writes a stream's DATA once
  // per read, and END must not overtake it.
  TestLoop L;
  SinkServer sink(L.get(), 11);
  CircuitFixture net(L.get(), 3);
  auto s = open_stream(net.client, net.circ->ref, local(sink.port()));
  REQUIRE(run_until(L.get(), [&] { return s->connected || s->ended; }));
  REQUIRE(s->connected);
  const Bytes data = pattern(11, 0, 200 * kRelayMaxData + 17);
  net.client.write(s->ref, ByteView(data));
  net.client.close_stream(s->ref);
  REQUIRE(run_until(L.get(), [&] { return sink.peer_closed(); }));
  CHECK(sink.bytes_received() == data.size());
  CHECK_FALSE(sink.corrupted());
  CHECK(net.relays[2].stats().exit_bytes_written == data.size());
}

TEST_CASE("an HTTP request by hostname through three relays") {
  TestLoop L;
  HttpServer http(L.get());
  CircuitFixture net(L.get(), 3);

  const std::size_t n = 1'500'000;
  auto s = std::make_shared<StreamProbe>();
  std::string req = "GET /bytes/" + std::to_string(n) + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  s->outgoing.assign(req.begin(), req.end());
  // "localhost" is resolved at the exit, and the policy is checked against the address it got.
  open_stream(net.client, net.circ->ref, {"localhost", http.port()}, s);
  REQUIRE(run_until(L.get(), [&] { return s->ended.has_value(); }, 30'000));
  CHECK(s->connected);
  CHECK(s->ended->reason == EndReason::done);
  std::string text(reinterpret_cast<const char*>(s->received.data()), s->received.size());
  auto body_at = text.find("\r\n\r\n");
  REQUIRE(body_at != std::string::npos);
  CHECK(text.rfind("HTTP/1.0 200 OK", 0) == 0);
  Bytes body(s->received.begin() + static_cast<std::ptrdiff_t>(body_at + 4), s->received.end());
  REQUIRE(body.size() == n);
  CHECK(crypto::sha256(body) == crypto::sha256(pattern(n, 0, n)));
  CHECK(http.requests() == 1);
  CHECK(run_until(L.get(), [&] { return net.relays.streams() == 0; }));
}

TEST_CASE("many streams on one circuit, all at once") {
  TestLoop L;
  EchoServer echo(L.get());
  CircuitFixture net(L.get(), 3);

  std::vector<std::shared_ptr<StreamProbe>> streams;
  for (int i = 0; i < 40; ++i) {
    auto s = std::make_shared<StreamProbe>();
    s->outgoing = pattern(100 + static_cast<std::uint64_t>(i), 0, 100'000 + static_cast<std::size_t>(i) * 997);
    streams.push_back(open_stream(net.client, net.circ->ref, local(echo.port()), s));
  }
  REQUIRE(run_until(L.get(), [&] {
    for (auto& s : streams)
      if (s->received.size() < s->outgoing.size() && !s->ended) return false;
    return true;
  }, 60'000));
  for (auto& s : streams) {
    CHECK(!s->ended);
    CHECK(s->received == s->outgoing);
  }
  CHECK(net.relays[2].stats().streams == 40);
  CHECK(echo.connections_accepted() == 40);
  for (auto& s : streams) net.client.close_stream(s->ref);
  CHECK(run_until(L.get(), [&] { return net.relays.streams() == 0 && echo.connections_open() == 0; }));
}

TEST_CASE("DESTROY in the middle of a transfer frees the circuit on every relay") {
  TestLoop L;
  EchoServer echo(L.get());
  CircuitFixture net(L.get(), 3);
  auto s = std::make_shared<StreamProbe>();
  s->outgoing_seed = 9;
  s->outgoing_total = 50ull * 1024 * 1024;  // far more than will get through before the DESTROY
  s->keep_data = false;
  open_stream(net.client, net.circ->ref, local(echo.port()), s);
  REQUIRE(run_until(L.get(), [&] { return s->received_count > 1'000'000; }, 30'000));
  CHECK(net.relays.circuits() == 3);
  CHECK(net.relays.streams() == 1);

  net.client.destroy_circuit(net.circ->ref);
  CHECK(run_until(L.get(), [&] { return net.relays.circuits() == 0; }));
  CHECK(net.relays.streams() == 0);
  CHECK(run_until(L.get(), [&] { return echo.connections_open() == 0; }));
  // The relays keep working: a new circuit over the same links carries data.
  auto c2 = built_circuit(L.get(), net.client, net.relays.path({0, 1, 2}));
  auto s2 = std::make_shared<StreamProbe>();
  s2->outgoing = pattern(10, 0, 5000);
  open_stream(net.client, c2->ref, local(echo.port()), s2);
  REQUIRE(run_until(L.get(), [&] { return s2->received.size() >= 5000; }));
  CHECK(s2->received == s2->outgoing);
}

TEST_CASE("a relay that dies mid-stream: the circuit is torn down and the client is told") {
  TestLoop L;
  EchoServer echo(L.get());
  CircuitFixture net(L.get(), 3);
  auto s = std::make_shared<StreamProbe>();
  s->outgoing_seed = 11;
  s->outgoing_total = 50ull * 1024 * 1024;
  s->keep_data = false;
  open_stream(net.client, net.circ->ref, local(echo.port()), s);
  REQUIRE(run_until(L.get(), [&] { return s->received_count > 500'000; }, 30'000));

  net.relays.stop(1);  // the middle relay goes away
  REQUIRE(run_until(L.get(), [&] { return net.circ->closed.has_value(); }));
  CHECK(net.circ->closed->reason == DestroyReason::channel_closed);
  CHECK(s->ended.has_value());
  CHECK(s->ended->circuit_closed);
  // The guard and the exit freed their halves; the exit closed the server connection.
  CHECK(run_until(L.get(), [&] { return net.relays[0].stats().circuits == 0 && net.relays[2].stats().circuits == 0; }));
  CHECK(net.relays[2].stats().streams == 0);
  CHECK(run_until(L.get(), [&] { return echo.connections_open() == 0; }));
}

TEST_CASE("the exit policy: a refused port ends with exit_policy, and names are checked after resolving") {
  TestLoop L;
  EchoServer echo(L.get());
  CircuitFixture net(L.get(), 3, [&](int i, RelayConfig& c) {
    if (i == 2) c.exit_policy = ExitPolicy::parse("accept 127.0.0.1:" + std::to_string(echo.port()) + ", reject *:*").value();
  });

  const auto closed_port = static_cast<std::uint16_t>(echo.port() == 1 ? 2 : echo.port() - 1);
  auto refused = open_stream(net.client, net.circ->ref, local(closed_port));
  auto allowed = open_stream(net.client, net.circ->ref, local(echo.port()));
  // A name: only its addresses that the policy accepts are tried (127.0.0.1, not ::1).
  auto by_name = open_stream(net.client, net.circ->ref, {"localhost", echo.port()});
  auto refused_name =
      open_stream(net.client, net.circ->ref, {"localhost", static_cast<std::uint16_t>(echo.port() ^ 1)});
  REQUIRE(run_until(L.get(), [&] {
    return refused->ended && allowed->connected && by_name->connected && refused_name->ended;
  }));
  CHECK(refused->ended->reason == EndReason::exit_policy);
  CHECK(refused_name->ended->reason == EndReason::exit_policy);
  CHECK(!refused->ended->circuit_closed);
  CHECK(by_name->address == "127.0.0.1");
  CHECK(echo.connections_accepted() == 2);
  CHECK(net.relays[2].stats().exit_policy_refusals == 2);
  CHECK(net.client.circuit_open(net.circ->ref));
}

TEST_CASE("a hostname that resolves to loopback is refused when the policy rejects private addresses") {
  TestLoop L;
  EchoServer echo(L.get());
  CircuitFixture net(L.get(), 3, [](int i, RelayConfig& c) {
    if (i == 2) c.exit_policy = ExitPolicy::default_exit();  // reject private:*, accept *:*
  });
  auto by_name = open_stream(net.client, net.circ->ref, {"localhost", echo.port()});
  auto by_ip = open_stream(net.client, net.circ->ref, local(echo.port()));
  REQUIRE(run_until(L.get(), [&] { return by_name->ended && by_ip->ended; }));
  CHECK(by_name->ended->reason == EndReason::exit_policy);
  CHECK(by_ip->ended->reason == EndReason::exit_policy);
  CHECK(echo.connections_accepted() == 0);
}

TEST_CASE("END reasons: connection refused, and done when the server closes") {
  TestLoop L;
  HttpServer http(L.get());
  CircuitFixture net(L.get(), 1);
  // A port nobody listens on: bind one, note it, close it.
  std::uint16_t dead_port;
  {
    uv::TcpListener l(L.get());
    REQUIRE(l.listen(local(0), [](std::unique_ptr<uv::TcpConnection>) {}));
    dead_port = l.bound_port();
  }
  run_for(L.get(), 50);
  auto refused = open_stream(net.client, net.circ->ref, local(dead_port));
  REQUIRE(run_until(L.get(), [&] { return refused->ended.has_value(); }));
  CHECK(refused->ended->reason == EndReason::connect_refused);

  auto s = std::make_shared<StreamProbe>();
  std::string req = "GET /bytes/10 HTTP/1.0\r\n\r\n";
  s->outgoing.assign(req.begin(), req.end());
  open_stream(net.client, net.circ->ref, local(http.port()), s);
  REQUIRE(run_until(L.get(), [&] { return s->ended.has_value(); }));
  CHECK(s->ended->reason == EndReason::done);
  CHECK(net.relays.streams() == 0);
}

TEST_CASE("RESOLVE at the exit") {
  TestLoop L;
  CircuitFixture net(L.get(), 2);
  std::optional<circuit::ResolveOutcome> out;
  REQUIRE(net.client.resolve(net.circ->ref, "localhost", [&](const circuit::ResolveOutcome& o) { out = o; }) != 0);
  REQUIRE(run_until(L.get(), [&] { return out.has_value(); }));
  REQUIRE(!out->failed);
  bool has_loopback = false;
  for (auto& a : out->answers) has_loopback |= (a.value == "127.0.0.1" || a.value == "::1");
  CHECK(has_loopback);
  out.reset();
  REQUIRE(net.client.resolve(net.circ->ref, "192.0.2.7", [&](const circuit::ResolveOutcome& o) { out = o; }) != 0);
  REQUIRE(run_until(L.get(), [&] { return out.has_value(); }));
  REQUIRE(out->answers.size() == 1);
  CHECK(out->answers[0].value == "192.0.2.7");
  CHECK(net.relays.streams() == 0);
}

TEST_CASE("a tampered relay cell destroys the circuit and delivers no bytes") {
  TestLoop L;
  EchoServer echo(L.get());
  LocalRelays relays(L.get(), 3);
  RawClient raw(L.get(), relays.path({0, 1, 2}));
  using T = circuit::CircuitEvent::Type;
  REQUIRE(run_until(L.get(), [&] { return raw.has_event(T::built) || raw.has_event(T::closed); }));
  REQUIRE(raw.has_event(T::built));
  StreamId sid = raw.circuit().begin_stream(local(echo.port()));
  raw.pump();
  REQUIRE(run_until(L.get(), [&] { return raw.has_event(T::stream_connected); }));

  // One clean cell goes through and comes back.
  Bytes clean = pattern(3, 0, 400);
  raw.circuit().write(sid, clean);
  raw.pump();
  REQUIRE(run_until(L.get(), [&] { return raw.data_bytes == clean.size(); }));
  CHECK(echo.bytes_received() == clean.size());

  // The next cell has one bit flipped after the client put the three onion layers on.
  bool flipped = false;
  raw.tamper = [&](Cell& c) {
    if (c.command == CellCommand::relay && !flipped) {
      c.payload[300] ^= 0x04;
      flipped = true;
    }
  };
  raw.circuit().write(sid, pattern(4, 0, 400));
  raw.pump();
  REQUIRE(flipped);
  REQUIRE(run_until(L.get(), [&] { return raw.has_event(T::closed); }));
  CHECK(raw.last_event(T::closed)->destroy_reason == DestroyReason::protocol);
  CHECK(run_until(L.get(), [&] { return relays.circuits() == 0; }));
  CHECK(echo.bytes_received() == clean.size());  // not one byte of the tampered cell arrived
  CHECK(raw.data_bytes == clean.size());
  CHECK(relays[2].stats().protocol_errors == 1);
}

TEST_CASE("limits: streams per circuit and circuits per link") {
  TestLoop L;
  EchoServer echo(L.get());
  CircuitFixture net(L.get(), 2, [](int, RelayConfig& c) {
    c.limits.max_streams_per_circuit = 3;
    c.limits.max_circuits_per_link = 2;
  });
  std::vector<std::shared_ptr<StreamProbe>> ss;
  for (int i = 0; i < 4; ++i) ss.push_back(open_stream(net.client, net.circ->ref, local(echo.port())));
  REQUIRE(run_until(L.get(), [&] { return ss[0]->connected && ss[1]->connected && ss[2]->connected && ss[3]->ended; }));
  CHECK(ss[3]->ended->reason == EndReason::resource_limit);

  auto c2 = build_circuit(net.client, net.relays.path({0, 1}));
  auto c3 = build_circuit(net.client, net.relays.path({0, 1}));
  REQUIRE(run_until(L.get(), [&] { return c2->done() && c3->done(); }));
  CHECK(c2->built);
  REQUIRE(c3->closed.has_value());
  CHECK(c3->closed->reason == DestroyReason::resource_limit);
}

TEST_CASE("limits: a link between relays has its own circuit limit, not a proxy link's") {
  TestLoop L;
  SUBCASE("two proxies at their limit of 2 each: the relay-to-relay link carries all 4 circuits") {
    LocalRelays relays(L.get(), 2, [](int, RelayConfig& c) { c.limits.max_circuits_per_link = 2; });
    CircuitClient alice(L.get()), bob(L.get());
    std::vector<std::shared_ptr<CircuitProbe>> cs;
    for (CircuitClient* client : {&alice, &bob})
      for (int i = 0; i < 2; ++i) cs.push_back(build_circuit(*client, relays.path({0, 1})));
    REQUIRE(run_until(L.get(), [&] { return std::all_of(cs.begin(), cs.end(), [](auto& c) { return c->done(); }); }));
    for (auto& c : cs) CHECK(c->built);
    CHECK(relays[1].stats().circuits_created == 4);
  }
  SUBCASE("at max_circuits_per_relay_link, EXTEND is refused with resource_limit") {
    LocalRelays relays(L.get(), 2, [](int, RelayConfig& c) { c.limits.max_circuits_per_relay_link = 2; });
    CircuitClient client(L.get());
    std::vector<std::shared_ptr<CircuitProbe>> cs;
    for (int i = 0; i < 2; ++i) cs.push_back(build_circuit(client, relays.path({0, 1})));
    REQUIRE(run_until(L.get(), [&] { return cs[0]->done() && cs[1]->done(); }));
    CHECK(cs[0]->built);
    CHECK(cs[1]->built);
    auto third = build_circuit(client, relays.path({0, 1}));
    REQUIRE(run_until(L.get(), [&] { return third->done(); }));
    REQUIRE(third->closed.has_value());
    CHECK(third->closed->reason == DestroyReason::resource_limit);
    auto one_hop = build_circuit(client, relays.path({0}));  // the proxy's own link still has room
    REQUIRE(run_until(L.get(), [&] { return one_hop->done(); }));
    CHECK(one_hop->built);
  }
}

TEST_CASE("EXTEND to a relay whose identity is not the one named is refused") {
  TestLoop L;
  LocalRelays relays(L.get(), 3);
  CircuitClient client(L.get());
  auto path = relays.path({0, 1});
  auto impostor = relays.hop(2);
  impostor.address = path[1].address;  // relay 2's keys, relay 1's address
  path[1] = impostor;
  auto c = build_circuit(client, path);
  REQUIRE(run_until(L.get(), [&] { return c->done(); }));
  REQUIRE(c->closed.has_value());
  CHECK((c->closed->reason == DestroyReason::or_identity || c->closed->reason == DestroyReason::connect_failed));
  CHECK(run_until(L.get(), [&] { return relays.circuits() == 0; }));
  CHECK(relays[1].stats().circuits_created == 0);
}

TEST_CASE("onion key rotation: the previous key works for one more period, then not") {
  TestLoop L;
  EchoServer echo(L.get());
  LocalRelays relays(L.get(), 1);
  CircuitClient client(L.get());
  auto old_hop = relays.hop(0);
  relays[0].rotate_onion_key();
  CHECK(!(relays.hop(0).onion_key == old_hop.onion_key));
  auto c1 = built_circuit(L.get(), client, {old_hop});  // a client with an older consensus
  auto c2 = built_circuit(L.get(), client, {relays.hop(0)});
  relays[0].rotate_onion_key();
  auto c3 = build_circuit(client, {old_hop});
  REQUIRE(run_until(L.get(), [&] { return c3->done(); }));
  REQUIRE(c3->closed.has_value());
  CHECK(c3->closed->reason == DestroyReason::protocol);
  // Circuits built before the rotation keep working.
  auto s = std::make_shared<StreamProbe>();
  s->outgoing = pattern(5, 0, 1000);
  open_stream(client, c1->ref, local(echo.port()), s);
  REQUIRE(run_until(L.get(), [&] { return s->received.size() >= 1000; }));
  CHECK(s->received == s->outgoing);
}

TEST_CASE("idle links are closed, idle circuits destroyed") {
  TestLoop L;
  circuit::CircuitClientOptions opts;
  opts.idle_link_timeout_ms = 60'000;  // the client keeps its link; the relay decides
  CircuitFixture net(L.get(), 2, [](int, RelayConfig& c) {
    c.limits.link_idle_timeout_ms = 200;
    c.limits.circuit_idle_timeout_ms = 300;
    c.limits.housekeeping_interval_ms = 50;
  }, opts);
  CHECK(net.relays[0].stats().links == 2);
  // Nothing is sent: the circuit times out on both relays, then the links go idle and close.
  REQUIRE(run_until(L.get(), [&] { return net.circ->closed.has_value(); }, 5000));
  CHECK(net.relays.circuits() == 0);
  CHECK(run_until(L.get(), [&] { return net.relays[0].stats().links == 0 && net.relays[1].stats().links == 0; }, 5000));
}

TEST_CASE("the onion key rotates by itself every period") {
  TestLoop L;
  LocalRelays relays(L.get(), 1, [](int, RelayConfig& c) { c.onion_key_rotation_ms = 100; });
  auto first = relays[0].descriptor().onion_key;
  CHECK(run_until(L.get(), [&] { return !(relays[0].descriptor().onion_key == first); }, 5000));
}
