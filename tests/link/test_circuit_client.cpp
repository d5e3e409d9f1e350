// CircuitClient over a real link on 127.0.0.1 to a fake relay: the responder end of a Channel
// behind which FakeCircuit plays all three hops of each circuit.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/circuit/circuit_client.hpp"
#include "common/link/channel.hpp"
#include "common/uv/tcp.hpp"
#include "tests/link/fake_relay_chain.hpp"
#include "tests/support/test_loop.hpp"

using namespace thor;
using circuit::CircuitClient;
using circuit::CircuitRef;
using circuit::StreamRef;

namespace {

Bytes pattern(std::size_t n, std::uint8_t seed = 1) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((i * 131 + seed) ^ (i >> 8));
  return b;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

struct FakeRelayServer {
  std::vector<test::FakeRelay> relays = test::make_fake_relays(3, 5);
  uv::TcpListener listener;
  std::vector<std::unique_ptr<link::Channel>> channels;
  std::map<CircId, std::unique_ptr<test::FakeCircuit>> circuits;
  test::FakeExitOptions options;

  explicit FakeRelayServer(uv_loop_t* loop) : listener(loop) {
    auto st = listener.listen(HostPort{"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> conn) {
      link::Channel::Callbacks cb;
      const std::size_t index = channels.size();
      cb.on_cell = [this, index](Cell& cell) {
        auto& fc = circuits[cell.circ_id];
        if (!fc) fc = std::make_unique<test::FakeCircuit>(relays, cell.circ_id, options);
        fc->receive(cell);
        flush(index);
      };
      cb.on_closed = [](const std::string&) {};
      channels.push_back(link::Channel::accept(std::move(conn), relays[0].identity, std::move(cb)));
    });
    REQUIRE(st.ok());
    relays[0].address.port = listener.bound_port();
  }
  void flush(std::size_t index = 0) {
    for (auto& [id, fc] : circuits)
      for (auto& c : fc->take_replies())
        if (channels.at(index)) channels[index]->send(c);
  }
  test::FakeCircuit& only_circuit() {
    REQUIRE(circuits.size() == 1);
    return *circuits.begin()->second;
  }
  std::vector<dir::ConsensusRelay> path() const { return test::consensus_path(relays); }
};

struct CircuitProbe {
  bool built = false;
  std::optional<circuit::CircuitClosed> closed;
  circuit::CircuitCallbacks callbacks() {
    return {[this] { built = true; }, [this](const circuit::CircuitClosed& c) { closed = c; }};
  }
};

struct StreamProbe {
  std::optional<std::string> connected;
  Bytes data;
  std::optional<circuit::StreamEnd> ended;
  int writable = 0;
  circuit::StreamCallbacks callbacks() {
    circuit::StreamCallbacks cb;
    cb.on_connected = [this](const std::string& a) { connected = a; };
    cb.on_data = [this](ByteView d) { data.insert(data.end(), d.begin(), d.end()); };
    cb.on_end = [this](const circuit::StreamEnd& e) { ended = e; };
    cb.on_writable = [this] { ++writable; };
    return cb;
  }
};

}  // namespace

TEST_CASE("circuits share one link; a megabyte goes out and back intact") {
  test::TestLoop loop;
  FakeRelayServer server(loop.get());
  CircuitClient client(loop.get());
  CircuitProbe p1, p2;
  CircuitRef c1 = client.build_circuit(server.path(), p1.callbacks());
  CircuitRef c2 = client.build_circuit(server.path(), p2.callbacks());
  REQUIRE(c1 != 0);
  REQUIRE(c2 != 0);
  CHECK_FALSE(client.circuit_open(c1));
  REQUIRE(loop.run_until([&] { return p1.built && p2.built; }));
  CHECK(client.link_count() == 1);
  CHECK(server.channels.size() == 1);
  CHECK(server.circuits.size() == 2);
  CHECK(client.circuit_open(c1));

  StreamProbe s;
  StreamRef sref = client.open_stream(c1, HostPort{"example.com", 80}, s.callbacks());
  REQUIRE(sref != 0);
  CHECK(client.stream_circuit(sref) == c1);
  REQUIRE(loop.run_until([&] { return s.connected.has_value(); }));
  CHECK(*s.connected == "93.184.216.34");

  // Feed the stream like a proxy reading a socket: 64 KB at a time while it can take more.
  const Bytes payload = pattern(1 << 20, 3);
  std::size_t offset = 0;
  int pauses = 0;
  auto feed = [&] {
    while (offset < payload.size()) {
      std::size_t n = std::min<std::size_t>(65536, payload.size() - offset);
      bool more = client.write(sref, ByteView(payload).subspan(offset, n));
      offset += n;
      if (!more) {
        ++pauses;
        return;
      }
    }
  };
  feed();
  REQUIRE(loop.run_until([&] {
    if (s.writable > 0 && offset < payload.size() && client.can_write(sref)) feed();
    return s.data.size() >= payload.size() || s.ended.has_value();
  }, 30000));
  CHECK(pauses > 0);  // the windows pushed back at least once
  CHECK(s.data == payload);
  CHECK(client.buffered_bytes(sref) == 0);

  // The second circuit carries its own stream over the same link.
  StreamProbe t;
  StreamRef tref = client.open_stream(c2, HostPort{"10.1.2.3", 8080}, t.callbacks());
  REQUIRE(loop.run_until([&] { return t.connected.has_value(); }));
  client.write(tref, as_bytes("hello through thor"));
  REQUIRE(loop.run_until([&] { return t.data.size() == 18; }));
  CHECK(std::string(as_chars(ByteView(t.data))) == "hello through thor");
  CHECK(client.stream_count(c1) == 1);

  client.close_stream(sref);
  CHECK_FALSE(client.stream_exists(sref));
  REQUIRE(loop.run_until([&] {
    for (auto& [id, fc] : server.circuits)
      if (fc->ends_received().size() == 1) return true;
    return false;
  }));
  CHECK_FALSE(s.ended);  // no callback after close_stream
}

TEST_CASE("END reasons, RESOLVE, and a slow reader that holds the exit back") {
  test::TestLoop loop;
  FakeRelayServer server(loop.get());
  server.options.echo = false;
  server.options.resolve_answers = {ResolvedAnswer{ResolvedAnswer::Type::ipv4, "192.0.2.7", 30}};
  CircuitClient client(loop.get());
  CircuitProbe p;
  CircuitRef c = client.build_circuit(server.path(), p.callbacks());
  REQUIRE(loop.run_until([&] { return p.built; }));

  std::optional<circuit::ResolveOutcome> answer;
  REQUIRE(client.resolve(c, "example.com", [&](const circuit::ResolveOutcome& o) { answer = o; }) != 0);
  REQUIRE(loop.run_until([&] { return answer.has_value(); }));
  CHECK_FALSE(answer->failed);
  REQUIRE(answer->answers.size() == 1);
  CHECK(answer->answers[0].value == "192.0.2.7");

  StreamProbe s;
  StreamRef sref = client.open_stream(c, HostPort{"example.com", 80}, s.callbacks());
  REQUIRE(loop.run_until([&] { return s.connected.has_value(); }));
  client.pause_reading(sref);
  test::FakeCircuit& exit = server.only_circuit();
  const Bytes big = pattern(2 * kStreamWindowStart * kRelayMaxData, 8);
  StreamId sid = exit.begins().rbegin()->first;
  exit.exit_send(sid, ByteView(big));
  server.flush();
  loop.run_for(200);
  // One stream window reached the client; the rest waits at the exit.
  CHECK(s.data.size() == kStreamWindowStart * kRelayMaxData);
  CHECK(exit.exit_buffered(sid) == big.size() - kStreamWindowStart * kRelayMaxData);
  client.resume_reading(sref);
  REQUIRE(loop.run_until([&] {
    server.flush();
    return s.data.size() == big.size();
  }));
  CHECK(s.data == big);
  exit.exit_end(sid, EndReason::done);
  server.flush();
  REQUIRE(loop.run_until([&] { return s.ended.has_value(); }));
  CHECK_FALSE(s.ended->circuit_closed);
  CHECK(s.ended->reason == EndReason::done);
  CHECK_FALSE(client.stream_exists(sref));

  server.circuits.begin()->second->options().refuse_begin = EndReason::connect_refused;
  StreamProbe r;
  client.open_stream(c, HostPort{"example.com", 81}, r.callbacks());
  REQUIRE(loop.run_until([&] { return r.ended.has_value(); }));
  CHECK(r.ended->reason == EndReason::connect_refused);
  CHECK_FALSE(r.connected);
  CHECK(client.circuit_open(c));
}

TEST_CASE("a sender is held back by the windows until the exit acknowledges") {
  test::TestLoop loop;
  FakeRelayServer server(loop.get());
  server.options.echo = false;
  server.options.send_sendmes = false;
  CircuitClient client(loop.get());
  CircuitProbe p;
  CircuitRef c = client.build_circuit(server.path(), p.callbacks());
  REQUIRE(loop.run_until([&] { return p.built; }));
  StreamProbe s;
  StreamRef sref = client.open_stream(c, HostPort{"example.com", 80}, s.callbacks());
  REQUIRE(loop.run_until([&] { return s.connected.has_value(); }));
  // One stream window and two increments more, which two stream SENDMEs let out.
  constexpr std::size_t window = kStreamWindowStart, more = 2 * kStreamWindowIncrement;
  static_assert(window + more <= kCircuitWindowStart, "the circuit window must not be what stops it");
  const Bytes big = pattern((window + more) * kRelayMaxData);
  CHECK_FALSE(client.write(sref, ByteView(big)));
  CHECK_FALSE(client.can_write(sref));
  test::FakeCircuit& exit = server.only_circuit();
  REQUIRE(loop.run_until([&] { return exit.data_cells_received() == window; }));
  loop.run_for(100);
  CHECK(exit.data_cells_received() == window);
  CHECK(client.buffered_bytes(sref) == more * kRelayMaxData);
  CHECK(s.writable == 0);
  StreamId sid = exit.begins().begin()->first;
  for (int i = 0; i < 2; ++i) exit.send_from_hop(2, RelayMessage{RelayCommand::sendme, sid, {}});
  server.flush();
  REQUIRE(loop.run_until([&] { return s.writable == 1; }));
  CHECK(client.can_write(sref));
  REQUIRE(loop.run_until([&] { return exit.data_cells_received() == window + more; }));
  CHECK(exit.received().at(sid) == big);
}

TEST_CASE("when the link dies, streams and circuits are told") {
  test::TestLoop loop;
  FakeRelayServer server(loop.get());
  CircuitClient client(loop.get());
  CircuitProbe p;
  CircuitRef c = client.build_circuit(server.path(), p.callbacks());
  REQUIRE(loop.run_until([&] { return p.built; }));
  StreamProbe s;
  client.open_stream(c, HostPort{"example.com", 80}, s.callbacks());
  REQUIRE(loop.run_until([&] { return s.connected.has_value(); }));
  server.channels.clear();  // the relay goes away
  REQUIRE(loop.run_until([&] { return p.closed.has_value(); }));
  REQUIRE(s.ended);
  CHECK(s.ended->circuit_closed);
  CHECK(p.closed->reason == DestroyReason::channel_closed);
  CHECK(contains(p.closed->message, "peer closed the connection"));
  CHECK_FALSE(client.circuit_exists(c));
  CHECK(client.link_count() == 0);

  // A new circuit opens a new link.
  CircuitProbe again;
  client.build_circuit(server.path(), again.callbacks());
  REQUIRE(loop.run_until([&] { return again.built; }));
  CHECK(client.link_count() == 1);
}

TEST_CASE("a build that takes too long is abandoned; a wrong first hop is refused") {
  test::TestLoop loop;
  FakeRelayServer server(loop.get());
  server.options.answer_create = false;
  circuit::CircuitClientOptions opt;
  opt.build_timeout_ms = 150;
  CircuitClient client(loop.get(), opt);
  CircuitProbe p;
  client.build_circuit(server.path(), p.callbacks());
  REQUIRE(loop.run_until([&] { return p.closed.has_value(); }, 3000));
  CHECK_FALSE(p.built);
  CHECK(p.closed->reason == DestroyReason::timeout);
  CHECK(contains(p.closed->message, "timed out"));
  REQUIRE(loop.run_until([&] { return server.only_circuit().destroy_received().has_value(); }));
  CHECK(server.only_circuit().destroy_received() == DestroyReason::timeout);

  auto path = server.path();
  path[0].descriptor.identity = test::make_fake_relays(1, 77)[0].identity.public_key();
  CircuitProbe wrong;
  client.build_circuit(path, wrong.callbacks());
  REQUIRE(loop.run_until([&] { return wrong.closed.has_value(); }));
  CHECK(wrong.closed->reason == DestroyReason::channel_closed);
  CHECK(contains(wrong.closed->message, "expected"));
}

TEST_CASE("destroy_circuit sends DESTROY and runs no callbacks; callbacks may destroy the client") {
  test::TestLoop loop;
  FakeRelayServer server(loop.get());
  auto client = std::make_unique<CircuitClient>(loop.get());
  CircuitProbe p;
  CircuitRef c = client->build_circuit(server.path(), p.callbacks());
  REQUIRE(loop.run_until([&] { return p.built; }));
  StreamProbe s;
  StreamRef sref = client->open_stream(c, HostPort{"example.com", 80}, s.callbacks());
  REQUIRE(loop.run_until([&] { return s.connected.has_value(); }));
  client->destroy_circuit(c);
  CHECK_FALSE(client->circuit_exists(c));
  CHECK_FALSE(client->stream_exists(sref));
  CHECK_FALSE(client->write(sref, as_bytes("late")));
  REQUIRE(loop.run_until([&] { return server.only_circuit().destroy_received().has_value(); }));
  CHECK(server.only_circuit().destroy_received() == DestroyReason::requested);
  loop.run_for(20);
  CHECK_FALSE(p.closed);
  CHECK_FALSE(s.ended);

  // The owner tears everything down from inside a data callback.
  CircuitProbe q;
  CircuitRef c2 = client->build_circuit(server.path(), q.callbacks());
  REQUIRE(loop.run_until([&] { return q.built; }));
  bool got_data = false;
  circuit::StreamCallbacks cb;
  cb.on_data = [&](ByteView) {
    got_data = true;
    client.reset();
  };
  StreamRef r = client->open_stream(c2, HostPort{"example.com", 80}, cb);
  REQUIRE(r != 0);
  client->write(r, ByteView(pattern(5000)));  // echoed in several cells
  REQUIRE(loop.run_until([&] { return got_data; }));
  CHECK_FALSE(client);
  loop.run_for(20);
}
