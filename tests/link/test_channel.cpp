// Links between two endpoints in this process over 127.0.0.1: the handshake, cells both ways,
// batching into records, and every way a link ends.
#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/cell/cell.hpp"
#include "common/crypto/keys.hpp"
#include "common/crypto/link_session.hpp"
#include "common/link/channel.hpp"
#include "common/uv/tcp.hpp"
#include "tests/support/test_loop.hpp"

using namespace thor;
using link::Channel;

namespace {

Cell numbered_cell(CircId id, std::uint8_t fill = 0x5A) {
  Cell c;
  c.circ_id = id;
  c.command = CellCommand::relay;
  c.payload.fill(fill);
  c.payload[0] = static_cast<std::uint8_t>(id);
  return c;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A listening responder that wraps each accepted connection in a Channel.
struct Responder {
  crypto::IdentityKey key = crypto::IdentityKey::generate(crypto::system_rng());
  uv::TcpListener listener;
  std::unique_ptr<Channel> channel;
  std::vector<Cell> got;
  bool established = false;
  std::optional<std::string> closed;
  std::function<void(Cell&)> on_cell;  // extra behaviour per test
  std::vector<std::size_t> cells_at_read_done;  // got.size() at each on_read_done
  link::ChannelOptions options;

  explicit Responder(uv_loop_t* loop) : listener(loop) {
    auto st = listener.listen(HostPort{"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> conn) {
      Channel::Callbacks cb;
      cb.on_cell = [this](Cell& c) {
        got.push_back(c);
        if (on_cell) on_cell(c);
      };
      cb.on_established = [this] { established = true; };
      cb.on_closed = [this](const std::string& r) { closed = r; };
      cb.on_read_done = [this] { cells_at_read_done.push_back(got.size()); };
      channel = Channel::accept(std::move(conn), key, std::move(cb), options);
    });
    REQUIRE(st.ok());
  }
  HostPort address() const { return HostPort{"127.0.0.1", listener.bound_port()}; }
};

struct Initiator {
  std::unique_ptr<Channel> channel;
  std::vector<Cell> got;
  bool established = false;
  std::optional<std::string> closed;
  std::function<void()> on_established;

  Initiator(uv_loop_t* loop, const HostPort& to, const crypto::Ed25519Public& expected,
            const crypto::IdentityKey* own = nullptr) {
    Channel::Callbacks cb;
    cb.on_cell = [this](Cell& c) { got.push_back(c); };
    cb.on_established = [this] {
      established = true;
      if (on_established) on_established();
    };
    cb.on_closed = [this](const std::string& r) { closed = r; };
    channel = Channel::connect(loop, to, expected, own, std::move(cb));
  }
};

}  // namespace

TEST_CASE("a link carries cells both ways and proves identities") {
  test::TestLoop loop;
  Responder server(loop.get());
  server.on_cell = [&](Cell& c) {
    Cell reply = c;
    reply.payload[1] = 0xEE;
    server.channel->send(reply);
  };
  auto relay_key = crypto::IdentityKey::generate(crypto::system_rng());
  Initiator client(loop.get(), server.address(), server.key.public_key(), &relay_key);
  Cell first = numbered_cell(0x80000001u);
  client.channel->send(first);  // before the handshake: held until it completes
  REQUIRE(loop.run_until([&] { return client.got.size() == 1; }));
  CHECK(server.got.at(0) == first);
  Cell expected = first;
  expected.payload[1] = 0xEE;
  CHECK(client.got[0] == expected);
  CHECK(client.established);
  CHECK(server.established);
  CHECK(client.channel->established());
  CHECK(client.channel->is_initiator());
  CHECK_FALSE(server.channel->is_initiator());
  CHECK(client.channel->peer_identity() == server.key.public_key());
  CHECK(server.channel->peer_identity() == relay_key.public_key());
  CHECK(client.channel->peer_address() == server.address().to_string());
  CHECK_FALSE(client.closed);
  CHECK_FALSE(server.closed);
}

TEST_CASE("an anonymous initiator (a proxy) has no identity on the responder's side") {
  test::TestLoop loop;
  Responder server(loop.get());
  Initiator client(loop.get(), server.address(), server.key.public_key());
  client.channel->send(numbered_cell(0x80000002u));
  REQUIRE(loop.run_until([&] { return server.got.size() == 1; }));
  CHECK_FALSE(server.channel->peer_identity().has_value());
}

TEST_CASE("cells sent in one loop iteration go out in full records, in order") {
  test::TestLoop loop;
  // A raw responder that runs LinkSession itself and records the bytes on the wire.
  auto key = crypto::IdentityKey::generate(crypto::system_rng());
  uv::TcpListener listener(loop.get());
  std::unique_ptr<uv::TcpConnection> conn;
  std::optional<crypto::LinkSession> session;
  Bytes wire;
  std::vector<CircId> ids;
  std::string error;
  REQUIRE(listener
              .listen(HostPort{"127.0.0.1", 0},
                      [&](std::unique_ptr<uv::TcpConnection> c) {
                        conn = std::move(c);
                        session.emplace(crypto::LinkSession::responder(key, crypto::system_rng()));
                        conn->set_callbacks(
                            [&](ByteView data) {
                              wire.insert(wire.end(), data.begin(), data.end());
                              auto st = session->receive(data, [&](ByteView cell) {
                                auto d = decode_cell(cell);
                                ids.push_back(d.value->circ_id);
                              });
                              if (!st) error = st.error();
                              Bytes out;
                              session->take_output(out);
                              if (!out.empty()) conn->write(ByteView(out));
                            },
                            [](const std::string&) {});
                        conn->start_reading();
                      })
              .ok());
  Initiator client(loop.get(), HostPort{"127.0.0.1", listener.bound_port()}, key.public_key());
  constexpr std::size_t kCells = 300;
  client.on_established = [&] {
    for (std::size_t i = 0; i < kCells; ++i) client.channel->send(numbered_cell(static_cast<CircId>(i + 1)));
  };
  REQUIRE(loop.run_until([&] { return ids.size() == kCells || !error.empty(); }));
  CHECK(error.empty());
  for (std::size_t i = 0; i < kCells; ++i) CHECK(ids[i] == i + 1);

  // The wire after the hello: records of len u16 | sealed body (cells and a 16-byte tag).
  std::vector<std::size_t> cells_per_record;
  Reader r(ByteView(wire).subspan(crypto::kLinkHelloSize));
  std::uint16_t len = 0;
  ByteView body;
  REQUIRE(r.u16(len));
  REQUIRE(r.take(len, body));  // the authentication record
  while (r.u16(len)) {
    REQUIRE(r.take(len, body));
    REQUIRE((len - 16) % kCellSize == 0);
    cells_per_record.push_back((len - 16) / kCellSize);
  }
  CHECK(cells_per_record == std::vector<std::size_t>{127, 127, 46});
}

TEST_CASE("on_read_done follows the cells of each read, once they are all delivered") {
  test::TestLoop loop;
  Responder server(loop.get());
  Initiator client(loop.get(), server.address(), server.key.public_key());
  constexpr std::size_t kCells = 1000;
  client.on_established = [&] {
    for (std::size_t i = 0; i < kCells; ++i) client.channel->send(numbered_cell(static_cast<CircId>(i + 1)));
  };
  REQUIRE(loop.run_until([&] { return !server.cells_at_read_done.empty() && server.cells_at_read_done.back() == kCells; }));
  // Never a call without new cells, and the cells of a read come in batches (not one call per cell).
  std::size_t previous = 0;
  for (std::size_t n : server.cells_at_read_done) {
    CHECK(n > previous);
    previous = n;
  }
  CHECK(server.cells_at_read_done.size() < kCells / 2);
}

TEST_CASE("a responder that proves another identity is refused") {
  test::TestLoop loop;
  Responder server(loop.get());
  auto other = crypto::IdentityKey::generate(crypto::system_rng());
  Initiator client(loop.get(), server.address(), other.public_key());
  client.channel->send(numbered_cell(0x80000003u));
  REQUIRE(loop.run_until([&] { return client.closed && server.closed; }));
  CHECK(contains(*client.closed, "expected " + crypto::fingerprint(other.public_key())));
  CHECK_FALSE(client.established);
  CHECK(server.got.empty());
  CHECK(client.channel->queued_bytes() == 0);
}

TEST_CASE("garbage from a raw TCP client closes the link with a reason") {
  test::TestLoop loop;
  Responder server(loop.get());
  uv::TcpConnection raw(loop.get());
  bool raw_closed = false;
  raw.set_callbacks([](ByteView) {}, [&](const std::string&) { raw_closed = true; });
  raw.connect(server.address(), [&](Status st) {
    REQUIRE(st.ok());
    raw.start_reading();
    raw.write(as_bytes("GET / HTTP/1.1\r\nHost: example.com\r\n\r\nand then some more bytes"));
  });
  REQUIRE(loop.run_until([&] { return server.closed && raw_closed; }));
  CHECK(contains(*server.closed, "bad magic"));
  CHECK(server.got.empty());
}

TEST_CASE("a peer that goes away closes the link; close() sends what is queued first") {
  test::TestLoop loop;
  Responder server(loop.get());
  Initiator client(loop.get(), server.address(), server.key.public_key());
  REQUIRE(loop.run_until([&] { return server.established && client.established; }));
  client.channel->send(numbered_cell(0x80000010u));
  client.channel->send(numbered_cell(0x80000011u));
  client.channel->close();
  REQUIRE(loop.run_until([&] { return server.closed.has_value(); }));
  REQUIRE(server.got.size() == 2);
  CHECK(server.got[1].circ_id == 0x80000011u);
  CHECK(contains(*server.closed, "peer closed the connection"));
  loop.run_for(20);
  CHECK_FALSE(client.closed);  // no callbacks after close()

  // And the other way round: the responder's Channel is destroyed.
  Responder server2(loop.get());
  Initiator client2(loop.get(), server2.address(), server2.key.public_key());
  REQUIRE(loop.run_until([&] { return server2.established; }));
  server2.channel.reset();
  REQUIRE(loop.run_until([&] { return client2.closed.has_value(); }));
  CHECK(contains(*client2.closed, "peer closed the connection"));
}

TEST_CASE("a link that does not finish its handshake in time is closed") {
  test::TestLoop loop;
  Responder server(loop.get());
  server.options.handshake_timeout_ms = 100;
  uv::TcpConnection raw(loop.get());
  raw.set_callbacks([](ByteView) {}, [](const std::string&) {});
  raw.connect(server.address(), [&](Status st) {
    REQUIRE(st.ok());
    raw.start_reading();
    raw.write(as_bytes("THOR"));  // a stalled hello
  });
  uv_update_time(loop.get());
  const std::uint64_t start = uv_now(loop.get());
  REQUIRE(loop.run_until([&] { return server.closed.has_value(); }, 3000));
  CHECK(contains(*server.closed, "timed out"));
  CHECK(uv_now(loop.get()) - start < 2000);
}

TEST_CASE("a refused connection is reported from the loop, not from connect()") {
  test::TestLoop loop;
  std::uint16_t port = 0;
  {
    uv::TcpListener probe(loop.get());
    REQUIRE(probe.listen(HostPort{"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {}).ok());
    port = probe.bound_port();
  }
  loop.run_for(5);
  auto key = crypto::IdentityKey::generate(crypto::system_rng());
  Initiator client(loop.get(), HostPort{"127.0.0.1", port}, key.public_key());
  CHECK_FALSE(client.closed);
  client.channel->send(numbered_cell(0x80000001u));  // harmless on a link that will fail
  REQUIRE(loop.run_until([&] { return client.closed.has_value(); }));
  CHECK(contains(*client.closed, "connect failed"));

  Initiator bad(loop.get(), HostPort{"relay.example", 443}, key.public_key());
  CHECK_FALSE(bad.closed);
  REQUIRE(loop.run_until([&] { return bad.closed.has_value(); }));
  CHECK(contains(*bad.closed, "numeric"));
}

TEST_CASE("a Channel may be destroyed from inside its own callbacks") {
  test::TestLoop loop;
  Responder server(loop.get());
  server.on_cell = [&](Cell&) { server.channel.reset(); };
  Initiator client(loop.get(), server.address(), server.key.public_key());
  for (CircId i = 1; i <= 20; ++i) client.channel->send(numbered_cell(0x80000000u | i));
  REQUIRE(loop.run_until([&] { return client.closed.has_value(); }));
  CHECK(server.got.size() == 1);
  CHECK_FALSE(server.channel);

  Responder server2(loop.get());
  Initiator client2(loop.get(), server2.address(), server2.key.public_key());
  client2.on_established = [&] { client2.channel.reset(); };
  REQUIRE(loop.run_until([&] { return server2.closed.has_value(); }));
  CHECK_FALSE(client2.channel);
}

TEST_CASE("circuit ids carry the initiator bit of their side and avoid those in use") {
  test::TestLoop loop;
  Responder server(loop.get());
  Initiator client(loop.get(), server.address(), server.key.public_key());
  REQUIRE(loop.run_until([&] { return server.established; }));
  for (int i = 0; i < 100; ++i) {
    CircId a = client.channel->allocate_circ_id([](CircId) { return false; });
    CHECK((a & kCircIdInitiatorBit) != 0);
    CircId b = server.channel->allocate_circ_id([](CircId) { return false; });
    CHECK((b & kCircIdInitiatorBit) == 0);
    CHECK(b != 0);
  }
  // Ids in use are skipped: here every even id is taken.
  for (int i = 0; i < 20; ++i) CHECK(client.channel->allocate_circ_id([](CircId id) { return id % 2 == 0; }) % 2 == 1);
  CHECK(client.channel->allocate_circ_id([](CircId) { return true; }) == 0);
}

TEST_CASE("queued bytes drain, and a paused reader holds the sender back") {
  test::TestLoop loop;
  Responder server(loop.get());
  Initiator client(loop.get(), server.address(), server.key.public_key());
  REQUIRE(loop.run_until([&] { return server.established && client.established; }));

  int drained = 0;
  client.channel->on_drain(0, [&] { ++drained; });
  for (CircId i = 1; i <= 10; ++i) client.channel->send(numbered_cell(0x80000000u | i));
  CHECK(client.channel->queued_bytes() >= 10 * kCellSize);
  REQUIRE(loop.run_until([&] { return drained == 1; }));
  CHECK(client.channel->queued_bytes() == 0);
  REQUIRE(loop.run_until([&] { return server.got.size() == 10; }));

  server.channel->pause_reading();
  constexpr std::size_t kMany = 40000;  // about 20 MB: more than loopback buffers hold
  for (std::size_t i = 0; i < kMany; ++i) client.channel->send(numbered_cell(0x80000000u | 77));
  loop.run_for(200);
  CHECK(server.got.size() == 10);
  CHECK(client.channel->queued_bytes() > 0);  // the sender sees the back-pressure
  server.channel->resume_reading();
  REQUIRE(loop.run_until([&] { return server.got.size() == 10 + kMany; }, 20000));
  REQUIRE(loop.run_until([&] { return drained == 2; }));
}

TEST_CASE("a Channel destroyed with bytes still queued delivers them, then the link closes") {
  test::TestLoop loop;
  Responder server(loop.get());
  Initiator client(loop.get(), server.address(), server.key.public_key());
  REQUIRE(loop.run_until([&] { return server.established && client.established; }));
  server.channel->pause_reading();
  int drained = 0;
  client.channel->on_drain(1 << 20, [&] { ++drained; });  // would fire while the rest is written
  constexpr std::size_t kMany = 40000;
  for (std::size_t i = 0; i < kMany; ++i) client.channel->send(numbered_cell(0x80000000u | 5));
  loop.run_for(100);
  REQUIRE(client.channel->queued_bytes() > 0);
  client.channel.reset();  // what is queued still goes out, without calling back into the Channel
  server.channel->resume_reading();
  REQUIRE(loop.run_until([&] { return server.closed.has_value(); }, 20000));
  CHECK(server.got.size() == kMany);
  CHECK(contains(*server.closed, "peer closed the connection"));
  CHECK(drained == 0);
}
