// The client side of a circuit (sans-IO) against an in-memory chain of relays that runs the real
// per-hop crypto: building, streams, windows and SENDMEs, END reasons, and tampering.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/circuit/client_circuit.hpp"
#include "tests/link/fake_relay_chain.hpp"

using namespace thor;
using circuit::CircuitEvent;
using circuit::ClientCircuit;
using Type = CircuitEvent::Type;

namespace {

constexpr CircId kId = 0x80000011u;

Bytes pattern(std::size_t n, std::uint8_t seed = 1) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((i * 131 + seed) ^ (i >> 8));
  return b;
}

struct Harness {
  std::vector<test::FakeRelay> relays = test::make_fake_relays(3, 1);
  crypto::DeterministicRng rng{42};
  ClientCircuit client;
  test::FakeCircuit fake;
  std::vector<CircuitEvent> events;
  std::size_t cells_to_relays = 0;

  explicit Harness(test::FakeExitOptions options = {}, std::vector<circuit::HopTarget> path = {})
      : client(kId, path.empty() ? test::hop_targets(relays) : path, rng), fake(relays, kId, std::move(options)) {}

  // Moves cells both ways until both sides are quiet, collecting the client's events.
  void run() {
    for (int round = 0; round < 100000; ++round) {
      std::vector<Cell> out;
      client.take_cells(out);
      cells_to_relays += out.size();
      for (auto& c : out) fake.receive(c);
      auto back = fake.take_replies();
      for (auto& c : back) client.handle_cell(c);
      while (auto ev = client.next_event()) events.push_back(std::move(*ev));
      if (out.empty() && back.empty()) return;
    }
    FAIL("cells kept flowing");
  }
  void build() {
    client.start();
    run();
    REQUIRE(client.open());
  }
  std::size_t count(Type t) const {
    std::size_t n = 0;
    for (const auto& e : events) n += e.type == t;
    return n;
  }
  const CircuitEvent* first(Type t) const {
    for (const auto& e : events)
      if (e.type == t) return &e;
    return nullptr;
  }
  Bytes data(StreamId id) const {
    Bytes out;
    for (const auto& e : events)
      if (e.type == Type::stream_data && e.stream == id) out.insert(out.end(), e.data.begin(), e.data.end());
    return out;
  }
};

}  // namespace

TEST_CASE("a three-hop circuit is built with CREATE and two EXTENDs") {
  Harness h;
  h.client.start();
  std::vector<Cell> first;
  h.client.take_cells(first);
  REQUIRE(first.size() == 1);
  CHECK(first[0].command == CellCommand::create);
  CHECK(first[0].circ_id == kId);
  h.fake.receive(first[0]);
  for (auto& c : h.fake.take_replies()) h.client.handle_cell(c);
  CHECK(h.client.hops_built() == 1);
  CHECK(h.client.state() == ClientCircuit::State::building);
  h.run();
  CHECK(h.client.open());
  CHECK(h.fake.hops_built() == 3);
  CHECK(h.cells_to_relays == 2);  // the two EXTENDs
  CHECK(h.count(Type::built) == 1);
  CHECK(h.events.front().type == Type::built);
}

TEST_CASE("a one-hop circuit is built by CREATE alone") {
  Harness h;
  std::vector<circuit::HopTarget> one = {test::hop_targets(h.relays)[0]};
  crypto::DeterministicRng rng(3);
  ClientCircuit c(kId, one, rng);
  test::FakeCircuit fake({h.relays[0]}, kId, {});
  c.start();
  std::vector<Cell> out;
  c.take_cells(out);
  for (auto& cell : out) fake.receive(cell);
  for (auto& cell : fake.take_replies()) c.handle_cell(cell);
  CHECK(c.open());
  auto ev = c.next_event();
  REQUIRE(ev);
  CHECK(ev->type == Type::built);
}

TEST_CASE("streams carry data both ways through three layers") {
  Harness h;
  h.build();
  StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
  CHECK(id == 1);
  h.run();
  REQUIRE(h.fake.begins().count(id) == 1);
  CHECK(h.fake.begins().at(id) == HostPort{"example.com", 80});
  const CircuitEvent* connected = h.first(Type::stream_connected);
  REQUIRE(connected);
  CHECK(connected->stream == id);
  CHECK(connected->address == "93.184.216.34");

  Bytes payload = pattern(10000);
  h.client.write(id, ByteView(payload));
  CHECK(h.client.writable(id));
  h.run();
  CHECK(h.fake.received().at(id) == payload);
  CHECK(h.fake.data_cells_received() == (10000 + kRelayMaxData - 1) / kRelayMaxData);
  CHECK(h.data(id) == payload);  // echoed by the exit

  StreamId second = h.client.begin_stream(HostPort{"10.0.0.1", 443});
  CHECK(second == 2);
  h.client.end_stream(id, EndReason::done);
  h.run();
  CHECK(h.fake.ends_received().at(id) == EndReason::done);
  CHECK_FALSE(h.client.has_stream(id));
  CHECK(h.client.has_stream(second));
}

TEST_CASE("DATA cells in a row for one stream become one event, interleaved streams keep their order") {
  Harness h;
  h.build();
  StreamId a = h.client.begin_stream(HostPort{"example.com", 80});
  StreamId b = h.client.begin_stream(HostPort{"example.com", 81});
  h.run();
  const std::size_t before = h.events.size();
  // a, a, a, b, a: three events for a (the first run, then one after b) and one for b.
  Bytes a1 = pattern(3 * kRelayMaxData, 5), b1 = pattern(100, 6), a2 = pattern(7, 7);
  h.fake.exit_send(a, ByteView(a1));
  h.fake.exit_send(b, ByteView(b1));
  h.fake.exit_send(a, ByteView(a2));
  for (auto& c : h.fake.take_replies()) h.client.handle_cell(c);
  while (auto ev = h.client.next_event()) h.events.push_back(std::move(*ev));
  REQUIRE(h.events.size() == before + 3);
  CHECK(h.events[before].stream == a);
  CHECK(h.events[before].data == a1);
  CHECK(h.events[before + 1].stream == b);
  CHECK(h.events[before + 1].data == b1);
  CHECK(h.events[before + 2].stream == a);
  CHECK(h.events[before + 2].data == a2);
}

TEST_CASE("megabytes with SENDMEs both ways arrive intact") {
  Harness h;
  h.build();
  StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
  h.run();
  Bytes payload = pattern(2'000'000, 9);
  h.client.write(id, ByteView(payload));
  CHECK_FALSE(h.client.writable(id));  // more than one stream window
  CHECK(h.client.buffered_bytes(id) == payload.size() - kStreamWindowStart * kRelayMaxData);
  h.run();
  CHECK(h.client.writable(id));
  CHECK(h.count(Type::stream_writable) == 1);
  CHECK(h.fake.received().at(id) == payload);
  Bytes echoed = h.data(id);
  CHECK(echoed.size() == payload.size());
  CHECK(echoed == payload);
  const std::size_t cells = (payload.size() + kRelayMaxData - 1) / kRelayMaxData;
  // The client acknowledged every 100 cells on the circuit and every 50 on the stream.
  CHECK(h.fake.circuit_sendmes_received() == cells / kCircuitWindowIncrement);
  CHECK(h.fake.stream_sendmes_received() == cells / kStreamWindowIncrement);
}

TEST_CASE("package windows stop DATA until SENDMEs open them") {
  test::FakeExitOptions opt;
  opt.echo = false;
  opt.send_sendmes = false;
  Harness h(opt);
  h.build();
  StreamId a = h.client.begin_stream(HostPort{"a.example", 80});
  StreamId b = h.client.begin_stream(HostPort{"b.example", 80});
  h.run();
  // Two streams fill the circuit window exactly, and a circuit SENDME is worth two stream SENDMEs.
  constexpr int S = kStreamWindowStart, s = kStreamWindowIncrement, C = kCircuitWindowStart,
                c = kCircuitWindowIncrement;
  static_assert(C == 2 * S && c == 2 * s, "the steps below assume these ratios");
  Bytes big = pattern((S + 2 * s) * kRelayMaxData);
  h.client.write(a, ByteView(big));
  h.run();
  CHECK(h.fake.data_cells_received() == S);
  CHECK(h.client.stream_package_window(a) == 0);
  CHECK_FALSE(h.client.writable(a));
  CHECK(h.client.buffered_bytes(a) == 2 * s * kRelayMaxData);

  h.client.write(b, ByteView(big));
  h.run();
  CHECK(h.fake.data_cells_received() == C);
  CHECK(h.client.package_window() == 0);

  // A stream SENDME alone does not help: the circuit window is closed.
  h.fake.send_from_hop(2, RelayMessage{RelayCommand::sendme, a, {}});
  h.run();
  CHECK(h.fake.data_cells_received() == C);
  CHECK(h.client.stream_package_window(a) == s);

  // A circuit SENDME lets c more cells out; stream a has room for s of them, b for none.
  h.fake.send_from_hop(2, RelayMessage{RelayCommand::sendme, 0, {}});
  h.run();
  CHECK(h.fake.data_cells_received() == C + s);
  CHECK(h.client.package_window() == c - s);
  CHECK(h.client.buffered_bytes(a) == s * kRelayMaxData);
  CHECK(h.count(Type::stream_writable) == 0);

  h.fake.send_from_hop(2, RelayMessage{RelayCommand::sendme, a, {}});
  h.run();
  CHECK(h.client.buffered_bytes(a) == 0);
  CHECK(h.client.writable(a));
  REQUIRE(h.count(Type::stream_writable) == 1);
  CHECK(h.first(Type::stream_writable)->stream == a);
  CHECK(h.fake.received().at(a) == big);
}

TEST_CASE("received DATA is acknowledged, and a paused stream withholds its SENDMEs") {
  test::FakeExitOptions opt;
  opt.echo = false;
  Harness h(opt);
  h.build();
  StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
  h.run();
  // n1 cells: one circuit SENDME and two stream SENDMEs due; n2 more: the second circuit SENDME.
  constexpr int S = kStreamWindowStart, s = kStreamWindowIncrement, c = kCircuitWindowIncrement;
  constexpr int n1 = 2 * s + s / 5, n2 = 2 * s;
  static_assert(n1 / c == 1 && (n1 + n2) / c == 2, "the counts below assume these window sizes");
  Bytes first = pattern(n1 * kRelayMaxData, 3);
  h.fake.exit_send(id, ByteView(first));
  h.run();
  CHECK(h.data(id) == first);
  CHECK(h.fake.circuit_sendmes_received() == 1);
  CHECK(h.fake.stream_sendmes_received() == 2);
  CHECK(h.client.stream_deliver_window(id) == S - n1 + 2 * s);

  h.client.set_receiving(id, false);
  h.fake.exit_send(id, ByteView(pattern(n2 * kRelayMaxData, 4)));
  h.run();
  CHECK(h.fake.circuit_sendmes_received() == 2);  // the circuit is still acknowledged
  CHECK(h.fake.stream_sendmes_received() == 2);
  CHECK(h.client.stream_deliver_window(id) == S - n1 + 2 * s - n2);

  h.client.set_receiving(id, true);
  h.run();
  CHECK(h.fake.stream_sendmes_received() == 4);
  CHECK(h.client.stream_deliver_window(id) == S - n1 + 2 * s);
}

TEST_CASE("DATA beyond the stream window destroys the circuit") {
  Harness h;
  h.build();
  StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
  h.run();
  h.client.set_receiving(id, false);
  Bytes chunk = pattern(10);
  for (int i = 0; i < kStreamWindowStart + 1; ++i) h.fake.send_from_hop(2, RelayMessage{RelayCommand::data, id, chunk});
  h.run();
  CHECK(h.data(id).size() == kStreamWindowStart * chunk.size());  // DATA cells in a row may share one event
  REQUIRE(h.first(Type::closed));
  CHECK(h.first(Type::closed)->destroy_reason == DestroyReason::protocol);
  CHECK(h.fake.destroy_received() == DestroyReason::protocol);
  CHECK(h.client.closed());
}

TEST_CASE("END carries the exit's reason") {
  SUBCASE("BEGIN refused by the exit policy") {
    test::FakeExitOptions opt;
    opt.refuse_begin = EndReason::exit_policy;
    Harness h(opt);
    h.build();
    StreamId id = h.client.begin_stream(HostPort{"example.com", 25});
    h.run();
    CHECK(h.count(Type::stream_connected) == 0);
    const CircuitEvent* end = h.first(Type::stream_ended);
    REQUIRE(end);
    CHECK(end->stream == id);
    CHECK(end->end_reason == EndReason::exit_policy);
    CHECK_FALSE(h.client.has_stream(id));
    CHECK(h.client.open());  // a refused stream leaves the circuit up
  }
  SUBCASE("the destination closed after sending") {
    test::FakeExitOptions opt;
    opt.echo = false;
    Harness h(opt);
    h.build();
    StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
    h.run();
    Bytes reply = pattern(1000);
    h.fake.exit_send(id, ByteView(reply));
    h.fake.exit_end(id, EndReason::done);
    h.run();
    CHECK(h.data(id) == reply);
    REQUIRE(h.events.back().type == Type::stream_ended);
    CHECK(h.events.back().end_reason == EndReason::done);
    // Late cells for an ended stream are dropped, not fatal.
    h.fake.send_from_hop(2, RelayMessage{RelayCommand::data, id, pattern(5)});
    h.run();
    CHECK(h.client.open());
    CHECK(h.data(id) == reply);
  }
}

TEST_CASE("RESOLVE returns the exit's answers") {
  test::FakeExitOptions opt;
  opt.resolve_answers = {ResolvedAnswer{ResolvedAnswer::Type::ipv4, "1.2.3.4", 60},
                         ResolvedAnswer{ResolvedAnswer::Type::ipv6, "2001:db8::1", 60}};
  Harness h(opt);
  h.build();
  StreamId id = h.client.begin_resolve("example.com");
  REQUIRE(id != 0);
  h.run();
  const CircuitEvent* ev = h.first(Type::stream_resolved);
  REQUIRE(ev);
  CHECK(ev->stream == id);
  REQUIRE(ev->answers.size() == 2);
  CHECK(ev->answers[0].value == "1.2.3.4");
  CHECK(ev->answers[1].type == ResolvedAnswer::Type::ipv6);
  CHECK_FALSE(h.client.has_stream(id));
}

TEST_CASE("a corrupted relay cell destroys the circuit and delivers nothing") {
  SUBCASE("toward the client") {
    test::FakeExitOptions opt;
    opt.echo = false;
    Harness h(opt);
    h.build();
    StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
    h.run();
    h.fake.exit_send(id, ByteView(pattern(400)));
    auto cells = h.fake.take_replies();
    REQUIRE(cells.size() == 1);
    cells[0].payload[100] ^= 0x01;
    h.client.handle_cell(cells[0]);
    while (auto ev = h.client.next_event()) h.events.push_back(std::move(*ev));
    CHECK(h.count(Type::stream_data) == 0);
    REQUIRE(h.first(Type::closed));
    CHECK(h.first(Type::closed)->destroy_reason == DestroyReason::protocol);
    CHECK(h.first(Type::closed)->message.find("not recognized") != std::string::npos);
    std::vector<Cell> out;
    h.client.take_cells(out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].command == CellCommand::destroy);
    CHECK(parse_destroy(out[0].payload)->reason == DestroyReason::protocol);
    CHECK(h.client.stream_count() == 0);
    // Whatever follows is ignored.
    h.fake.exit_send(id, ByteView(pattern(400)));
    for (auto& c : h.fake.take_replies()) h.client.handle_cell(c);
    CHECK_FALSE(h.client.next_event());
  }
  SUBCASE("toward the exit") {
    Harness h;
    h.build();
    StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
    h.run();
    Bytes payload = pattern(300);
    h.client.write(id, ByteView(payload));
    std::vector<Cell> out;
    h.client.take_cells(out);
    REQUIRE(out.size() == 1);
    out[0].payload[200] ^= 0x80;
    h.fake.receive(out[0]);
    CHECK(h.fake.protocol_error());
    CHECK(h.fake.received().count(id) == 0);
    for (auto& c : h.fake.take_replies()) h.client.handle_cell(c);
    auto ev = h.client.next_event();
    REQUIRE(ev);
    CHECK(ev->type == Type::closed);
    CHECK(ev->destroy_reason == DestroyReason::protocol);
  }
}

TEST_CASE("a handshake reply that does not verify destroys the circuit") {
  Harness h;
  h.client.start();
  std::vector<Cell> out;
  h.client.take_cells(out);
  h.fake.receive(out[0]);
  auto replies = h.fake.take_replies();
  REQUIRE(replies.size() == 1);
  replies[0].payload[2 + 40] ^= 0x01;  // inside AUTH
  h.client.handle_cell(replies[0]);
  auto ev = h.client.next_event();
  REQUIRE(ev);
  CHECK(ev->type == Type::closed);
  CHECK(ev->destroy_reason == DestroyReason::protocol);
  CHECK(ev->message.find("hop 1 failed its handshake") != std::string::npos);
}

TEST_CASE("a hop that is not the relay named in the path ends the build") {
  Harness base;
  auto path = test::hop_targets(base.relays);
  SUBCASE("another identity: the relay refuses to extend") {
    path[2].identity = test::make_fake_relays(1, 99)[0].identity.public_key();
  }
  SUBCASE("another onion key: the handshake cannot complete") {
    path[1].onion_key = test::make_fake_relays(1, 98)[0].onion.public_key;
  }
  Harness h({}, path);
  h.client.start();
  h.run();
  CHECK_FALSE(h.client.open());
  REQUIRE(h.first(Type::closed));
  CHECK(h.first(Type::closed)->destroy_reason == DestroyReason::or_identity);
  CHECK(h.first(Type::closed)->message.find("truncated") != std::string::npos);
  CHECK(h.fake.destroyed());  // the client released the hops that were built
  CHECK(h.count(Type::built) == 0);
}

TEST_CASE("DESTROY from a relay and a closed link end the circuit without a reply") {
  SUBCASE("DESTROY") {
    Harness h;
    h.build();
    h.fake.send_destroy(DestroyReason::resource_limit);
    h.run();
    REQUIRE(h.first(Type::closed));
    CHECK(h.first(Type::closed)->destroy_reason == DestroyReason::resource_limit);
    CHECK(h.cells_to_relays == 3);  // CREATE and the EXTENDs; no DESTROY back
  }
  SUBCASE("link closed") {
    Harness h;
    h.build();
    h.client.begin_stream(HostPort{"example.com", 80});
    h.client.link_closed("peer closed the connection");
    std::vector<Cell> out;
    h.client.take_cells(out);
    CHECK(out.size() == 1);  // the BEGIN queued before; nothing after
    auto ev = h.client.next_event();
    REQUIRE(ev);
    CHECK(ev->type == Type::closed);
    CHECK(ev->destroy_reason == DestroyReason::channel_closed);
    CHECK(h.client.begin_stream(HostPort{"example.com", 80}) == 0);
  }
}

TEST_CASE("protocol violations by the relays destroy the circuit") {
  Harness h;
  h.build();
  StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
  h.run();
  SUBCASE("stream traffic from a middle hop") {
    h.fake.send_from_hop(1, RelayMessage{RelayCommand::data, id, pattern(10)});
  }
  SUBCASE("a circuit SENDME beyond the window") {
    h.fake.send_from_hop(2, RelayMessage{RelayCommand::sendme, 0, {}});
  }
  SUBCASE("a second CONNECTED") {
    ConnectedBody c;
    h.fake.send_from_hop(2, RelayMessage{RelayCommand::connected, id, encode_connected(c)});
  }
  SUBCASE("a BEGIN sent to the client") {
    BeginBody b;
    b.target = HostPort{"example.com", 80};
    h.fake.send_from_hop(2, RelayMessage{RelayCommand::begin, 9, encode_begin(b)});
  }
  h.run();
  REQUIRE(h.first(Type::closed));
  CHECK(h.first(Type::closed)->destroy_reason == DestroyReason::protocol);
  CHECK(h.fake.destroy_received() == DestroyReason::protocol);
}

TEST_CASE("data written before CONNECTED waits for it, and congestion holds DATA") {
  test::FakeExitOptions opt;
  opt.echo = false;
  Harness h(opt);
  h.build();
  StreamId id = h.client.begin_stream(HostPort{"example.com", 80});
  Bytes early = pattern(1000, 5);
  h.client.write(id, ByteView(early));
  CHECK_FALSE(h.client.writable(id));
  std::vector<Cell> out;
  h.client.take_cells(out);
  CHECK(out.size() == 1);  // BEGIN only
  for (auto& c : out) h.fake.receive(c);
  for (auto& c : h.fake.take_replies()) h.client.handle_cell(c);
  h.run();
  CHECK(h.fake.received().at(id) == early);
  CHECK(h.count(Type::stream_writable) == 1);

  h.client.set_congested(true);
  h.client.write(id, ByteView(early));
  h.run();
  CHECK(h.fake.received().at(id).size() == early.size());
  CHECK(h.client.buffered_bytes(id) == early.size());
  h.client.set_congested(false);
  h.run();
  CHECK(h.fake.received().at(id).size() == 2 * early.size());
}
