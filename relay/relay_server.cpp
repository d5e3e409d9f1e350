// Links, control cells, forwarding and back-pressure; registration and housekeeping.
#include "relay/relay_server.hpp"

#include <algorithm>
#include <ctime>

#include "common/crypto/keys.hpp"
#include "common/crypto/ntor.hpp"
#include "common/log.hpp"
#include "relay/advertise.hpp"
#include "relay/relay_impl.hpp"

namespace thor::relay {

namespace {
std::string short_fp(const crypto::Ed25519Public& id) { return crypto::fingerprint(id).substr(0, 8); }
}  // namespace

// ---------------------------------------------------------------------------------------------
// RelayServer: the public face.

RelayServer::RelayServer(uv_loop_t* loop, Config config) : impl_(std::make_unique<Impl>(loop, std::move(config))) {}
RelayServer::~RelayServer() {
  if (impl_) impl_->stop();
}
Status RelayServer::start() { return impl_->start(); }
void RelayServer::stop() { impl_->stop(); }
std::uint16_t RelayServer::listen_port() const { return impl_->listener ? impl_->listener->bound_port() : 0; }
HostPort RelayServer::advertised_address() const { return impl_->advertised; }
dir::RelayDescriptor RelayServer::descriptor() const { return impl_->descriptor(); }
const crypto::Ed25519Public& RelayServer::identity() const { return impl_->config.identity.public_key(); }
void RelayServer::rotate_onion_key() { impl_->rotate_onion_key(); }
bool RelayServer::registered() const { return impl_->registration && impl_->registration->joined(); }
void RelayServer::on_registered(std::function<void()> cb) { impl_->registered_callbacks.push_back(std::move(cb)); }
RelayStats RelayServer::stats() const { return impl_->stats(); }

// ---------------------------------------------------------------------------------------------
// Lifecycle.

RelayServer::Impl::Impl(uv_loop_t* l, RelayConfig c)
    : loop(l), config(std::move(c)), rng(crypto::system_rng()), onion_keys(rng) {
  uv_timer_init(loop, reap_timer.get());
  reap_timer.mark_initialized();
  reap_timer.get()->data = this;
}

RelayServer::Impl::~Impl() { stop(); }

Status RelayServer::Impl::start() {
  if (running) return Error{"relay already started"};
  listener = std::make_unique<uv::TcpListener>(loop);
  if (auto st = listener->listen(config.listen, [this](std::unique_ptr<uv::TcpConnection> conn) {
        on_accept(std::move(conn));
      });
      !st) {
    listener.reset();
    return st;
  }
  auto adv = resolve_advertise(config.listen, listener->bound_port(), config.advertise);
  if (!adv) {
    listener.reset();
    return Error{adv.error()};
  }
  advertised = *adv;
  running = true;

  housekeeping_timer = std::make_unique<uv::Timer>(loop);
  auto period = std::max<std::uint64_t>(config.limits.housekeeping_interval_ms, 10);
  housekeeping_timer->start(period, period, [this] { housekeeping(); });
  if (config.onion_key_rotation_ms > 0) {
    rotation_timer = std::make_unique<uv::Timer>(loop);
    rotation_timer->start(config.onion_key_rotation_ms, config.onion_key_rotation_ms, [this] { rotate_onion_key(); });
  }
  start_registration();
  LOG_NOTICE("relay " << config.nickname << " (" << crypto::fingerprint(config.identity.public_key())
                      << ") listening on port " << listener->bound_port() << ", exit policy: "
                      << config.exit_policy.summary());
  return {};
}

void RelayServer::Impl::start_registration() {
  if (!config.directory || !running) return;
  dir::RelayRegistration::Options o;
  o.directory = *config.directory;
  o.directory_key = config.directory_key;
  o.identity = &config.identity;
  o.make_descriptor = [this] { return descriptor(); };
  registration = std::make_unique<dir::RelayRegistration>(loop, std::move(o));
  registration->on_joined([this] {
    LOG_INFO("joined the directory; descriptor published");
    for (auto& cb : registered_callbacks) cb();
  });
  registration->start();
}

void RelayServer::Impl::stop() {
  if (!running && links.empty() && !listener) {
    reap();
    reap_timer.close();
    return;
  }
  running = false;
  if (registration) {
    registration->stop();
    registration.reset();
  }
  listener.reset();
  housekeeping_timer.reset();
  rotation_timer.reset();
  std::vector<Link*> all;
  for (auto& [p, _] : links) all.push_back(p);
  for (Link* l : all) kill_link(l, DestroyReason::hibernating);
  for (auto& [p, lg] : lingering) dead_tcp.push_back(std::move(lg.tcp));
  lingering.clear();
  reap();
  reap_timer.close();
  LOG_NOTICE("relay stopped");
}

dir::RelayDescriptor RelayServer::Impl::descriptor() const {
  dir::RelayDescriptor d;
  d.identity = config.identity.public_key();
  d.onion_key = onion_keys.current().public_key;
  d.nickname = config.nickname;
  d.address = advertised;
  d.exit_policy = config.exit_policy;
  d.bandwidth = config.bandwidth;
  d.version = std::string("thor ") + THOR_VERSION;
  d.published = static_cast<std::int64_t>(std::time(nullptr));
  return d;
}

void RelayServer::Impl::rotate_onion_key() {
  onion_keys.rotate(rng);
  LOG_INFO("onion key rotated; republishing the descriptor");
  // The registration publishes make_descriptor() at each join: a fresh join carries the new key.
  if (registration) {
    registration->stop();
    registration.reset();
    start_registration();
  }
}

RelayStats RelayServer::Impl::stats() const {
  RelayStats s = counters;
  s.links = links.size();
  s.links_handshaking = handshaking;
  s.circuits = circuits.size();
  s.streams = streams.size();
  s.pending_extends = pending_extends;
  s.link_queued_bytes = 0;
  for (auto& [p, l] : links)
    if (l->channel) s.link_queued_bytes += l->channel->queued_bytes();
  s.stream_queued_bytes = 0;
  for (auto& [p, st] : streams) s.stream_queued_bytes += st->buffered();
  return s;
}

// ---------------------------------------------------------------------------------------------
// Links.

link::Channel::Callbacks RelayServer::Impl::link_callbacks(Link* link) {
  link::Channel::Callbacks cb;
  cb.on_cell = [this, link](Cell& cell) { on_link_cell(link, cell); };
  cb.on_established = [this, link] { on_link_established(link); };
  cb.on_closed = [this, link](const std::string& reason) { on_link_closed(link, reason); };
  cb.on_read_done = [this] { on_link_read_done(); };
  return cb;
}

void RelayServer::Impl::on_accept(std::unique_ptr<uv::TcpConnection> conn) {
  if (!running) return;
  if (links.size() >= config.limits.max_links) {
    LOG_WARN("refusing a link: " << links.size() << " links open (max_links)");
    return;  // conn closes as it goes out of scope
  }
  if (handshaking >= config.limits.max_pending_link_handshakes) {
    LOG_WARN("refusing a link: " << handshaking << " link handshakes pending (max_pending_link_handshakes)");
    return;
  }
  auto owned = std::make_unique<Link>();
  Link* link = owned.get();
  link->serial = next_serial++;
  link->opened_ms = link->idle_since_ms = now_ms();
  links.emplace(link, std::move(owned));
  ++handshaking;
  LOG_DEBUG("link " << link->serial << ": accepted from " << log::redact(conn->peer_address()));
  auto channel = link::Channel::accept(std::move(conn), config.identity, link_callbacks(link));
  link->channel = std::move(channel);
  if (link->dead) return;
  link->channel->on_drain(config.limits.link_queue_low, [this, link] { on_link_drained(link); });
}

Link* RelayServer::Impl::open_link(const HostPort& address, const crypto::Ed25519Public& identity) {
  auto owned = std::make_unique<Link>();
  Link* link = owned.get();
  link->serial = next_serial++;
  link->outgoing = true;
  link->identity = identity;
  link->opened_ms = link->idle_since_ms = now_ms();
  links.emplace(link, std::move(owned));
  relay_links[identity] = link;
  LOG_DEBUG("link " << link->serial << ": connecting to relay " << short_fp(identity) << " at "
                    << log::redact(address.to_string()));
  auto channel = link::Channel::connect(loop, address, identity, &config.identity, link_callbacks(link));
  link->channel = std::move(channel);
  if (!link->dead && link->channel)
    link->channel->on_drain(config.limits.link_queue_low, [this, link] { on_link_drained(link); });
  return link;
}

Link* RelayServer::Impl::find_relay_link(const crypto::Ed25519Public& identity) {
  auto it = relay_links.find(identity);
  if (it == relay_links.end() || it->second->dead) return nullptr;
  return it->second;
}

std::size_t RelayServer::Impl::circuit_limit(const Link& link) const {
  return link.identity ? config.limits.max_circuits_per_relay_link : config.limits.max_circuits_per_link;
}

void RelayServer::Impl::on_link_established(Link* link) {
  if (link->dead) return;
  link->established = true;
  link->idle_since_ms = now_ms();
  if (!link->outgoing) {
    --handshaking;
    link->identity = link->channel->peer_identity();
    // A relay that connected to us can carry our extends toward it too.
    if (link->identity && !find_relay_link(*link->identity)) relay_links[*link->identity] = link;
  }
  LOG_DEBUG("link " << link->serial << ": established ("
                    << (link->identity ? "relay " + short_fp(*link->identity) : std::string("client")) << ")");
}

void RelayServer::Impl::on_link_closed(Link* link, const std::string& reason) {
  if (link->dead) return;
  LOG_DEBUG("link " << link->serial << ": closed: " << (reason.empty() ? "by the peer" : reason));
  // Circuits that were being extended over a link that never came up learn why.
  DestroyReason toward_prev = DestroyReason::channel_closed;
  if (link->outgoing && !link->established)
    toward_prev = reason.find("identity") != std::string::npos ? DestroyReason::or_identity
                                                               : DestroyReason::connect_failed;
  if (link->outgoing && !link->established)
    LOG_WARN("link " << link->serial << " to relay " << short_fp(*link->identity) << " failed: " << reason);
  kill_link(link, toward_prev);
}

void RelayServer::Impl::on_link_read_done() { flush_outboxes(); }

void RelayServer::Impl::close_link(Link* link, const std::string& why) {
  if (link->dead) return;
  LOG_DEBUG("link " << link->serial << ": closing: " << why);
  kill_link(link, link->established ? DestroyReason::channel_closed : DestroyReason::timeout);
}

void RelayServer::Impl::kill_link(Link* link, DestroyReason toward_prev) {
  if (link->dead) return;
  link->dead = true;
  if (!link->outgoing && !link->established) --handshaking;
  if (link->identity) {
    auto it = relay_links.find(*link->identity);
    if (it != relay_links.end() && it->second == link) relay_links.erase(it);
  }
  // Stop delivering: cells already read arrive until reap closes the channel, and are ignored.
  if (link->channel && !link->paused) link->channel->pause_reading();

  std::vector<std::pair<Circuit*, bool>> refs;
  for (auto& [id, ref] : link->circuits) refs.emplace_back(ref.circuit, ref.prev_side);
  for (auto& [c, prev_side] : refs) {
    if (prev_side)
      destroy_circuit(c, DestroyReason::channel_closed, false, true);
    else
      destroy_circuit(c, toward_prev, true, false);
  }
  link->circuits.clear();

  for (Link* w : link->waiting_links) {
    w->blocked_on.erase(link);
    if (w->blocked_on.empty() && w->paused && !w->dead) {
      w->paused = false;
      w->channel->resume_reading();
    }
  }
  link->waiting_links.clear();
  for (Link* b : link->blocked_on) b->waiting_links.erase(link);
  link->blocked_on.clear();
  for (ExitStream* s : link->waiting_streams) s->blocked_on_link = false;
  link->waiting_streams.clear();

  auto it = links.find(link);
  if (it != links.end()) {
    dead_links.push_back(std::move(it->second));
    links.erase(it);
  }
  schedule_reap();
}

void RelayServer::Impl::send_cell(Link* link, const Cell& cell) {
  // A stopping relay tells nobody: its links just close, as when the process exits, and the
  // neighbours tear the circuits down with channel_closed.
  if (!running || link->dead || !link->channel) return;
  link->channel->send(cell);
  ++counters.cells_sent;
  counters.peak_link_queued_bytes = std::max(counters.peak_link_queued_bytes, link->channel->queued_bytes());
}

bool RelayServer::Impl::link_full(const Link* link) const {
  return !link->dead && link->channel && link->channel->queued_bytes() > config.limits.link_queue_high;
}

void RelayServer::Impl::block_link_on(Link* reader, Link* full) {
  if (reader->dead || full->dead) return;
  full->waiting_links.insert(reader);
  reader->blocked_on.insert(full);
  if (!reader->paused) {
    reader->paused = true;
    reader->channel->pause_reading();
    ++counters.link_pauses;
    LOG_DEBUG("link " << reader->serial << ": paused until link " << full->serial << " drains");
  }
}

void RelayServer::Impl::on_link_drained(Link* link) {
  if (link->dead) return;
  auto readers = std::move(link->waiting_links);
  link->waiting_links.clear();
  for (Link* w : readers) {
    w->blocked_on.erase(link);
    if (w->blocked_on.empty() && w->paused && !w->dead) {
      w->paused = false;
      w->channel->resume_reading();
    }
  }
  auto waiting = std::move(link->waiting_streams);
  link->waiting_streams.clear();
  for (ExitStream* s : waiting) {
    if (s->dead) continue;
    s->blocked_on_link = false;
    flush_stream(s, {});
  }
}

// ---------------------------------------------------------------------------------------------
// Cells from a link.

void RelayServer::Impl::on_link_cell(Link* link, Cell& cell) {
  if (link->dead) return;
  ++counters.cells_received;
  switch (cell.command) {
    case CellCommand::padding: return;
    case CellCommand::create: handle_create(link, cell); return;
    case CellCommand::created: handle_created(link, cell); return;
    case CellCommand::relay: handle_relay(link, cell); return;
    case CellCommand::destroy: handle_destroy(link, cell); return;
  }
}

void RelayServer::Impl::handle_create(Link* link, Cell& cell) {
  const CircId id = cell.circ_id;
  if (link->circuits.count(id)) {
    LOG_WARN("link " << link->serial << ": CREATE for circuit id " << id << " already in use; ignored");
    return;
  }
  // The side that opened the link sets the high bit on the ids it picks; the other side never does.
  const bool peer_opened = !link->channel->is_initiator();
  if (id == 0 || ((id & kCircIdInitiatorBit) != 0) != peer_opened) {
    LOG_WARN("link " << link->serial << ": CREATE with a circuit id of the wrong side; refused");
    send_cell(link, make_destroy_cell(id, DestroyReason::protocol));
    return;
  }
  if (link->circuits.size() >= circuit_limit(*link)) {
    LOG_WARN("link " << link->serial << ": CREATE refused, " << link->circuits.size() << " circuits on this link ("
                     << (link->identity ? "max_circuits_per_relay_link" : "max_circuits_per_link") << ")");
    send_cell(link, make_destroy_cell(id, DestroyReason::resource_limit));
    return;
  }
  auto body = parse_create(cell.payload);
  if (!body || body->handshake_type != kHandshakeNtorV1) {
    LOG_WARN("link " << link->serial << ": bad CREATE: "
                     << (body ? "unknown handshake type " + std::to_string(body->handshake_type) : body.error()));
    ++counters.protocol_errors;
    send_cell(link, make_destroy_cell(id, DestroyReason::protocol));
    return;
  }
  auto keys = onion_keys.usable();
  auto hs = crypto::ntor_server_handshake(config.identity.public_key(),
                                          std::span<const crypto::X25519Keypair* const>(keys.data(), keys.size()),
                                          body->handshake, rng);
  if (!hs) {
    LOG_WARN("link " << link->serial << ": CREATE handshake failed: " << hs.error());
    ++counters.protocol_errors;
    send_cell(link, make_destroy_cell(id, DestroyReason::protocol));
    return;
  }
  auto owned = std::make_unique<Circuit>();
  Circuit* c = owned.get();
  c->serial = next_serial++;
  c->prev = link;
  c->p_id = id;
  c->crypto.emplace(hs->keys);
  c->last_active_ms = now_ms();
  circuits.emplace(c, std::move(owned));
  link->circuits[id] = {c, true};
  ++counters.circuits_created;
  send_cell(link, make_created_cell(id, CreatedBody{hs->reply}));
  LOG_DEBUG("circuit " << c->serial << ": created on link " << link->serial);
}

void RelayServer::Impl::handle_created(Link* link, Cell& cell) {
  auto it = link->circuits.find(cell.circ_id);
  if (it == link->circuits.end()) return;  // the circuit went away meanwhile
  Circuit* c = it->second.circuit;
  if (it->second.prev_side || c->next_state != Circuit::Next::extending) {
    protocol_error(c, "unexpected CREATED");
    return;
  }
  auto body = parse_created(cell.payload);
  if (!body) {
    protocol_error(c, "bad CREATED from the next relay: " + body.error());
    return;
  }
  c->next_state = Circuit::Next::open;
  --pending_extends;
  c->last_active_ms = now_ms();
  send_backward(c, RelayCommand::extended, 0, encode_extended(ExtendedBody{CreatedBody{body->handshake}}));
  LOG_DEBUG("circuit " << c->serial << ": extended over link " << link->serial);
}

void RelayServer::Impl::handle_destroy(Link* link, Cell& cell) {
  auto it = link->circuits.find(cell.circ_id);
  if (it == link->circuits.end()) return;
  Circuit* c = it->second.circuit;
  auto body = parse_destroy(cell.payload);
  DestroyReason reason = body ? body->reason : DestroyReason::none;
  LOG_DEBUG("circuit " << c->serial << ": DESTROY (" << to_string(reason) << ") from the "
                       << (it->second.prev_side ? "previous" : "next") << " hop");
  if (it->second.prev_side)
    destroy_circuit(c, reason, false, true);
  else
    destroy_circuit(c, reason, true, false);
}

void RelayServer::Impl::handle_relay(Link* link, Cell& cell) {
  auto it = link->circuits.find(cell.circ_id);
  if (it == link->circuits.end()) return;  // a circuit we already tore down
  Circuit* c = it->second.circuit;
  c->last_active_ms = now_ms();
  if (it->second.prev_side) {
    if (c->crypto->decrypt_forward(cell.payload)) {
      handle_recognized(c, cell.payload);
      return;
    }
    if (c->next_state != Circuit::Next::open) {
      // The last hop could not recognize it: corrupted on the way, or forged. Tear down.
      protocol_error(c, "relay cell not recognized and no next hop (integrity check failed)");
      return;
    }
    cell.circ_id = c->n_id;
    send_cell(c->next, cell);
    if (link_full(c->next)) block_link_on(link, c->next);
  } else {
    if (c->next_state != Circuit::Next::open) {
      protocol_error(c, "RELAY cell from the next relay before CREATED");
      return;
    }
    c->crypto->encrypt_backward(cell.payload);
    cell.circ_id = c->p_id;
    send_cell(c->prev, cell);
    if (link_full(c->prev)) block_link_on(link, c->prev);
  }
}

void RelayServer::Impl::protocol_error(Circuit* c, const std::string& what) {
  ++counters.protocol_errors;
  LOG_WARN("circuit " << c->serial << ": " << what << "; destroying it");
  destroy_circuit(c, DestroyReason::protocol, true, true);
}

void RelayServer::Impl::detach_next(Circuit* c) {
  if (!c->next) return;
  c->next->circuits.erase(c->n_id);
  if (c->next->circuits.empty()) c->next->idle_since_ms = now_ms();
  if (c->next_state == Circuit::Next::extending) --pending_extends;
  c->next = nullptr;
  c->n_id = 0;
  c->next_state = Circuit::Next::none;
}

void RelayServer::Impl::destroy_circuit(Circuit* c, DestroyReason reason, bool tell_prev, bool tell_next) {
  if (c->dead) return;
  c->dead = true;
  LOG_DEBUG("circuit " << c->serial << ": destroyed (" << to_string(reason) << ")");
  if (c->prev) {
    if (tell_prev) send_cell(c->prev, make_destroy_cell(c->p_id, reason));
    c->prev->circuits.erase(c->p_id);
    if (c->prev->circuits.empty()) c->prev->idle_since_ms = now_ms();
  }
  if (c->next) {
    if (tell_next) send_cell(c->next, make_destroy_cell(c->n_id, reason));
    detach_next(c);
  }
  std::vector<ExitStream*> ss;
  for (auto& [id, s] : c->streams) ss.push_back(s);
  for (ExitStream* s : ss) kill_stream(s);
  c->streams.clear();
  ++counters.circuits_destroyed;
  auto it = circuits.find(c);
  if (it != circuits.end()) {
    dead_circuits.push_back(std::move(it->second));
    circuits.erase(it);
  }
  schedule_reap();
}

// ---------------------------------------------------------------------------------------------
// Housekeeping: timeouts, checked every housekeeping_interval_ms.

void RelayServer::Impl::housekeeping() {
  const auto now = now_ms();
  const auto& lim = config.limits;
  std::vector<Link*> ls;
  for (auto& [p, _] : links) ls.push_back(p);
  for (Link* l : ls) {
    if (l->dead) continue;
    if (!l->established && now - l->opened_ms > lim.link_handshake_timeout_ms) {
      LOG_WARN("link " << l->serial << ": handshake timed out");
      kill_link(l, DestroyReason::timeout);
    } else if (l->established && l->circuits.empty() && now - l->idle_since_ms > lim.link_idle_timeout_ms) {
      close_link(l, "idle");
    }
  }
  std::vector<Circuit*> cs;
  for (auto& [p, _] : circuits) cs.push_back(p);
  for (Circuit* c : cs) {
    if (c->dead) continue;
    if (c->next_state == Circuit::Next::extending && now > c->extend_deadline_ms) {
      LOG_WARN("circuit " << c->serial << ": extend timed out");
      destroy_circuit(c, DestroyReason::timeout, true, true);
    } else if (c->streams.empty() && now - c->last_active_ms > lim.circuit_idle_timeout_ms) {
      LOG_DEBUG("circuit " << c->serial << ": idle, destroying it");
      destroy_circuit(c, DestroyReason::finished, true, true);
    }
  }
  std::vector<ExitStream*> ss;
  for (auto& [p, _] : streams) ss.push_back(p);
  for (ExitStream* s : ss) {
    if (s->dead || s->state == ExitStream::State::open) continue;
    if (now > s->deadline_ms) {
      LOG_DEBUG("circuit " << s->circuit->serial << " stream " << s->id << ": timed out");
      end_stream(s, EndReason::timeout);
    }
  }
  std::vector<uv::TcpConnection*> expired;
  for (auto& [p, lg] : lingering)
    if (now > lg.deadline_ms) expired.push_back(p);
  for (auto* p : expired) {
    auto it = lingering.find(p);
    dead_tcp.push_back(std::move(it->second.tcp));
    lingering.erase(it);
    schedule_reap();
  }
}

void RelayServer::Impl::schedule_reap() {
  if (!reap_timer.get() || uv_is_active(reap_timer.base())) return;
  uv_timer_start(
      reap_timer.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<Impl*>(t->data)) self->reap();
      },
      0, 0);
}

void RelayServer::Impl::reap() {
  flush_outboxes();  // before any stream in the list can be freed
  // Destroying these may close handles, never call back into this object.
  auto ss = std::move(dead_streams);
  dead_streams.clear();
  auto tcps = std::move(dead_tcp);
  dead_tcp.clear();
  auto cs = std::move(dead_circuits);
  dead_circuits.clear();
  auto ls = std::move(dead_links);
  dead_links.clear();
  for (auto& l : ls)
    if (l->channel) l->channel->close();
}

}  // namespace thor::relay
