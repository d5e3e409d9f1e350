#include "common/circuit/client_circuit.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

namespace thor::circuit {

namespace {

std::string hop_name(std::size_t index) { return "hop " + std::to_string(index + 1); }

}  // namespace

ClientCircuit::ClientCircuit(CircId id, std::vector<HopTarget> path, crypto::Rng& rng)
    : id_(id), path_(std::move(path)), rng_(rng) {
  assert(!path_.empty());
}

void ClientCircuit::start() {
  if (state_ != State::idle) return;
  state_ = State::building;
  const HopTarget& first = path_.front();
  pending_handshake_ = crypto::NtorClient::start(first.identity, first.onion_key, rng_);
  CreateBody body;
  body.handshake_type = kHandshakeNtorV1;
  body.handshake = pending_handshake_->onion_skin();
  out_.push_back(make_create_cell(id_, body));
}

void ClientCircuit::handle_cell(Cell& cell) {
  if (state_ == State::closed || state_ == State::idle) return;
  switch (cell.command) {
    case CellCommand::created:
      handle_created(cell);
      return;
    case CellCommand::relay:
      handle_relay(cell);
      return;
    case CellCommand::destroy: {
      auto body = parse_destroy(cell.payload);
      DestroyReason reason = body ? body->reason : DestroyReason::none;
      close_with(reason, std::string("a relay destroyed the circuit (") + to_string(reason) + ")");
      return;
    }
    case CellCommand::padding:
      return;
    default:
      protocol_error(std::string("unexpected ") + to_string(cell.command) + " cell from the first relay");
      return;
  }
}

void ClientCircuit::handle_created(const Cell& cell) {
  if (state_ != State::building || crypto_.hops() != 0 || !pending_handshake_) {
    protocol_error("unexpected CREATED cell");
    return;
  }
  auto body = parse_created(cell.payload);
  if (!body) {
    protocol_error("hop 1 sent a malformed CREATED: " + body.error());
    return;
  }
  auto keys = pending_handshake_->finish(ByteView(body->handshake));
  if (!keys) {
    protocol_error("hop 1 failed its handshake: " + keys.error());
    return;
  }
  crypto_.add_hop(*keys);
  extend_or_finish();
}

void ClientCircuit::extend_or_finish() {
  pending_handshake_.reset();
  if (crypto_.hops() == path_.size()) {
    state_ = State::open;
    CircuitEvent ev;
    ev.type = CircuitEvent::Type::built;
    push_event(std::move(ev));
    return;
  }
  const HopTarget& next = path_[crypto_.hops()];
  pending_handshake_ = crypto::NtorClient::start(next.identity, next.onion_key, rng_);
  ExtendBody body;
  body.address = next.address;
  body.identity = next.identity;
  body.create.handshake_type = kHandshakeNtorV1;
  body.create.handshake = pending_handshake_->onion_skin();
  send_relay(RelayCommand::extend, 0, ByteView(encode_extend(body)), last_hop());
}

void ClientCircuit::handle_relay(Cell& cell) {
  if (crypto_.hops() == 0) {
    protocol_error("RELAY cell before the first hop answered");
    return;
  }
  auto hop = crypto_.decrypt_backward(cell.payload);
  if (!hop) {
    protocol_error("a relay cell was not recognized by any hop (corrupted or forged)");
    return;
  }
  auto msg = decode_relay_view(cell.payload);
  if (!msg) {
    protocol_error(hop_name(*hop) + " sent a malformed relay message: " + msg.error());
    return;
  }
  switch (msg->command) {
    case RelayCommand::extended: {
      if (state_ != State::building || *hop != last_hop() || !pending_handshake_) {
        protocol_error("unexpected EXTENDED from " + hop_name(*hop));
        return;
      }
      const std::string next = hop_name(crypto_.hops());
      auto body = parse_extended(ByteView(msg->body));
      if (!body) {
        protocol_error(hop_name(*hop) + " sent a malformed EXTENDED: " + body.error());
        return;
      }
      auto keys = pending_handshake_->finish(ByteView(body->created.handshake));
      if (!keys) {
        protocol_error(next + " failed its handshake: " + keys.error());
        return;
      }
      crypto_.add_hop(*keys);
      extend_or_finish();
      return;
    }
    case RelayCommand::truncated: {
      auto body = parse_truncated(ByteView(msg->body));
      DestroyReason reason = body ? body->reason : DestroyReason::none;
      // The hops up to the one that truncated still hold the circuit: release them.
      out_.push_back(make_destroy_cell(id_, DestroyReason::none));
      close_with(reason, "the circuit was truncated after " + hop_name(*hop) + " (" + to_string(reason) + ")");
      return;
    }
    case RelayCommand::drop:
      return;
    case RelayCommand::data:
    case RelayCommand::connected:
    case RelayCommand::end:
    case RelayCommand::resolved:
    case RelayCommand::sendme:
      if (state_ != State::open || *hop != last_hop()) {
        protocol_error(std::string("unexpected ") + to_string(msg->command) + " from " + hop_name(*hop));
        return;
      }
      handle_stream_message(*msg);
      return;
    default:
      protocol_error(std::string("unexpected ") + to_string(msg->command) + " from " + hop_name(*hop));
      return;
  }
}

void ClientCircuit::handle_stream_message(const RelayMessageView& msg) {
  const StreamId id = msg.stream_id;
  if (msg.command == RelayCommand::sendme) {
    handle_sendme(id);
    return;
  }
  if (msg.command == RelayCommand::data) {
    handle_data(id, msg.body);
    return;
  }
  if (id == 0) {
    protocol_error(std::string(to_string(msg.command)) + " on stream 0");
    return;
  }
  auto it = streams_.find(id);
  // A stream this side already ended: the exit's late messages for it are dropped.
  if (it == streams_.end()) return;
  Stream& s = it->second;
  switch (msg.command) {
    case RelayCommand::connected: {
      if (s.resolve || s.connected) {
        protocol_error("unexpected CONNECTED on stream " + std::to_string(id));
        return;
      }
      auto body = parse_connected(ByteView(msg.body));
      if (!body) {
        protocol_error("malformed CONNECTED: " + body.error());
        return;
      }
      s.connected = true;
      CircuitEvent ev;
      ev.type = CircuitEvent::Type::stream_connected;
      ev.stream = id;
      ev.address = body->address.value_or("");
      push_event(std::move(ev));
      drain_buffer(id, s);
      return;
    }
    case RelayCommand::end: {
      auto body = parse_end(ByteView(msg.body));
      CircuitEvent ev;
      ev.type = CircuitEvent::Type::stream_ended;
      ev.stream = id;
      ev.end_reason = body ? body->reason : EndReason::misc;
      ev.message = std::string("the exit ended the stream (") + to_string(ev.end_reason) + ")";
      streams_.erase(it);
      push_event(std::move(ev));
      return;
    }
    case RelayCommand::resolved: {
      if (!s.resolve) {
        protocol_error("RESOLVED on stream " + std::to_string(id) + ", which asked no question");
        return;
      }
      auto body = parse_resolved(ByteView(msg.body));
      if (!body) {
        protocol_error("malformed RESOLVED: " + body.error());
        return;
      }
      CircuitEvent ev;
      ev.type = CircuitEvent::Type::stream_resolved;
      ev.stream = id;
      ev.answers = std::move(body->answers);
      streams_.erase(it);
      push_event(std::move(ev));
      return;
    }
    default:
      return;
  }
}

void ClientCircuit::handle_sendme(StreamId id) {
  if (id == 0) {
    if (package_window_ + kCircuitWindowIncrement > kCircuitWindowStart) {
      protocol_error("circuit SENDME beyond the window");
      return;
    }
    package_window_ += kCircuitWindowIncrement;
    package_all();
    return;
  }
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  Stream& s = it->second;
  if (s.package_window + kStreamWindowIncrement > kStreamWindowStart) {
    protocol_error("stream SENDME beyond the window on stream " + std::to_string(id));
    return;
  }
  s.package_window += kStreamWindowIncrement;
  drain_buffer(id, s);
}

void ClientCircuit::handle_data(StreamId id, ByteView body) {
  if (id == 0) {
    protocol_error("DATA on stream 0");
    return;
  }
  if (deliver_window_ <= 0) {
    protocol_error("the exit sent DATA beyond the circuit window");
    return;
  }
  --deliver_window_;
  while (deliver_window_ <= kCircuitWindowStart - kCircuitWindowIncrement) {
    send_relay(RelayCommand::sendme, 0, {}, last_hop());
    deliver_window_ += kCircuitWindowIncrement;
  }
  auto it = streams_.find(id);
  if (it == streams_.end()) return;  // a stream this side ended; the circuit window still counted it
  Stream& s = it->second;
  if (s.resolve || !s.connected) {
    protocol_error("DATA on stream " + std::to_string(id) + " before CONNECTED");
    return;
  }
  if (s.deliver_window <= 0) {
    protocol_error("the exit sent DATA beyond the window of stream " + std::to_string(id));
    return;
  }
  --s.deliver_window;
  // DATA cells in a row for one stream become one event (one write to the application).
  if (!events_.empty() && events_.back().type == CircuitEvent::Type::stream_data && events_.back().stream == id) {
    events_.back().data.insert(events_.back().data.end(), body.begin(), body.end());
  } else {
    CircuitEvent ev;
    ev.type = CircuitEvent::Type::stream_data;
    ev.stream = id;
    ev.data.assign(body.begin(), body.end());
    push_event(std::move(ev));
  }
  maybe_stream_sendme(id, s);
}

void ClientCircuit::maybe_stream_sendme(StreamId id, Stream& s) {
  if (!s.receiving || state_ != State::open) return;
  while (s.deliver_window <= kStreamWindowStart - kStreamWindowIncrement) {
    send_relay(RelayCommand::sendme, id, {}, last_hop());
    s.deliver_window += kStreamWindowIncrement;
  }
}

StreamId ClientCircuit::allocate_stream_id() {
  if (streams_.size() >= 0xFFFF) return 0;
  for (;;) {
    StreamId id = next_stream_++;
    if (next_stream_ == 0) next_stream_ = 1;
    if (id != 0 && streams_.count(id) == 0) return id;
  }
}

StreamId ClientCircuit::begin_stream(const HostPort& target, std::uint32_t flags) {
  if (state_ != State::open) return 0;
  StreamId id = allocate_stream_id();
  if (id == 0) return 0;
  streams_.emplace(id, Stream{});
  BeginBody body;
  body.target = target;
  body.flags = flags;
  send_relay(RelayCommand::begin, id, ByteView(encode_begin(body)), last_hop());
  return id;
}

StreamId ClientCircuit::begin_resolve(const std::string& hostname) {
  if (state_ != State::open) return 0;
  StreamId id = allocate_stream_id();
  if (id == 0) return 0;
  Stream s;
  s.resolve = true;
  streams_.emplace(id, std::move(s));
  ResolveBody body;
  body.hostname = hostname;
  send_relay(RelayCommand::resolve, id, ByteView(encode_resolve(body)), last_hop());
  return id;
}

void ClientCircuit::write(StreamId id, ByteView data) {
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second.resolve || data.empty()) return;
  Stream& s = it->second;
  if (s.buffered() == 0) data = data.subspan(package_from(id, s, data));
  if (data.empty()) return;
  if (s.buffer_off > 0 && s.buffer_off >= s.buffer.size() / 2) {
    s.buffer.erase(s.buffer.begin(), s.buffer.begin() + static_cast<std::ptrdiff_t>(s.buffer_off));
    s.buffer_off = 0;
  }
  s.buffer.insert(s.buffer.end(), data.begin(), data.end());
  s.blocked = true;
}

bool ClientCircuit::writable(StreamId id) const {
  auto it = streams_.find(id);
  return it != streams_.end() && !it->second.resolve && it->second.buffered() == 0 && state_ == State::open;
}

std::size_t ClientCircuit::buffered_bytes(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? 0 : it->second.buffered();
}

void ClientCircuit::set_receiving(StreamId id, bool receiving) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  it->second.receiving = receiving;
  if (receiving) maybe_stream_sendme(id, it->second);
}

void ClientCircuit::end_stream(StreamId id, EndReason reason) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  streams_.erase(it);
  if (state_ != State::open) return;
  EndBody body;
  body.reason = reason;
  send_relay(RelayCommand::end, id, ByteView(encode_end(body)), last_hop());
}

void ClientCircuit::set_congested(bool congested) {
  congested_ = congested;
  if (!congested_) package_all();
}

std::size_t ClientCircuit::package_from(StreamId id, Stream& s, ByteView data) {
  std::size_t sent = 0;
  while (sent < data.size() && s.connected && !congested_ && state_ == State::open && package_window_ > 0 &&
         s.package_window > 0) {
    std::size_t n = std::min(kRelayMaxData, data.size() - sent);
    send_data_cell(id, data.subspan(sent, n));
    --s.package_window;
    sent += n;
  }
  return sent;
}

void ClientCircuit::drain_buffer(StreamId id, Stream& s) {
  if (s.buffered() > 0) {
    s.buffer_off += package_from(id, s, ByteView(s.buffer).subspan(s.buffer_off));
    if (s.buffered() > 0) return;
    s.buffer.clear();
    s.buffer_off = 0;
  }
  if (s.blocked) {
    s.blocked = false;
    CircuitEvent ev;
    ev.type = CircuitEvent::Type::stream_writable;
    ev.stream = id;
    push_event(std::move(ev));
  }
}

// After the circuit window opens: one cell per waiting stream per round, so one busy stream does
// not starve the others.
void ClientCircuit::package_all() {
  bool progress = true;
  while (progress && !congested_ && state_ == State::open && package_window_ > 0) {
    progress = false;
    for (auto& [id, s] : streams_) {
      if (package_window_ <= 0) break;
      if (!s.connected || s.buffered() == 0 || s.package_window <= 0) continue;
      std::size_t n = std::min(kRelayMaxData, s.buffered());
      send_data_cell(id, ByteView(s.buffer).subspan(s.buffer_off, n));
      --s.package_window;
      s.buffer_off += n;
      progress = true;
      if (s.buffered() == 0) drain_buffer(id, s);
    }
  }
}

void ClientCircuit::send_relay(RelayCommand command, StreamId stream, ByteView body, std::size_t hop) {
  Cell& cell = out_.emplace_back();
  cell.circ_id = id_;
  cell.command = CellCommand::relay;
  [[maybe_unused]] Status st = encode_relay_payload(command, stream, body, cell.payload);
  assert(st.ok());  // bodies built here always fit
  crypto_.encrypt_forward(cell.payload, hop);
}

// DATA is the hot path: the header is written in place (the layout in relay_msg.hpp) and the bytes
// are copied once, straight into the cell.
void ClientCircuit::send_data_cell(StreamId stream, ByteView chunk) {
  Cell& cell = out_.emplace_back();
  cell.circ_id = id_;
  cell.command = CellCommand::relay;
  SpanWriter w(MutableByteView(cell.payload).subspan(kRelayCommandOffset));
  w.u8(static_cast<std::uint8_t>(RelayCommand::data))
      .u16(stream)
      .u16(static_cast<std::uint16_t>(chunk.size()))
      .bytes(chunk);
  assert(w.ok());
  crypto_.encrypt_forward(cell.payload, last_hop());
  --package_window_;
}

void ClientCircuit::protocol_error(const std::string& message) { destroy(DestroyReason::protocol, message); }

void ClientCircuit::destroy(DestroyReason reason, const std::string& message) {
  if (state_ == State::closed) return;
  if (state_ != State::idle) out_.push_back(make_destroy_cell(id_, reason));
  close_with(reason, message);
}

void ClientCircuit::link_closed(const std::string& why) {
  if (state_ == State::closed) return;
  close_with(DestroyReason::channel_closed, "the link to the first relay closed: " + why);
}

void ClientCircuit::close_with(DestroyReason reason, const std::string& message) {
  state_ = State::closed;
  streams_.clear();
  pending_handshake_.reset();
  CircuitEvent ev;
  ev.type = CircuitEvent::Type::closed;
  ev.destroy_reason = reason;
  ev.message = message;
  push_event(std::move(ev));
}

void ClientCircuit::take_cells(std::vector<Cell>& out) {
  if (out.empty()) {
    out.swap(out_);
  } else {
    out.insert(out.end(), out_.begin(), out_.end());
    out_.clear();
  }
}

std::optional<CircuitEvent> ClientCircuit::next_event() {
  if (events_.empty()) return std::nullopt;
  CircuitEvent ev = std::move(events_.front());
  events_.pop_front();
  return ev;
}

int ClientCircuit::stream_package_window(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? -1 : it->second.package_window;
}

int ClientCircuit::stream_deliver_window(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? -1 : it->second.deliver_window;
}

}  // namespace thor::circuit
