// What the hop that recognizes a relay cell does with it: circuit-level messages (EXTEND, TRUNCATE,
// SENDME) here, stream messages in exit_stream.cpp.
#include "common/crypto/keys.hpp"
#include "common/log.hpp"
#include "relay/relay_impl.hpp"

namespace thor::relay {

void RelayServer::Impl::handle_recognized(Circuit* c, const CellPayload& plain) {
  auto msg = decode_relay_view(plain);
  if (!msg) {
    protocol_error(c, "undecodable relay message: " + msg.error());
    return;
  }
  switch (msg->command) {
    case RelayCommand::begin: handle_begin(c, *msg); return;
    case RelayCommand::data: handle_data(c, *msg); return;
    case RelayCommand::end: handle_end(c, *msg); return;
    case RelayCommand::sendme: handle_sendme(c, *msg); return;
    case RelayCommand::extend: handle_extend(c, *msg); return;
    case RelayCommand::truncate: handle_truncate(c, *msg); return;
    case RelayCommand::resolve: handle_resolve(c, *msg); return;
    case RelayCommand::drop: return;
    case RelayCommand::connected:
    case RelayCommand::extended:
    case RelayCommand::truncated:
    case RelayCommand::resolved:
      break;
  }
  protocol_error(c, std::string("relay command ") + to_string(msg->command) + " is not one a client sends");
}

void RelayServer::Impl::send_backward(Circuit* c, RelayCommand cmd, StreamId stream, ByteView body) {
  if (c->dead || !c->prev) return;
  Cell cell;
  cell.circ_id = c->p_id;
  cell.command = CellCommand::relay;
  if (auto st = encode_relay_payload(cmd, stream, body, cell.payload); !st) {
    LOG_ERROR("circuit " << c->serial << ": cannot encode " << to_string(cmd) << ": " << st.error());
    return;
  }
  c->crypto->originate_backward(cell.payload);
  send_cell(c->prev, cell);
}

void RelayServer::Impl::handle_extend(Circuit* c, const RelayMessageView& msg) {
  if (msg.stream_id != 0) {
    protocol_error(c, "EXTEND on a stream");
    return;
  }
  if (c->next_state != Circuit::Next::none) {
    protocol_error(c, "EXTEND on a circuit that already has a next hop");
    return;
  }
  auto body = parse_extend(msg.body);
  if (!body) {
    protocol_error(c, "bad EXTEND: " + body.error());
    return;
  }
  if (body->identity == config.identity.public_key()) {
    protocol_error(c, "EXTEND to this relay itself");
    return;
  }
  if (!is_ipv4_literal(body->address.host) && !is_ipv6_literal(body->address.host)) {
    protocol_error(c, "EXTEND to a non-numeric address");
    return;
  }
  if (pending_extends >= config.limits.max_pending_extends) {
    LOG_WARN("circuit " << c->serial << ": EXTEND refused, " << pending_extends
                        << " extends pending (max_pending_extends)");
    destroy_circuit(c, DestroyReason::resource_limit, true, false);
    return;
  }
  Link* link = find_relay_link(body->identity);
  if (!link) link = open_link(body->address, body->identity);
  if (link->dead) {
    destroy_circuit(c, DestroyReason::connect_failed, true, false);
    return;
  }
  if (link->circuits.size() >= circuit_limit(*link)) {
    LOG_WARN("circuit " << c->serial << ": EXTEND refused, next link is full (max_circuits_per_relay_link)");
    destroy_circuit(c, DestroyReason::resource_limit, true, false);
    return;
  }
  CircId id = link->channel->allocate_circ_id([link](CircId x) { return link->circuits.count(x) != 0; });
  if (id == 0) {
    destroy_circuit(c, DestroyReason::resource_limit, true, false);
    return;
  }
  link->circuits[id] = {c, false};
  c->next = link;
  c->n_id = id;
  c->next_state = Circuit::Next::extending;
  c->extend_deadline_ms = now_ms() + config.limits.extend_timeout_ms;
  ++pending_extends;
  send_cell(link, make_create_cell(id, body->create));
  LOG_DEBUG("circuit " << c->serial << ": extending to relay " << crypto::fingerprint(body->identity).substr(0, 8)
                       << " over link " << link->serial);
}

void RelayServer::Impl::handle_truncate(Circuit* c, const RelayMessageView& msg) {
  if (msg.stream_id != 0) {
    protocol_error(c, "TRUNCATE on a stream");
    return;
  }
  if (c->next) {
    send_cell(c->next, make_destroy_cell(c->n_id, DestroyReason::requested));
    detach_next(c);
  }
  send_backward(c, RelayCommand::truncated, 0, encode_truncated(TruncatedBody{DestroyReason::requested}));
  LOG_DEBUG("circuit " << c->serial << ": truncated at the client's request");
}

void RelayServer::Impl::handle_sendme(Circuit* c, const RelayMessageView& msg) {
  if (msg.stream_id == 0) {
    c->package_window += kCircuitWindowIncrement;
    if (c->package_window > kCircuitWindowStart) {
      protocol_error(c, "circuit SENDME beyond the window");
      return;
    }
    std::vector<ExitStream*> ss;
    for (auto& [id, s] : c->streams) ss.push_back(s);
    for (ExitStream* s : ss)
      if (!s->dead && !c->dead) flush_stream(s, {});
    return;
  }
  auto it = c->streams.find(msg.stream_id);
  if (it == c->streams.end()) return;  // crossed an END
  ExitStream* s = it->second;
  s->package_window += kStreamWindowIncrement;
  if (s->package_window > kStreamWindowStart) {
    protocol_error(c, "stream SENDME beyond the window");
    return;
  }
  flush_stream(s, {});
}

std::size_t RelayServer::Impl::circuit_buffered(const Circuit* c) const {
  std::size_t n = 0;
  for (auto& [id, s] : c->streams) n += s->buffered();
  return n;
}

void RelayServer::Impl::maybe_send_circuit_sendme(Circuit* c) {
  // Held back while the circuit's streams hold too much unsent data: the client's circuit window
  // then runs out and it stops sending to this hop.
  while (!c->dead && c->deliver_window <= kCircuitWindowStart - kCircuitWindowIncrement) {
    if (circuit_buffered(c) > config.limits.circuit_queue_high) return;
    c->deliver_window += kCircuitWindowIncrement;
    send_backward(c, RelayCommand::sendme, 0, {});
  }
}

}  // namespace thor::relay
