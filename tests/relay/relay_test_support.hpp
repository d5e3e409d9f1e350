// Test fixtures for the relay: the shared test loop, local TCP servers (echo,
// slow sink, fast source, HTTP), a set of in-process relays, and deterministic test data.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/circuit/client_circuit.hpp"
#include "common/crypto/keys.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"
#include "relay/relay_server.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/support/test_loop.hpp"

namespace thor::relay::test {

// The loop (declare it first in a test) and running it until a condition holds, in milliseconds.
using ::thor::test::run_for;
using ::thor::test::run_until;
using ::thor::test::TestLoop;

// Deterministic data: the bytes at [offset, offset+n) of the stream named by seed.
Bytes pattern(std::uint64_t seed, std::uint64_t offset, std::size_t n);
bool matches_pattern(std::uint64_t seed, std::uint64_t offset, ByteView data);

using thor::test::EchoServer;  // tests/support/echo_server.hpp

// Reads what arrives and checks it against pattern(seed). While stalled it reads nothing; when
// bytes_per_tick > 0 it reads at most that much per 10 ms tick (a slow reader).
class SinkServer {
 public:
  SinkServer(uv_loop_t* loop, std::uint64_t seed);
  std::uint16_t port() const { return listener_.bound_port(); }
  void set_stalled(bool stalled);
  void set_rate(std::size_t bytes_per_tick) { rate_ = bytes_per_tick; }
  std::uint64_t bytes_received() const { return received_; }
  bool corrupted() const { return corrupted_; }
  bool peer_closed() const { return closed_; }

 private:
  void apply();
  uv_loop_t* loop_;
  std::uint64_t seed_;
  uv::TcpListener listener_;
  std::unique_ptr<uv::TcpConnection> conn_;
  uv::Timer tick_;
  bool stalled_ = false;
  std::size_t rate_ = 0;
  std::size_t budget_ = 0;
  std::uint64_t received_ = 0;
  bool corrupted_ = false;
  bool closed_ = false;
};

// Sends `total` bytes of pattern(seed) to each connection as fast as the socket takes them,
// then closes it.
class SourceServer {
 public:
  SourceServer(uv_loop_t* loop, std::uint64_t seed, std::uint64_t total);
  std::uint16_t port() const { return listener_.bound_port(); }
  std::uint64_t bytes_sent() const { return sent_total_; }  // over all connections

 private:
  struct Conn {
    std::unique_ptr<uv::TcpConnection> tcp;
    std::uint64_t sent = 0;
  };
  void pump(Conn& c);
  uv_loop_t* loop_;
  std::uint64_t seed_, total_;
  uv::TcpListener listener_;
  std::list<Conn> conns_;
  std::uint64_t sent_total_ = 0;
};

// Answers "GET /bytes/N" with N bytes of pattern(N) (HTTP/1.0, Content-Length, then close).
class HttpServer {
 public:
  explicit HttpServer(uv_loop_t* loop);
  std::uint16_t port() const { return listener_.bound_port(); }
  std::size_t requests() const { return requests_; }

 private:
  struct Conn {
    std::unique_ptr<uv::TcpConnection> tcp;
    std::string request;
  };
  uv_loop_t* loop_;
  uv::TcpListener listener_;
  std::list<Conn> conns_;
  std::size_t requests_ = 0;
};

// Relays running in-process on one loop, without a directory: tests hand their descriptors to the
// client directly.
class LocalRelays {
 public:
  // customize: called on each relay's config before it starts (index from 0).
  LocalRelays(uv_loop_t* loop, int count, const std::function<void(int, RelayConfig&)>& customize = {});
  ~LocalRelays();
  RelayServer& operator[](int i) { return *relays_[static_cast<std::size_t>(i)]; }
  int size() const { return static_cast<int>(relays_.size()); }
  circuit::HopTarget hop(int i) const;
  std::vector<circuit::HopTarget> path(const std::vector<int>& indices) const;
  // Sums of current state over the relays that are running.
  std::size_t circuits() const;
  std::size_t streams() const;
  void stop(int i);  // the relay goes away: its sockets close, as when the process dies

 private:
  std::vector<std::unique_ptr<RelayServer>> relays_;
  std::vector<bool> stopped_;
};

// Relay defaults for tests: loopback, port 0, an exit policy that reaches loopback servers.
RelayConfig test_relay_config();

}  // namespace thor::relay::test

#include "common/link/channel.hpp"

namespace thor::relay::test {

// A client that drives ClientCircuits over its own Channel (all through the same first relay), so
// a test can do what the circuit engine never would: corrupt a cell after the onion layers are on,
// or stop reading the link altogether.
class RawClient {
 public:
  RawClient(uv_loop_t* loop, std::vector<circuit::HopTarget> path, int circuits = 1);
  ~RawClient();
  circuit::ClientCircuit& circuit(int i = 0) { return *circuits_[static_cast<std::size_t>(i)]; }
  link::Channel& channel() { return *channel_; }
  // Sends what the circuits queued (through `tamper` when set) and collects their events.
  void pump();
  bool has_event(circuit::CircuitEvent::Type type) const;
  std::size_t count_events(circuit::CircuitEvent::Type type) const;
  const circuit::CircuitEvent* last_event(circuit::CircuitEvent::Type type) const;
  std::function<void(Cell&)> tamper;
  std::vector<circuit::CircuitEvent> events;
  std::uint64_t data_bytes = 0;  // stream_data bytes received, all streams
  bool link_closed = false;

 private:
  std::unique_ptr<link::Channel> channel_;
  std::vector<std::unique_ptr<circuit::ClientCircuit>> circuits_;
};

}  // namespace thor::relay::test

#include <optional>

#include "common/circuit/circuit_client.hpp"

namespace thor::relay::test {

// What a test watches on one circuit built with the circuit engine.
struct CircuitProbe {
  circuit::CircuitRef ref = 0;
  bool built = false;
  std::optional<circuit::CircuitClosed> closed;
  bool done() const { return built || closed.has_value(); }
};

// One stream: what it received, how it ended, and data it sends as fast as its windows allow.
struct StreamProbe {
  circuit::StreamRef ref = 0;
  bool connected = false;
  std::string address;
  Bytes received;
  std::uint64_t received_count = 0;  // counted even when keep_data is false
  bool keep_data = true;
  std::uint64_t check_seed = 0;      // when set, received bytes are checked against pattern(seed)
  bool corrupted = false;
  std::optional<circuit::StreamEnd> ended;
  // Sending: either `outgoing` (bytes) or `outgoing_total` bytes of pattern(outgoing_seed).
  Bytes outgoing;
  std::uint64_t outgoing_seed = 0, outgoing_total = 0, sent = 0;
};

std::shared_ptr<CircuitProbe> build_circuit(circuit::CircuitClient& client, const std::vector<circuit::HopTarget>& path);
// Builds a circuit and runs the loop until it is built; the test stops (REQUIRE) if it is not.
std::shared_ptr<CircuitProbe> built_circuit(uv_loop_t* loop, circuit::CircuitClient& client,
                                            const std::vector<circuit::HopTarget>& path);
std::shared_ptr<StreamProbe> open_stream(circuit::CircuitClient& client, circuit::CircuitRef circ,
                                         const HostPort& target, std::shared_ptr<StreamProbe> probe = nullptr);
// Writes what the probe still has to send while the stream takes it.
void pump_stream(circuit::CircuitClient& client, StreamProbe& probe);

// The setup most circuit tests start from: `count` relays, a client, and one circuit built through
// all of them in order. Declare it after the servers the relays reach, so that it goes first.
struct CircuitFixture {
  CircuitFixture(uv_loop_t* loop, int count, const std::function<void(int, RelayConfig&)>& customize = {},
                 const circuit::CircuitClientOptions& options = {});
  LocalRelays relays;
  circuit::CircuitClient client;
  std::shared_ptr<CircuitProbe> circ;
};

}  // namespace thor::relay::test
