// Flow control and back-pressure: a fast sender and a slow reader never grow a relay's queues
// beyond the configured bounds (plus what one socket read can add), and every byte still arrives.
#include <doctest/doctest.h>

#include <algorithm>

#include "tests/relay/relay_test_support.hpp"

using namespace thor;
using namespace thor::relay;
using namespace thor::relay::test;

namespace {
HostPort local(std::uint16_t port) { return {"127.0.0.1", port}; }

// One socket read (uv::kMaxReadSize of stream data) becomes up to that many bytes over 486 cells of
// 514 bytes, all queued before anyone can look.
constexpr std::size_t kReadSlack = (uv::kMaxReadSize / kRelayMaxData + 1) * kCellSize;
// A stream's window: what the other side may send before it must wait for a SENDME.
constexpr std::size_t kStreamWindowBytes = kStreamWindowStart * kRelayMaxData;

std::size_t max_peak_link(LocalRelays& r) {
  std::size_t m = 0;
  for (int i = 0; i < r.size(); ++i) m = std::max(m, r[i].stats().peak_link_queued_bytes);
  return m;
}
std::size_t max_peak_stream(LocalRelays& r) {
  std::size_t m = 0;
  for (int i = 0; i < r.size(); ++i) m = std::max(m, r[i].stats().peak_stream_queued_bytes);
  return m;
}
}  // namespace

TEST_CASE("a slow server under 50 MB from the client: the exit holds at most its bounds") {
  TestLoop L;
  SinkServer sink(L.get(), 21);
  sink.set_stalled(true);
  const RelayLimits lim;
  CircuitFixture net(L.get(), 3);

  const std::uint64_t total = 50ull * 1024 * 1024;
  auto s = std::make_shared<StreamProbe>();
  s->outgoing_seed = 21;
  s->outgoing_total = total;
  open_stream(net.client, net.circ->ref, local(sink.port()), s);
  REQUIRE(run_until(L.get(), [&] { return s->connected; }));

  // The server reads nothing for a while: the client must end up blocked by the windows, and
  // the exit must hold no more than its stream bound plus one window.
  CHECK(run_until(L.get(), [&] { return !net.client.can_write(s->ref); }, 20'000));
  run_for(L.get(), 500);  // whatever was still in flight lands
  auto exit = net.relays[2].stats();
  INFO("exit holds " << exit.stream_queued_bytes << " bytes, peak " << exit.peak_stream_queued_bytes);
  CHECK(exit.stream_queued_bytes <= lim.stream_queue_high + kStreamWindowBytes);
  CHECK(s->sent < total / 4);

  // Then it reads slowly (about 20 MB/s) until everything has arrived, intact.
  sink.set_rate(200 * 1024);
  sink.set_stalled(false);
  REQUIRE(run_until(L.get(), [&] { return sink.bytes_received() >= total || s->ended.has_value(); }, 90'000));
  CHECK(sink.bytes_received() == total);
  CHECK(!sink.corrupted());
  CHECK(max_peak_stream(net.relays) <= lim.stream_queue_high + kStreamWindowBytes + kReadSlack);
  CHECK(max_peak_link(net.relays) <= lim.link_queue_high + kReadSlack);
  CHECK(net.relays[2].stats().exit_bytes_written == total);
}

TEST_CASE("a slow client under a fast server: the exit stops reading instead of queueing") {
  TestLoop L;
  const std::uint64_t total = 20ull * 1024 * 1024;
  SourceServer source(L.get(), 33, total);
  const RelayLimits lim;
  CircuitFixture net(L.get(), 3);
  auto s = std::make_shared<StreamProbe>();
  s->keep_data = false;
  s->check_seed = 33;
  open_stream(net.client, net.circ->ref, local(source.port()), s);
  REQUIRE(run_until(L.get(), [&] { return s->connected; }));
  net.client.pause_reading(s->ref);  // withholds SENDMEs: the exit may send one window, then waits
  const std::uint64_t at_pause = s->received_count;

  CHECK(run_until(L.get(), [&] { return net.relays[2].stats().stream_pauses >= 1; }, 20'000));
  run_for(L.get(), 500);
  CHECK(s->received_count - at_pause <= kStreamWindowBytes);
  auto exit = net.relays[2].stats();
  CHECK(exit.stream_queued_bytes <= uv::kMaxReadSize);  // at most one read waits for the window
  CHECK(source.bytes_sent() < total);

  net.client.resume_reading(s->ref);
  REQUIRE(run_until(L.get(), [&] { return s->received_count >= total || s->ended.has_value(); }, 60'000));
  CHECK(s->received_count == total);
  CHECK(!s->corrupted);
  CHECK(max_peak_stream(net.relays) <= uv::kMaxReadSize + kReadSlack);
  CHECK(max_peak_link(net.relays) <= lim.link_queue_high + kReadSlack);
}

TEST_CASE("a client that stops reading its link: every relay stops reading from the next") {
  TestLoop L;
  // Many circuits on one client link, each with a stream from a fast server: together their
  // windows allow far more than the socket buffers hold, so only back-pressure can bound the queues.
  const int circuits = 24;
  const std::uint64_t per_stream = 1024 * 1024;
  SourceServer source(L.get(), 44, per_stream);
  RelayLimits lim;
  lim.link_queue_high = 32 * 1024;
  lim.link_queue_low = 8 * 1024;
  LocalRelays relays(L.get(), 3, [&](int, RelayConfig& c) { c.limits = lim; });
  RawClient raw(L.get(), relays.path({0, 1, 2}), circuits);
  using T = circuit::CircuitEvent::Type;
  REQUIRE(run_until(L.get(), [&] { return raw.count_events(T::built) + raw.count_events(T::closed) == circuits; }));
  REQUIRE(raw.count_events(T::built) == circuits);
  for (int i = 0; i < circuits; ++i) raw.circuit(i).begin_stream(local(source.port()));
  raw.channel().pause_reading();  // the CONNECTEDs and the data pile up in front of the client
  raw.pump();

  CHECK(run_until(
      L.get(), [&] { return relays[0].stats().link_pauses >= 1 && relays[1].stats().link_pauses >= 1; }, 20'000));
  run_for(L.get(), 500);
  auto guard = relays[0].stats();
  INFO("guard queued " << guard.link_queued_bytes << ", peak " << guard.peak_link_queued_bytes);
  CHECK(max_peak_link(relays) <= lim.link_queue_high + kReadSlack);
  CHECK(raw.data_bytes == 0);

  raw.channel().resume_reading();
  const std::uint64_t total = per_stream * circuits;
  REQUIRE(run_until(L.get(), [&] { return raw.data_bytes >= total || raw.has_event(T::closed); }, 60'000));
  CHECK(raw.data_bytes == total);
  CHECK(max_peak_link(relays) <= lim.link_queue_high + kReadSlack);
}
