#include "tests/relay/relay_test_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

namespace thor::relay::test {

namespace {
std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
std::uint8_t pattern_byte(std::uint64_t seed, std::uint64_t i) {
  return static_cast<std::uint8_t>(splitmix(seed * 0x100000001B3ull + (i >> 3)) >> (8 * (i & 7)));
}
}  // namespace

Bytes pattern(std::uint64_t seed, std::uint64_t offset, std::size_t n) {
  Bytes out(n);
  for (std::size_t k = 0; k < n; ++k) out[k] = pattern_byte(seed, offset + k);
  return out;
}

bool matches_pattern(std::uint64_t seed, std::uint64_t offset, ByteView data) {
  for (std::size_t k = 0; k < data.size(); ++k)
    if (data[k] != pattern_byte(seed, offset + k)) return false;
  return true;
}

// ---- SinkServer

SinkServer::SinkServer(uv_loop_t* loop, std::uint64_t seed) : loop_(loop), seed_(seed), listener_(loop), tick_(loop) {
  auto st = listener_.listen({"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> c) {
    conn_ = std::move(c);
    conn_->set_callbacks(
        [this](ByteView d) {
          if (!matches_pattern(seed_, received_, d)) corrupted_ = true;
          received_ += d.size();
          if (rate_ > 0) {
            budget_ = d.size() >= budget_ ? 0 : budget_ - d.size();
            if (budget_ == 0) conn_->pause_reading();
          }
        },
        [this](const std::string&) { closed_ = true; });
    budget_ = rate_;
    apply();
  });
  (void)st;
  tick_.start(10, 10, [this] {
    budget_ = rate_;
    apply();
  });
}

void SinkServer::set_stalled(bool stalled) {
  stalled_ = stalled;
  apply();
}

void SinkServer::apply() {
  if (!conn_ || conn_->closed()) return;
  bool read = !stalled_ && (rate_ == 0 || budget_ > 0);
  if (read)
    conn_->resume_reading();
  else
    conn_->pause_reading();
}

// ---- SourceServer

SourceServer::SourceServer(uv_loop_t* loop, std::uint64_t seed, std::uint64_t total)
    : loop_(loop), seed_(seed), total_(total), listener_(loop) {
  auto st = listener_.listen({"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> c) {
    conns_.push_back(Conn{std::move(c), 0});
    auto it = std::prev(conns_.end());
    Conn* conn = &*it;
    conn->tcp->set_callbacks([](ByteView) {}, [this, it](const std::string&) { conns_.erase(it); });
    conn->tcp->start_reading();
    conn->tcp->on_drain(64 * 1024, [this, conn] { pump(*conn); });
    pump(*conn);
  });
  (void)st;
}

void SourceServer::pump(Conn& c) {
  if (c.tcp->closed()) return;
  while (c.sent < total_ && c.tcp->queued_bytes() <= 64 * 1024) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(64 * 1024, total_ - c.sent));
    c.tcp->write(pattern(seed_, c.sent, n));
    c.sent += n;
    sent_total_ += n;
  }
  if (c.sent >= total_) c.tcp->close_after_writes();
}

// ---- HttpServer

HttpServer::HttpServer(uv_loop_t* loop) : loop_(loop), listener_(loop) {
  auto st = listener_.listen({"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> c) {
    conns_.push_back(Conn{std::move(c), {}});
    auto it = std::prev(conns_.end());
    Conn* conn = &*it;
    conn->tcp->set_callbacks(
        [this, conn](ByteView d) {
          conn->request.append(as_chars(d));
          auto end = conn->request.find("\r\n\r\n");
          if (end == std::string::npos) return;
          ++requests_;
          std::size_t n = 0;
          const std::string prefix = "GET /bytes/";
          std::string status = "404 Not Found";
          if (conn->request.rfind(prefix, 0) == 0) {
            n = std::strtoull(conn->request.c_str() + prefix.size(), nullptr, 10);
            status = "200 OK";
          }
          std::string head = "HTTP/1.0 " + status + "\r\nContent-Length: " + std::to_string(n) +
                             "\r\nContent-Type: application/octet-stream\r\n\r\n";
          conn->tcp->write(as_bytes(head));
          if (n) conn->tcp->write(pattern(n, 0, n));
          conn->tcp->close_after_writes();
        },
        [this, it](const std::string&) { conns_.erase(it); });
    conn->tcp->start_reading();
  });
  (void)st;
}

// ---- LocalRelays

RelayConfig test_relay_config() {
  RelayConfig c;
  c.identity = crypto::IdentityKey::generate(crypto::system_rng());
  c.listen = {"127.0.0.1", 0};
  c.exit_policy = ExitPolicy::loopback_test_exit();
  c.nickname = "testrelay";
  c.onion_key_rotation_ms = 0;
  return c;
}

LocalRelays::LocalRelays(uv_loop_t* loop, int count, const std::function<void(int, RelayConfig&)>& customize) {
  for (int i = 0; i < count; ++i) {
    RelayConfig c = test_relay_config();
    c.nickname = "relay" + std::to_string(i);
    if (customize) customize(i, c);
    relays_.push_back(std::make_unique<RelayServer>(loop, std::move(c)));
    stopped_.push_back(false);
    auto st = relays_.back()->start();
    if (!st) throw std::runtime_error("relay did not start: " + st.error());
  }
}

LocalRelays::~LocalRelays() {
  for (auto& r : relays_) r->stop();
}

circuit::HopTarget LocalRelays::hop(int i) const {
  auto d = relays_[static_cast<std::size_t>(i)]->descriptor();
  return circuit::HopTarget{d.identity, d.onion_key, d.address};
}

std::vector<circuit::HopTarget> LocalRelays::path(const std::vector<int>& indices) const {
  std::vector<circuit::HopTarget> out;
  for (int i : indices) out.push_back(hop(i));
  return out;
}

std::size_t LocalRelays::circuits() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < relays_.size(); ++i)
    if (!stopped_[i]) n += relays_[i]->stats().circuits;
  return n;
}

std::size_t LocalRelays::streams() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < relays_.size(); ++i)
    if (!stopped_[i]) n += relays_[i]->stats().streams;
  return n;
}

void LocalRelays::stop(int i) {
  stopped_[static_cast<std::size_t>(i)] = true;
  relays_[static_cast<std::size_t>(i)]->stop();
}

}  // namespace thor::relay::test

namespace thor::relay::test {

RawClient::RawClient(uv_loop_t* loop, std::vector<circuit::HopTarget> path, int circuits) {
  link::Channel::Callbacks cb;
  cb.on_cell = [this](Cell& cell) {
    for (auto& c : circuits_) {
      if (cell.circ_id != c->id()) continue;
      c->handle_cell(cell);
      pump();
      return;
    }
  };
  cb.on_closed = [this](const std::string& why) {
    link_closed = true;
    for (auto& c : circuits_) c->link_closed(why);
    pump();
  };
  channel_ = link::Channel::connect(loop, path.front().address, path.front().identity, nullptr, std::move(cb));
  for (int i = 0; i < circuits; ++i) {
    CircId id = channel_->allocate_circ_id([this](CircId x) {
      for (auto& c : circuits_)
        if (c->id() == x) return true;
      return false;
    });
    circuits_.push_back(std::make_unique<circuit::ClientCircuit>(id, path, crypto::system_rng()));
    circuits_.back()->start();
  }
  pump();
}

RawClient::~RawClient() {
  if (channel_) channel_->close();
}

void RawClient::pump() {
  std::vector<Cell> cells;
  for (auto& circ : circuits_) {
    cells.clear();
    circ->take_cells(cells);
    for (auto& c : cells) {
      if (tamper) tamper(c);
      if (!link_closed) channel_->send(c);
    }
    while (auto ev = circ->next_event()) {
      if (ev->type == circuit::CircuitEvent::Type::stream_data) {
        data_bytes += ev->data.size();
        ev->data.clear();  // counted, not kept
      }
      events.push_back(std::move(*ev));
    }
  }
}

std::size_t RawClient::count_events(circuit::CircuitEvent::Type type) const {
  std::size_t n = 0;
  for (auto& e : events) n += e.type == type;
  return n;
}

bool RawClient::has_event(circuit::CircuitEvent::Type type) const { return last_event(type) != nullptr; }

const circuit::CircuitEvent* RawClient::last_event(circuit::CircuitEvent::Type type) const {
  for (auto it = events.rbegin(); it != events.rend(); ++it)
    if (it->type == type) return &*it;
  return nullptr;
}

}  // namespace thor::relay::test

namespace thor::relay::test {

std::shared_ptr<CircuitProbe> build_circuit(circuit::CircuitClient& client, const std::vector<circuit::HopTarget>& path) {
  auto p = std::make_shared<CircuitProbe>();
  circuit::CircuitCallbacks cb;
  cb.on_built = [p] { p->built = true; };
  cb.on_closed = [p](const circuit::CircuitClosed& c) { p->closed = c; };
  p->ref = client.build_circuit(path, std::move(cb));
  return p;
}

std::shared_ptr<CircuitProbe> built_circuit(uv_loop_t* loop, circuit::CircuitClient& client,
                                            const std::vector<circuit::HopTarget>& path) {
  auto c = build_circuit(client, path);
  REQUIRE(c->ref != 0);
  REQUIRE(run_until(loop, [&] { return c->done(); }));
  REQUIRE_MESSAGE(c->built, (c->closed ? c->closed->message : std::string("not built")));
  return c;
}

namespace {
std::vector<int> first_n(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i);
  return out;
}
}  // namespace

CircuitFixture::CircuitFixture(uv_loop_t* loop, int count, const std::function<void(int, RelayConfig&)>& customize,
                               const circuit::CircuitClientOptions& options)
    : relays(loop, count, customize),
      client(loop, options),
      circ(built_circuit(loop, client, relays.path(first_n(count)))) {}

void pump_stream(circuit::CircuitClient& client, StreamProbe& p) {
  constexpr std::size_t kChunk = 32 * 1024;
  while (client.stream_exists(p.ref) && client.can_write(p.ref)) {
    if (!p.outgoing.empty()) {
      if (p.sent >= p.outgoing.size()) return;
      std::size_t n = std::min<std::size_t>(kChunk, p.outgoing.size() - p.sent);
      client.write(p.ref, ByteView(p.outgoing).subspan(p.sent, n));
      p.sent += n;
    } else {
      if (p.sent >= p.outgoing_total) return;
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, p.outgoing_total - p.sent));
      client.write(p.ref, pattern(p.outgoing_seed, p.sent, n));
      p.sent += n;
    }
  }
}

std::shared_ptr<StreamProbe> open_stream(circuit::CircuitClient& client, circuit::CircuitRef circ,
                                         const HostPort& target, std::shared_ptr<StreamProbe> probe) {
  auto p = probe ? probe : std::make_shared<StreamProbe>();
  circuit::StreamCallbacks cb;
  cb.on_connected = [p, &client](const std::string& addr) {
    p->connected = true;
    p->address = addr;
    pump_stream(client, *p);
  };
  cb.on_data = [p](ByteView d) {
    if (p->check_seed && !matches_pattern(p->check_seed, p->received_count, d)) p->corrupted = true;
    p->received_count += d.size();
    if (p->keep_data) p->received.insert(p->received.end(), d.begin(), d.end());
  };
  cb.on_end = [p](const circuit::StreamEnd& e) { p->ended = e; };
  cb.on_writable = [p, &client] { pump_stream(client, *p); };
  p->ref = client.open_stream(circ, target, std::move(cb));
  return p;
}

}  // namespace thor::relay::test
