#include "common/circuit/circuit_client.hpp"

#include <utility>

#include "common/log.hpp"
#include "common/uv/handle.hpp"

namespace thor::circuit {

struct CircuitClient::Link {
  crypto::Ed25519Public identity;
  std::unique_ptr<link::Channel> channel;
  std::unordered_map<CircId, CircuitRef> circuits;
  uv::Timer idle_timer;
  bool congested = false;
  explicit Link(uv_loop_t* loop) : idle_timer(loop) {}
};

struct CircuitClient::Circuit {
  CircuitRef ref;
  ClientCircuit core;
  Link* link = nullptr;
  uv::Timer build_timer;
  // Shared so that a callback can run to its end even when it destroys the circuit.
  std::shared_ptr<CircuitCallbacks> callbacks;
  std::unordered_map<StreamId, StreamRef> streams;
  bool pumping = false;
  bool touched = false;  // in touched_
  Circuit(uv_loop_t* loop, CircuitRef r, CircId id, std::vector<HopTarget> path, crypto::Rng& rng)
      : ref(r), core(id, std::move(path), rng), build_timer(loop) {}
};

CircuitClient::CircuitClient(uv_loop_t* loop, CircuitClientOptions options)
    : loop_(loop),
      options_(options),
      rng_(options.rng ? *options.rng : crypto::system_rng()),
      alive_(std::make_shared<bool>(true)) {}

CircuitClient::~CircuitClient() {
  *alive_ = false;
  for (auto& [ref, c] : circuits_) {
    c->core.destroy(DestroyReason::requested, "the client shut down");
    flush_cells(*c);
  }
  circuits_.clear();
  streams_.clear();
  for (auto& [id, link] : links_) link->channel->close();  // sends the DESTROYs, then closes
  links_.clear();
}

CircuitRef CircuitClient::build_circuit(const std::vector<dir::ConsensusRelay>& path, CircuitCallbacks callbacks) {
  std::vector<HopTarget> hops;
  hops.reserve(path.size());
  for (const auto& relay : path)
    hops.push_back(HopTarget{relay.descriptor.identity, relay.descriptor.onion_key, relay.descriptor.address});
  return build_circuit(hops, std::move(callbacks));
}

CircuitRef CircuitClient::build_circuit(const std::vector<HopTarget>& path, CircuitCallbacks callbacks) {
  if (path.empty()) return 0;
  Link* link = link_for(path.front());
  CircId id = link->channel->allocate_circ_id([link](CircId x) { return link->circuits.count(x) != 0; });
  if (id == 0) return 0;
  const CircuitRef ref = next_circuit_++;
  auto owned = std::make_unique<Circuit>(loop_, ref, id, path, rng_);
  Circuit& c = *owned;
  circuits_.emplace(ref, std::move(owned));
  c.link = link;
  c.callbacks = std::make_shared<CircuitCallbacks>(std::move(callbacks));
  link->circuits.emplace(id, ref);
  link->idle_timer.stop();
  const std::uint64_t ms = options_.build_timeout_ms;
  c.build_timer.start(ms, 0, [this, ref, ms] {
    Circuit* c = find(ref);
    if (!c || c->core.open()) return;
    c->core.destroy(DestroyReason::timeout, "circuit build timed out after " + std::to_string(ms) + " ms");
    pump(ref);
  });
  c.core.start();
  flush_cells(c);
  LOG_DEBUG("circuit " << ref << ": building through " << path.size() << " hops");
  return ref;
}

CircuitClient::Link* CircuitClient::link_for(const HopTarget& first) {
  auto it = links_.find(first.identity);
  if (it != links_.end()) return it->second.get();
  auto owned = std::make_unique<Link>(loop_);
  Link* link = owned.get();
  link->identity = first.identity;
  link::Channel::Callbacks cbs;
  cbs.on_cell = [this, link](Cell& cell) { on_link_cell(link, cell); };
  cbs.on_closed = [this, link](const std::string& reason) { on_link_closed(link, reason); };
  cbs.on_read_done = [this] { pump_touched(); };
  link::ChannelOptions copts;
  copts.handshake_timeout_ms = options_.link_handshake_timeout_ms;
  link->channel = link::Channel::connect(loop_, first.address, first.identity, options_.identity, std::move(cbs), copts);
  link->channel->on_drain(options_.link_low_water, [this, link] { on_link_drained(link); });
  links_.emplace(first.identity, std::move(owned));
  return link;
}

void CircuitClient::on_link_cell(Link* link, Cell& cell) {
  auto it = link->circuits.find(cell.circ_id);
  if (it == link->circuits.end()) return;  // a circuit already gone; its late cells are dropped
  const CircuitRef ref = it->second;
  Circuit* c = find(ref);
  if (!c) return;
  c->core.handle_cell(cell);
  if (!c->touched) {
    c->touched = true;
    touched_.push_back(ref);
  }
}

void CircuitClient::pump_touched() {
  auto alive = alive_;
  std::vector<CircuitRef> refs;
  refs.swap(touched_);
  for (CircuitRef ref : refs) {
    Circuit* c = find(ref);
    if (!c) continue;
    c->touched = false;
    pump(ref);
    if (!*alive) return;
  }
  // Keep the capacity for the next read, unless a callback touched circuits meanwhile.
  if (touched_.empty()) {
    refs.clear();
    touched_.swap(refs);
  }
}

void CircuitClient::on_link_closed(Link* link, const std::string& reason) {
  auto alive = alive_;
  pump_touched();  // what the link delivered before it closed comes first
  if (!*alive) return;
  auto it = links_.find(link->identity);
  if (it == links_.end() || it->second.get() != link) return;
  // Out of the map first, so callbacks that build new circuits get a fresh link.
  std::unique_ptr<Link> holder = std::move(it->second);
  links_.erase(it);
  std::vector<CircuitRef> refs;
  refs.reserve(holder->circuits.size());
  for (const auto& [id, ref] : holder->circuits) refs.push_back(ref);
  holder->circuits.clear();
  for (CircuitRef ref : refs) {
    Circuit* c = find(ref);
    if (!c) continue;
    c->link = nullptr;
    c->core.link_closed(reason);
    pump(ref);
    if (!*alive) return;
  }
}

void CircuitClient::on_link_drained(Link* link) {
  auto alive = alive_;
  link->congested = false;
  std::vector<CircuitRef> refs;
  for (const auto& [id, ref] : link->circuits) refs.push_back(ref);
  for (CircuitRef ref : refs) {
    Circuit* c = find(ref);
    if (!c) continue;
    c->core.set_congested(false);
    pump(ref);
    if (!*alive) return;
  }
}

void CircuitClient::detach_from_link(Circuit& c) {
  Link* link = c.link;
  if (!link) return;
  c.link = nullptr;
  link->circuits.erase(c.core.id());
  if (!link->circuits.empty()) return;
  const crypto::Ed25519Public identity = link->identity;
  link->idle_timer.start(options_.idle_link_timeout_ms, 0, [this, identity] {
    auto it = links_.find(identity);
    if (it == links_.end() || !it->second->circuits.empty()) return;
    std::unique_ptr<Link> holder = std::move(it->second);
    links_.erase(it);
    holder->channel->close();
  });
}

void CircuitClient::flush_cells(Circuit& c) {
  scratch_.clear();
  c.core.take_cells(scratch_);
  if (scratch_.empty()) return;
  Link* link = c.link;
  if (link) {
    for (const Cell& cell : scratch_) link->channel->send(cell);
  }
  scratch_.clear();
  if (!link || link->congested || link->channel->queued_bytes() <= options_.link_high_water) return;
  // The link is full: DATA on every circuit over it waits until it drains.
  link->congested = true;
  for (const auto& [id, ref] : link->circuits)
    if (Circuit* other = find(ref)) other->core.set_congested(true);
}

// Moves a circuit's cells to its link and runs the callbacks for its events, one at a time. A
// callback may change anything, so the circuit is looked up again after each one.
void CircuitClient::pump(CircuitRef ref) {
  auto alive = alive_;
  Circuit* c = find(ref);
  if (!c) return;
  flush_cells(*c);
  if (c->pumping) return;  // an outer pump of this circuit handles the events
  c->pumping = true;
  for (;;) {
    c = find(ref);
    if (!c) return;
    flush_cells(*c);
    auto ev = c->core.next_event();
    if (!ev) {
      c->pumping = false;
      return;
    }
    dispatch(ref, *ev);
    if (!*alive) return;
  }
}

void CircuitClient::dispatch(CircuitRef ref, CircuitEvent& ev) {
  Circuit* c = find(ref);
  if (!c) return;
  using Type = CircuitEvent::Type;
  if (ev.type == Type::closed) {
    finish_closed(ref, ev);
    return;
  }
  if (ev.type == Type::built) {
    c->build_timer.stop();
    LOG_DEBUG("circuit " << ref << ": built");
    auto cbs = c->callbacks;
    if (cbs->on_built) cbs->on_built();
    return;
  }
  const StreamRef sref = stream_ref(*c, ev.stream);
  auto sit = streams_.find(sref);
  if (sit == streams_.end()) return;
  switch (ev.type) {
    case Type::stream_connected: {
      auto cbs = sit->second.callbacks;
      if (cbs->on_connected) cbs->on_connected(ev.address);
      return;
    }
    case Type::stream_data: {
      auto cbs = sit->second.callbacks;
      if (cbs->on_data) cbs->on_data(ByteView(ev.data));
      return;
    }
    case Type::stream_writable: {
      auto cbs = sit->second.callbacks;
      if (cbs->on_writable) cbs->on_writable();
      return;
    }
    case Type::stream_ended:
    case Type::stream_resolved: {
      Stream s = std::move(sit->second);
      streams_.erase(sit);
      c->streams.erase(ev.stream);
      if (s.on_resolved) {
        ResolveOutcome out;
        if (ev.type == Type::stream_resolved) {
          out.answers = std::move(ev.answers);
        } else {
          out.failed = StreamEnd{false, ev.end_reason, ev.message};
        }
        (*s.on_resolved)(out);
      } else if (s.callbacks->on_end) {
        s.callbacks->on_end(StreamEnd{false, ev.end_reason, ev.message});
      }
      return;
    }
    default:
      return;
  }
}

void CircuitClient::finish_closed(CircuitRef ref, const CircuitEvent& ev) {
  auto alive = alive_;
  auto it = circuits_.find(ref);
  if (it == circuits_.end()) return;
  std::unique_ptr<Circuit> c = std::move(it->second);
  circuits_.erase(it);
  flush_cells(*c);  // the DESTROY, if this side sends one
  detach_from_link(*c);
  LOG_DEBUG("circuit " << ref << ": closed: " << ev.message);
  std::vector<Stream> ended;
  for (const auto& [id, sref] : c->streams) {
    auto sit = streams_.find(sref);
    if (sit == streams_.end()) continue;
    ended.push_back(std::move(sit->second));
    streams_.erase(sit);
  }
  auto callbacks = c->callbacks;
  c.reset();
  const StreamEnd end{true, EndReason::destroy, "the circuit closed: " + ev.message};
  for (auto& s : ended) {
    if (s.on_resolved) {
      ResolveOutcome out;
      out.failed = end;
      (*s.on_resolved)(out);
    } else if (s.callbacks->on_end) {
      s.callbacks->on_end(end);
    }
    if (!*alive) return;
  }
  if (callbacks->on_closed) callbacks->on_closed(CircuitClosed{ev.destroy_reason, ev.message});
}

void CircuitClient::destroy_circuit(CircuitRef ref) {
  auto it = circuits_.find(ref);
  if (it == circuits_.end()) return;
  std::unique_ptr<Circuit> c = std::move(it->second);
  circuits_.erase(it);
  c->core.destroy(DestroyReason::requested, "destroyed by its owner");
  flush_cells(*c);
  detach_from_link(*c);
  for (const auto& [id, sref] : c->streams) streams_.erase(sref);
  LOG_DEBUG("circuit " << ref << ": destroyed by its owner");
}

bool CircuitClient::circuit_open(CircuitRef ref) const {
  const Circuit* c = find(ref);
  return c && c->core.open();
}

bool CircuitClient::circuit_exists(CircuitRef ref) const { return find(ref) != nullptr; }

std::size_t CircuitClient::stream_count(CircuitRef ref) const {
  const Circuit* c = find(ref);
  return c ? c->streams.size() : 0;
}

StreamRef CircuitClient::open_stream(CircuitRef ref, const HostPort& target, StreamCallbacks callbacks) {
  Circuit* c = find(ref);
  if (!c || !c->core.open()) return 0;
  StreamId id = c->core.begin_stream(target);
  if (id == 0) return 0;
  const StreamRef sref = next_stream_++;
  Stream s;
  s.circuit = ref;
  s.id = id;
  s.callbacks = std::make_shared<StreamCallbacks>(std::move(callbacks));
  streams_.emplace(sref, std::move(s));
  c->streams.emplace(id, sref);
  flush_cells(*c);
  return sref;
}

StreamRef CircuitClient::resolve(CircuitRef ref, const std::string& hostname, ResolveCallback callback) {
  Circuit* c = find(ref);
  if (!c || !c->core.open()) return 0;
  StreamId id = c->core.begin_resolve(hostname);
  if (id == 0) return 0;
  const StreamRef sref = next_stream_++;
  Stream s;
  s.circuit = ref;
  s.id = id;
  s.callbacks = std::make_shared<StreamCallbacks>();
  s.on_resolved = std::make_shared<ResolveCallback>(std::move(callback));
  streams_.emplace(sref, std::move(s));
  c->streams.emplace(id, sref);
  flush_cells(*c);
  return sref;
}

bool CircuitClient::write(StreamRef sref, ByteView data) {
  Stream* s = find_stream(sref);
  if (!s) return false;
  Circuit* c = find(s->circuit);
  if (!c) return false;
  c->core.write(s->id, data);
  flush_cells(*c);
  return c->core.writable(s->id);
}

bool CircuitClient::can_write(StreamRef sref) const {
  const Stream* s = find_stream(sref);
  if (!s) return false;
  const Circuit* c = find(s->circuit);
  return c && c->core.writable(s->id);
}

std::size_t CircuitClient::buffered_bytes(StreamRef sref) const {
  const Stream* s = find_stream(sref);
  if (!s) return 0;
  const Circuit* c = find(s->circuit);
  return c ? c->core.buffered_bytes(s->id) : 0;
}

void CircuitClient::pause_reading(StreamRef sref) {
  Stream* s = find_stream(sref);
  if (!s) return;
  if (Circuit* c = find(s->circuit)) c->core.set_receiving(s->id, false);
}

void CircuitClient::resume_reading(StreamRef sref) {
  Stream* s = find_stream(sref);
  if (!s) return;
  Circuit* c = find(s->circuit);
  if (!c) return;
  c->core.set_receiving(s->id, true);
  flush_cells(*c);
}

void CircuitClient::close_stream(StreamRef sref, EndReason reason) {
  auto it = streams_.find(sref);
  if (it == streams_.end()) return;
  const CircuitRef ref = it->second.circuit;
  const StreamId id = it->second.id;
  streams_.erase(it);
  Circuit* c = find(ref);
  if (!c) return;
  c->streams.erase(id);
  c->core.end_stream(id, reason);
  flush_cells(*c);
}

bool CircuitClient::stream_exists(StreamRef sref) const { return find_stream(sref) != nullptr; }

CircuitRef CircuitClient::stream_circuit(StreamRef sref) const {
  const Stream* s = find_stream(sref);
  return s ? s->circuit : 0;
}

CircuitClient::Circuit* CircuitClient::find(CircuitRef ref) const {
  auto it = circuits_.find(ref);
  return it == circuits_.end() ? nullptr : it->second.get();
}

CircuitClient::Stream* CircuitClient::find_stream(StreamRef ref) {
  auto it = streams_.find(ref);
  return it == streams_.end() ? nullptr : &it->second;
}

const CircuitClient::Stream* CircuitClient::find_stream(StreamRef ref) const {
  auto it = streams_.find(ref);
  return it == streams_.end() ? nullptr : &it->second;
}

StreamRef CircuitClient::stream_ref(const Circuit& c, StreamId id) const {
  auto it = c.streams.find(id);
  return it == c.streams.end() ? 0 : it->second;
}

}  // namespace thor::circuit
