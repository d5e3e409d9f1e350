// RelayServer's inside, shared by the files that implement it (not part of the public API):
//   relay_server.cpp   listener, links, registration, housekeeping, cell dispatch, back-pressure
//   relay_circuit.cpp  what the recognizing hop does with relay messages (EXTEND, BEGIN, SENDME, ...)
//   exit_stream.cpp    exit streams: resolve, connect, DATA both ways, windows, END
//
// Ownership: the Impl owns every Link, Circuit and ExitStream in its maps. Objects that die are
// unlinked from every map at once and moved to a graveyard, freed on the next loop turn, so that a
// callback that killed its own object (a Channel's on_cell, a TcpConnection's on_data) never returns
// into freed memory.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "common/cell/cell.hpp"
#include "common/cell/relay_msg.hpp"
#include "common/crypto/onion.hpp"
#include "common/dir/directory_client.hpp"
#include "common/link/channel.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"
#include "relay/onion_key_ring.hpp"
#include "relay/relay_server.hpp"

namespace thor::relay {

struct Circuit;
struct ExitStream;

struct Link {
  std::uint64_t serial = 0;
  std::unique_ptr<link::Channel> channel;
  bool outgoing = false;      // we opened it (EXTEND)
  bool established = false;
  bool dead = false;
  std::optional<crypto::Ed25519Public> identity;  // expected (outgoing) or proven (incoming relay)
  std::uint64_t opened_ms = 0;
  std::uint64_t idle_since_ms = 0;  // when its last circuit went away

  struct CircRef {
    Circuit* circuit = nullptr;
    bool prev_side = false;  // this link is the circuit's previous hop (toward the client)
  };
  std::unordered_map<CircId, CircRef> circuits;

  // Back-pressure. A link stops reading while blocked_on is not empty: each entry is a link whose
  // queue was too full to take what this one would deliver. waiting_* are woken when this drains.
  bool paused = false;
  std::set<Link*> blocked_on;
  std::set<Link*> waiting_links;
  std::set<ExitStream*> waiting_streams;
};

struct Circuit {
  std::uint64_t serial = 0;
  Link* prev = nullptr;
  CircId p_id = 0;
  Link* next = nullptr;
  CircId n_id = 0;
  enum class Next { none, extending, open } next_state = Next::none;
  std::uint64_t extend_deadline_ms = 0;
  std::optional<crypto::RelayHopCrypto> crypto;
  int package_window = kCircuitWindowStart;  // DATA cells we may still originate toward the client
  int deliver_window = kCircuitWindowStart;  // DATA cells the client may still send to this hop
  std::map<StreamId, ExitStream*> streams;
  std::uint64_t last_active_ms = 0;
  bool dead = false;
};

struct ExitStream {
  std::uint64_t serial = 0;
  Circuit* circuit = nullptr;
  StreamId id = 0;
  enum class State { resolving, connecting, open, resolve_only } state = State::resolving;
  std::uint16_t port = 0;
  std::shared_ptr<void> resolve_token;
  std::vector<sockaddr_storage> candidates;  // addresses the policy allows, tried in order
  std::size_t next_candidate = 0;
  std::unique_ptr<uv::TcpConnection> tcp;
  std::uint64_t deadline_ms = 0;  // for resolving / connecting
  int package_window = kStreamWindowStart;
  int deliver_window = kStreamWindowStart;
  Bytes early_data;           // DATA that arrived before the connection was up
  Bytes outbox;               // DATA of the link read being handled, written when the read is done
  Bytes pending;              // read from TCP but not yet packaged (a window or the link was full)
  std::size_t pending_offset = 0;
  bool eof = false;           // the server side ended; END goes out once pending is sent
  EndReason eof_reason = EndReason::done;
  bool blocked_on_link = false;
  bool dead = false;

  std::size_t buffered() const {
    return (tcp ? tcp->queued_bytes() : 0) + early_data.size() + outbox.size() + (pending.size() - pending_offset);
  }
};

struct RelayServer::Impl {
  Impl(uv_loop_t* loop, RelayConfig config);
  ~Impl();

  // ---- lifecycle (relay_server.cpp)
  Status start();
  void stop();
  dir::RelayDescriptor descriptor() const;
  void rotate_onion_key();
  void start_registration();
  RelayStats stats() const;

  // ---- links (relay_server.cpp)
  void on_accept(std::unique_ptr<uv::TcpConnection> conn);
  link::Channel::Callbacks link_callbacks(Link* link);
  Link* open_link(const HostPort& address, const crypto::Ed25519Public& identity);
  Link* find_relay_link(const crypto::Ed25519Public& identity);
  // The circuit limit for this link: max_circuits_per_relay_link when the peer is a relay.
  std::size_t circuit_limit(const Link& link) const;
  void on_link_established(Link* link);
  void on_link_cell(Link* link, Cell& cell);
  void on_link_closed(Link* link, const std::string& reason);
  void on_link_read_done();
  void close_link(Link* link, const std::string& why);  // our decision (idle, timeout, stop)
  void kill_link(Link* link, DestroyReason toward_prev_circuits);
  void send_cell(Link* link, const Cell& cell);
  // Back-pressure between links.
  bool link_full(const Link* link) const;
  void block_link_on(Link* reader, Link* full);
  void watch_drain(Link* link);
  void on_link_drained(Link* link);

  // ---- control cells and forwarding (relay_server.cpp)
  void handle_create(Link* link, Cell& cell);
  void handle_created(Link* link, Cell& cell);
  void handle_destroy(Link* link, Cell& cell);
  void handle_relay(Link* link, Cell& cell);
  // Tears a circuit down: DESTROY to the sides named, every stream closed, state freed.
  void destroy_circuit(Circuit* c, DestroyReason reason, bool tell_prev, bool tell_next);
  void protocol_error(Circuit* c, const std::string& what);
  void detach_next(Circuit* c);

  // ---- the recognizing hop (relay_circuit.cpp)
  void handle_recognized(Circuit* c, const CellPayload& plain);
  void send_backward(Circuit* c, RelayCommand cmd, StreamId stream, ByteView body);
  void handle_extend(Circuit* c, const RelayMessageView& msg);
  void handle_truncate(Circuit* c, const RelayMessageView& msg);
  void handle_sendme(Circuit* c, const RelayMessageView& msg);
  void maybe_send_circuit_sendme(Circuit* c);
  std::size_t circuit_buffered(const Circuit* c) const;

  // ---- exit streams (exit_stream.cpp)
  void handle_begin(Circuit* c, const RelayMessageView& msg);
  void handle_resolve(Circuit* c, const RelayMessageView& msg);
  void handle_data(Circuit* c, const RelayMessageView& msg);
  void handle_end(Circuit* c, const RelayMessageView& msg);
  // DATA for an open exit stream goes to its outbox; the outboxes are written once the link read
  // that carried them is done (one write per stream per read, not one per cell).
  void write_to_server(ExitStream* s, ByteView data);
  void flush_outbox(ExitStream* s);
  void flush_outboxes();
  bool admit_stream(Circuit* c, StreamId id);
  ExitStream* new_stream(Circuit* c, StreamId id, ExitStream::State state);
  void on_resolved(ExitStream* s, Result<uv::Resolver::Answer> answer, const std::string& host);
  void connect_next_candidate(ExitStream* s, EndReason if_none_left);
  void on_connected(ExitStream* s);
  void on_stream_data(ExitStream* s, ByteView data);
  void on_stream_closed(ExitStream* s, const std::string& reason);
  void flush_stream(ExitStream* s, ByteView fresh);
  void update_stream_reading(ExitStream* s);
  void maybe_send_stream_sendme(ExitStream* s);
  void end_stream(ExitStream* s, EndReason reason);  // sends END, then frees
  void kill_stream(ExitStream* s);                   // frees without telling the client
  void linger(std::unique_ptr<uv::TcpConnection> tcp);

  // ---- housekeeping (relay_server.cpp)
  std::uint64_t now_ms() const { return uv_now(loop); }
  void housekeeping();
  void schedule_reap();
  void reap();

  uv_loop_t* loop;
  RelayConfig config;
  crypto::Rng& rng;
  OnionKeyRing onion_keys;
  HostPort advertised;
  bool running = false;

  std::unique_ptr<uv::TcpListener> listener;
  std::unique_ptr<dir::RelayRegistration> registration;
  std::vector<std::function<void()>> registered_callbacks;
  std::unique_ptr<uv::Timer> housekeeping_timer;
  std::unique_ptr<uv::Timer> rotation_timer;
  uv::Handle<uv_timer_t> reap_timer;

  std::unordered_map<Link*, std::unique_ptr<Link>> links;
  std::map<crypto::Ed25519Public, Link*> relay_links;  // one link per relay identity, for EXTEND
  std::unordered_map<Circuit*, std::unique_ptr<Circuit>> circuits;
  std::unordered_map<ExitStream*, std::unique_ptr<ExitStream>> streams;
  struct Lingering {
    std::unique_ptr<uv::TcpConnection> tcp;
    std::uint64_t deadline_ms = 0;
  };
  std::unordered_map<uv::TcpConnection*, Lingering> lingering;

  std::vector<std::unique_ptr<Link>> dead_links;
  std::vector<std::unique_ptr<Circuit>> dead_circuits;
  std::vector<std::unique_ptr<ExitStream>> dead_streams;
  std::vector<std::unique_ptr<uv::TcpConnection>> dead_tcp;
  std::vector<ExitStream*> outbox_streams;  // streams with a non-empty outbox (alive until reap)

  std::uint64_t next_serial = 1;
  std::size_t handshaking = 0;
  std::size_t pending_extends = 0;
  mutable RelayStats counters;  // totals and peaks; the current-state fields are computed in stats()
};

}  // namespace thor::relay
