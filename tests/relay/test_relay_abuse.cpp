// A peer that breaks the protocol: each mistake closes only the circuit it belongs to (DESTROY
// protocol), never the link or the relay, and the relay keeps serving everyone else.
#include <doctest/doctest.h>

#include "common/crypto/ntor.hpp"
#include "common/crypto/onion.hpp"
#include "tests/relay/relay_test_support.hpp"

using namespace thor;
using namespace thor::relay;
using namespace thor::relay::test;

namespace {

// A hand-made client: a link, raw cells, and one-hop circuits whose relay cells it builds itself.
class HandClient {
 public:
  HandClient(uv_loop_t* loop, const circuit::HopTarget& hop) : loop_(loop), hop_(hop) {
    link::Channel::Callbacks cb;
    cb.on_cell = [this](Cell& c) { inbox_.push_back(c); };
    cb.on_closed = [this](const std::string&) { closed_ = true; };
    ch_ = link::Channel::connect(loop, hop.address, hop.identity, nullptr, std::move(cb));
  }
  link::Channel& channel() { return *ch_; }
  bool closed() const { return closed_; }

  CircId fresh_id() {
    return ch_->allocate_circ_id([this](CircId x) { return circuits_.count(x) != 0; });
  }
  // Builds a one-hop circuit; its crypto is kept for send_relay().
  CircId create() {
    CircId id = fresh_id();
    auto ntor = crypto::NtorClient::start(hop_.identity, hop_.onion_key, crypto::system_rng());
    ch_->send(make_create_cell(id, CreateBody{kHandshakeNtorV1, ntor.onion_skin()}));
    auto reply = wait_for(id);
    REQUIRE(reply);
    REQUIRE(reply->command == CellCommand::created);
    auto body = parse_created(reply->payload);
    REQUIRE(body);
    auto keys = ntor.finish(body->handshake);
    REQUIRE(keys);
    circuits_[id].add_hop(*keys);
    return id;
  }
  // Sends a relay cell whose plaintext the caller shaped (any command byte, any stream id).
  void send_relay_raw(CircId id, CellPayload plain, std::size_t hop = 0) {
    Cell c;
    c.circ_id = id;
    c.command = CellCommand::relay;
    c.payload = plain;
    circuits_[id].encrypt_forward(c.payload, hop);
    ch_->send(c);
  }
  void send_relay(CircId id, RelayCommand cmd, StreamId stream, ByteView body = {}, std::size_t hop = 0) {
    CellPayload p{};
    RelayMessage m{cmd, stream, Bytes(body.begin(), body.end())};
    REQUIRE(encode_relay_payload(m, p));
    send_relay_raw(id, p, hop);
  }
  // The next relay message on circuit id, with the hop that sent it.
  std::optional<std::pair<std::size_t, RelayMessage>> receive_relay(CircId id) {
    auto c = wait_for(id);
    if (!c || c->command != CellCommand::relay) return std::nullopt;
    auto hop = circuits_[id].decrypt_backward(c->payload);
    if (!hop) return std::nullopt;
    auto m = decode_relay_payload(c->payload);
    if (!m) return std::nullopt;
    return std::make_pair(*hop, *m);
  }
  // Extends circuit id by one hop through its current last hop.
  void extend(CircId id, const circuit::HopTarget& next) {
    auto ntor = crypto::NtorClient::start(next.identity, next.onion_key, crypto::system_rng());
    ExtendBody e{next.address, next.identity, CreateBody{kHandshakeNtorV1, ntor.onion_skin()}};
    send_relay(id, RelayCommand::extend, 0, encode_extend(e), circuits_[id].hops() - 1);
    auto reply = receive_relay(id);
    REQUIRE(reply);
    REQUIRE(reply->second.command == RelayCommand::extended);
    auto body = parse_extended(reply->second.body);
    REQUIRE(body);
    auto keys = ntor.finish(body->created.handshake);
    REQUIRE(keys);
    circuits_[id].add_hop(*keys);
  }
  // The next cell for circuit id (waiting up to 5 s).
  std::optional<Cell> wait_for(CircId id) {
    std::optional<Cell> out;
    run_until(loop_, [&] {
      for (auto it = inbox_.begin(); it != inbox_.end(); ++it)
        if (it->circ_id == id) {
          out = *it;
          inbox_.erase(it);
          return true;
        }
      return closed_;
    }, 5000);
    return out;
  }
  // Waits for DESTROY on circuit id (skipping relay cells) and returns its reason.
  std::optional<DestroyReason> wait_destroy(CircId id) {
    for (;;) {
      auto c = wait_for(id);
      if (!c) return std::nullopt;
      if (c->command != CellCommand::destroy) continue;
      auto b = parse_destroy(c->payload);
      if (!b) return std::nullopt;
      return b->reason;
    }
  }

 private:
  uv_loop_t* loop_;
  circuit::HopTarget hop_;
  std::unique_ptr<link::Channel> ch_;
  std::vector<Cell> inbox_;
  std::map<CircId, crypto::ClientCircuitCrypto> circuits_;
  bool closed_ = false;
};

}  // namespace

TEST_CASE("protocol mistakes destroy only their own circuit") {
  TestLoop L;
  LocalRelays relays(L.get(), 1);
  HandClient hc(L.get(), relays.hop(0));
  REQUIRE(run_until(L.get(), [&] { return hc.channel().established() || hc.closed(); }));
  CircId good = hc.create();

  SUBCASE("CREATE with a circuit id from the wrong side of the link") {
    CircId id = hc.fresh_id() & ~kCircIdInitiatorBit;
    hc.channel().send(make_create_cell(id, CreateBody{kHandshakeNtorV1, Bytes(96, 7)}));
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("CREATE whose onion skin names keys that are not the relay's") {
    CircId id = hc.fresh_id();
    hc.channel().send(make_create_cell(id, CreateBody{kHandshakeNtorV1, Bytes(96, 7)}));
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("CREATE with an unknown handshake type") {
    CircId id = hc.fresh_id();
    hc.channel().send(make_create_cell(id, CreateBody{0x0777, Bytes(96, 7)}));
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("a relay command no client sends") {
    CircId id = hc.create();
    hc.send_relay(id, RelayCommand::connected, 1);
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("an unknown relay command") {
    CircId id = hc.create();
    CellPayload p{};
    RelayMessage m{RelayCommand::drop, 0, {}};
    REQUIRE(encode_relay_payload(m, p));
    p[kRelayCommandOffset] = 200;
    hc.send_relay_raw(id, p);
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("BEGIN on stream 0") {
    CircId id = hc.create();
    CellPayload p{};
    RelayMessage m{RelayCommand::begin, 1, encode_begin(BeginBody{{"127.0.0.1", 80}, 0})};
    REQUIRE(encode_relay_payload(m, p));
    p[kRelayCommandOffset + 1] = 0;  // stream id, which the encoder refuses to write as 0
    p[kRelayCommandOffset + 2] = 0;
    hc.send_relay_raw(id, p);
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("a circuit SENDME that would open the window past its start") {
    CircId id = hc.create();
    hc.send_relay(id, RelayCommand::sendme, 0);
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("a garbled EXTEND") {
    CircId id = hc.create();
    hc.send_relay(id, RelayCommand::extend, 0, Bytes(20, 1));
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("EXTEND back to the same relay") {
    CircId id = hc.create();
    auto ntor = crypto::NtorClient::start(relays.hop(0).identity, relays.hop(0).onion_key, crypto::system_rng());
    ExtendBody e{relays.hop(0).address, relays.hop(0).identity, CreateBody{kHandshakeNtorV1, ntor.onion_skin()}};
    hc.send_relay(id, RelayCommand::extend, 0, encode_extend(e));
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  SUBCASE("a relay cell no hop recognizes, on a circuit without a next hop") {
    CircId id = hc.create();
    Cell c;
    c.circ_id = id;
    c.command = CellCommand::relay;
    for (std::size_t i = 0; i < c.payload.size(); ++i) c.payload[i] = static_cast<std::uint8_t>(i * 7);
    hc.channel().send(c);
    CHECK(hc.wait_destroy(id) == DestroyReason::protocol);
  }
  // The link and the other circuit are untouched.
  CHECK(!hc.closed());
  hc.send_relay(good, RelayCommand::resolve, 5, encode_resolve(ResolveBody{"127.0.0.9"}));
  auto reply = hc.wait_for(good);
  REQUIRE(reply);
  CHECK(reply->command == CellCommand::relay);
  CHECK(relays[0].stats().circuits == 1);
}

TEST_CASE("random cells on a link never take the relay down") {
  TestLoop L;
  EchoServer echo(L.get());
  LocalRelays relays(L.get(), 2);
  crypto::DeterministicRng rng(1234);
  {
    HandClient hc(L.get(), relays.hop(0));
    REQUIRE(run_until(L.get(), [&] { return hc.channel().established(); }));
    std::vector<CircId> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(hc.create());
    for (int i = 0; i < 3000; ++i) {
      Cell c;
      c.command = static_cast<CellCommand>(rng.uniform(5));
      // Mostly circuits that exist (so relay cells reach the crypto), sometimes any id.
      c.circ_id = rng.uniform(4) ? ids[rng.uniform(3)] : static_cast<CircId>(rng.u64());
      rng.fill(c.payload);
      if (rng.uniform(3) == 0) c.payload[0] = c.payload[1] = 0;  // looks "recognized"
      hc.channel().send(c);
      if (i % 100 == 0) run_for(L.get(), 1);
    }
    run_for(L.get(), 300);
  }
  // The relay still builds circuits and carries data.
  circuit::CircuitClient client(L.get());
  auto circ = build_circuit(client, relays.path({0, 1}));
  REQUIRE(run_until(L.get(), [&] { return circ->done(); }));
  REQUIRE(circ->built);
  auto s = std::make_shared<StreamProbe>();
  s->outgoing = pattern(8, 0, 20'000);
  open_stream(client, circ->ref, {"127.0.0.1", echo.port()}, s);
  REQUIRE(run_until(L.get(), [&] { return s->received.size() >= 20'000; }));
  CHECK(s->received == s->outgoing);
}

TEST_CASE("TRUNCATE frees the rest of the circuit and keeps the hop that received it") {
  TestLoop L;
  LocalRelays relays(L.get(), 3);
  HandClient hc(L.get(), relays.hop(0));
  REQUIRE(run_until(L.get(), [&] { return hc.channel().established(); }));
  CircId id = hc.create();
  hc.extend(id, relays.hop(1));
  hc.extend(id, relays.hop(2));
  CHECK(relays.circuits() == 3);

  hc.send_relay(id, RelayCommand::truncate, 0, {}, 0);
  auto reply = hc.receive_relay(id);
  REQUIRE(reply);
  CHECK(reply->first == 0);
  CHECK(reply->second.command == RelayCommand::truncated);
  auto body = parse_truncated(reply->second.body);
  REQUIRE(body);
  CHECK(body->reason == DestroyReason::requested);
  CHECK(run_until(L.get(), [&] { return relays[1].stats().circuits == 0 && relays[2].stats().circuits == 0; }));
  CHECK(relays[0].stats().circuits == 1);
}
