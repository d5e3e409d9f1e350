#include "tests/link/fake_relay_chain.hpp"

#include <algorithm>
#include <span>

#include "common/crypto/ntor.hpp"

namespace thor::test {

std::vector<FakeRelay> make_fake_relays(std::size_t n, std::uint64_t seed, std::uint16_t port) {
  crypto::DeterministicRng rng(seed);
  std::vector<FakeRelay> out;
  for (std::size_t i = 0; i < n; ++i) {
    FakeRelay r{crypto::IdentityKey::generate(rng), crypto::X25519Keypair::generate(rng),
                HostPort{"127.0.0.1", static_cast<std::uint16_t>(port + i)}};
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<circuit::HopTarget> hop_targets(const std::vector<FakeRelay>& relays) {
  std::vector<circuit::HopTarget> out;
  for (const auto& r : relays) out.push_back({r.identity.public_key(), r.onion.public_key, r.address});
  return out;
}

std::vector<dir::ConsensusRelay> consensus_path(const std::vector<FakeRelay>& relays) {
  std::vector<dir::ConsensusRelay> out;
  for (const auto& r : relays) {
    dir::ConsensusRelay c;
    c.descriptor.identity = r.identity.public_key();
    c.descriptor.onion_key = r.onion.public_key;
    c.descriptor.address = r.address;
    c.fingerprint = crypto::fingerprint(r.identity.public_key());
    out.push_back(std::move(c));
  }
  return out;
}

FakeCircuit::FakeCircuit(const std::vector<FakeRelay>& relays, CircId id, FakeExitOptions options, std::uint64_t seed)
    : relays_(relays), id_(id), options_(std::move(options)), rng_(seed) {}

std::vector<Cell> FakeCircuit::take_replies() {
  std::vector<Cell> out;
  out.swap(replies_);
  return out;
}

std::size_t FakeCircuit::exit_buffered(StreamId stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? 0 : it->second.pending.size() - it->second.pending_off;
}

void FakeCircuit::send_destroy(DestroyReason reason) {
  destroyed_ = true;
  replies_.push_back(make_destroy_cell(id_, reason));
}

void FakeCircuit::receive(const Cell& cell) {
  if (destroyed_) return;
  switch (cell.command) {
    case CellCommand::create: {
      if (!options_.answer_create || !hops_.empty()) return;
      auto body = parse_create(cell.payload);
      const crypto::X25519Keypair* keys[] = {&relays_[0].onion};
      if (!body) {
        protocol_error_ = true;
        send_destroy(DestroyReason::protocol);
        return;
      }
      auto r = crypto::ntor_server_handshake(relays_[0].identity.public_key(), std::span(keys),
                                             ByteView(body->handshake), rng_);
      if (!r) {
        protocol_error_ = true;
        send_destroy(DestroyReason::protocol);
        return;
      }
      hops_.emplace_back(r->keys);
      CreatedBody created;
      created.handshake = r->reply;
      replies_.push_back(make_created_cell(id_, created));
      return;
    }
    case CellCommand::destroy: {
      destroyed_ = true;
      auto body = parse_destroy(cell.payload);
      destroy_received_ = body ? body->reason : DestroyReason::none;
      return;
    }
    case CellCommand::relay: {
      Cell c = cell;
      for (std::size_t i = 0; i < hops_.size(); ++i) {
        if (!hops_[i].decrypt_forward(c.payload)) continue;
        auto msg = decode_relay_payload(c.payload);
        if (!msg) break;
        handle(i, *msg);
        return;
      }
      // No hop recognized it (or it did not parse): a relay tears the circuit down.
      protocol_error_ = true;
      send_destroy(DestroyReason::protocol);
      return;
    }
    default:
      return;
  }
}

void FakeCircuit::originate(std::size_t hop, const RelayMessage& msg) {
  Cell c;
  c.circ_id = id_;
  c.command = CellCommand::relay;
  [[maybe_unused]] Status st = encode_relay_payload(msg, c.payload);
  hops_[hop].originate_backward(c.payload);
  for (std::size_t j = hop; j-- > 0;) hops_[j].encrypt_backward(c.payload);
  replies_.push_back(c);
}

void FakeCircuit::send_from_hop(std::size_t hop, const RelayMessage& msg) { originate(hop, msg); }

void FakeCircuit::handle(std::size_t hop, const RelayMessage& msg) {
  if (msg.command == RelayCommand::extend) {
    auto body = parse_extend(ByteView(msg.body));
    if (!body || hop + 1 != hops_.size() || hop + 1 >= relays_.size()) {
      protocol_error_ = true;
      send_destroy(DestroyReason::protocol);
      return;
    }
    const FakeRelay& next = relays_[hop + 1];
    const crypto::X25519Keypair* keys[] = {&next.onion};
    auto r = body->identity == next.identity.public_key()
                 ? crypto::ntor_server_handshake(next.identity.public_key(), std::span(keys),
                                                 ByteView(body->create.handshake), rng_)
                 : Result<crypto::NtorServerResult>(Error{"wrong identity"});
    if (!r) {
      TruncatedBody t;
      t.reason = DestroyReason::or_identity;
      originate(hop, RelayMessage{RelayCommand::truncated, 0, encode_truncated(t)});
      return;
    }
    hops_.emplace_back(r->keys);
    ExtendedBody ext;
    ext.created.handshake = r->reply;
    originate(hop, RelayMessage{RelayCommand::extended, 0, encode_extended(ext)});
    return;
  }
  if (hop + 1 != relays_.size()) {
    protocol_error_ = true;
    send_destroy(DestroyReason::protocol);
    return;
  }
  const StreamId id = msg.stream_id;
  switch (msg.command) {
    case RelayCommand::begin: {
      auto body = parse_begin(ByteView(msg.body));
      if (!body) return;
      begins_[id] = body->target;
      if (options_.refuse_begin) {
        EndBody end;
        end.reason = *options_.refuse_begin;
        originate(hop, RelayMessage{RelayCommand::end, id, encode_end(end)});
        return;
      }
      streams_[id] = ExitStream{};
      ConnectedBody connected;
      connected.address = options_.connected_address;
      connected.ttl = 300;
      originate(hop, RelayMessage{RelayCommand::connected, id, encode_connected(connected)});
      return;
    }
    case RelayCommand::data: {
      ++data_cells_;
      auto& got = received_[id];
      got.insert(got.end(), msg.body.begin(), msg.body.end());
      --deliver_window_;
      if (options_.send_sendmes && deliver_window_ <= kCircuitWindowStart - kCircuitWindowIncrement) {
        originate(hop, RelayMessage{RelayCommand::sendme, 0, {}});
        deliver_window_ += kCircuitWindowIncrement;
      }
      auto it = streams_.find(id);
      if (it == streams_.end()) return;
      --it->second.deliver_window;
      if (options_.send_sendmes && it->second.deliver_window <= kStreamWindowStart - kStreamWindowIncrement) {
        originate(hop, RelayMessage{RelayCommand::sendme, id, {}});
        it->second.deliver_window += kStreamWindowIncrement;
      }
      if (options_.echo) exit_send(id, ByteView(msg.body));
      return;
    }
    case RelayCommand::sendme:
      if (id == 0) {
        ++circuit_sendmes_;
        package_window_ += kCircuitWindowIncrement;
      } else {
        ++stream_sendmes_;
        auto it = streams_.find(id);
        if (it != streams_.end()) it->second.package_window += kStreamWindowIncrement;
      }
      package();
      return;
    case RelayCommand::end: {
      auto body = parse_end(ByteView(msg.body));
      ends_[id] = body ? body->reason : EndReason::misc;
      streams_.erase(id);
      return;
    }
    case RelayCommand::resolve: {
      ResolvedBody answer;
      answer.answers = options_.resolve_answers;
      originate(hop, RelayMessage{RelayCommand::resolved, id, encode_resolved(answer)});
      return;
    }
    default:
      return;
  }
}

void FakeCircuit::exit_send(StreamId stream, ByteView data) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  it->second.pending.insert(it->second.pending.end(), data.begin(), data.end());
  package();
}

void FakeCircuit::exit_end(StreamId stream, EndReason reason) {
  EndBody end;
  end.reason = reason;
  originate(hops_.size() - 1, RelayMessage{RelayCommand::end, stream, encode_end(end)});
  streams_.erase(stream);
}

void FakeCircuit::package() {
  for (auto& [id, s] : streams_) {
    while (package_window_ > 0 && s.package_window > 0 && s.pending_off < s.pending.size()) {
      std::size_t n = std::min(kRelayMaxData, s.pending.size() - s.pending_off);
      RelayMessage msg{RelayCommand::data, id, Bytes(s.pending.begin() + static_cast<std::ptrdiff_t>(s.pending_off),
                                                     s.pending.begin() + static_cast<std::ptrdiff_t>(s.pending_off + n))};
      originate(hops_.size() - 1, msg);
      s.pending_off += n;
      --package_window_;
      --s.package_window;
    }
    if (s.pending_off == s.pending.size()) {
      s.pending.clear();
      s.pending_off = 0;
    }
  }
}

}  // namespace thor::test
