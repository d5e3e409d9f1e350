// The client's side of one circuit, sans-IO: cells in, cells and events out, no sockets.
//
// Building: CREATE (ntor) to hop 1, then for each further hop an EXTEND relay cell to the hop that
// is currently last, answered by EXTENDED; every reply is checked by NtorClient (key confirmation),
// so a relay that is not the one named in the path cannot join the circuit.
//
// Streams: BEGIN / CONNECTED / DATA / END and RESOLVE / RESOLVED, all with the last hop (the exit).
// Flow control (Tor's SENDME, counted in DATA cells): a package window per circuit (2000, +200 per
// circuit SENDME) and per stream (1000, +100), and the matching deliver windows on the receive side,
// for which this side sends SENDMEs. Data the windows do not let out waits in the stream's buffer;
// writable() tells the owner when to stop feeding it and a stream_writable event when to resume.
// A stream whose receiving is paused withholds its SENDMEs, so the exit stops after one window.
//
// Anything the relays send that breaks the protocol (a relay cell no hop recognizes, a bad
// handshake reply, DATA beyond a window, ...) destroys the circuit with reason protocol; nothing
// from such a cell reaches a stream.
//
// Usage: the driver feeds handle_cell() and calls the stream methods, then sends take_cells() on
// the link and handles next_event() until it returns nothing.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/cell/cell.hpp"
#include "common/cell/relay_msg.hpp"
#include "common/crypto/keys.hpp"
#include "common/crypto/ntor.hpp"
#include "common/crypto/onion.hpp"
#include "common/crypto/random.hpp"
#include "common/net_address.hpp"

namespace thor::circuit {

// One relay of a path, as the consensus describes it.
struct HopTarget {
  crypto::Ed25519Public identity;
  crypto::X25519Public onion_key;
  HostPort address;  // numeric link address (the next hop connects there on EXTEND)
};

struct CircuitEvent {
  enum class Type {
    built,             // every hop answered; streams may be opened
    stream_connected,  // `address`: the IP the exit connected to (may be empty)
    stream_data,       // `data`: the bytes of one or more DATA cells in a row for the stream
    stream_ended,      // the exit ended the stream: `end_reason`, `message`
    stream_resolved,   // `answers`; the stream is finished
    stream_writable,   // the stream's buffered data all went out; write more
    closed,            // the circuit is gone: `destroy_reason`, `message`; the last event
  };
  Type type = Type::built;
  StreamId stream = 0;
  std::string address;
  Bytes data;
  EndReason end_reason = EndReason::misc;
  std::vector<ResolvedAnswer> answers;
  DestroyReason destroy_reason = DestroyReason::none;
  std::string message;  // for people: why a stream or the circuit ended
};

class ClientCircuit {
 public:
  enum class State { idle, building, open, closed };

  // path: first hop first, at least one. rng: the ephemeral keys of the handshakes; must outlive this.
  ClientCircuit(CircId id, std::vector<HopTarget> path, crypto::Rng& rng);

  CircId id() const { return id_; }
  State state() const { return state_; }
  bool open() const { return state_ == State::open; }
  bool closed() const { return state_ == State::closed; }
  std::size_t hops_built() const { return crypto_.hops(); }
  std::size_t path_length() const { return path_.size(); }

  // Sends CREATE to the first hop.
  void start();
  // A cell the link delivered for this circuit id. RELAY payloads are decrypted in place.
  void handle_cell(Cell& cell);

  // Opens a stream to `target` (a name or an IP literal; names are resolved at the exit). Returns
  // its id, or 0 when the circuit is not open or has no free stream id.
  StreamId begin_stream(const HostPort& target, std::uint32_t flags = 0);
  // Asks the exit to resolve `hostname` (or an in-addr.arpa / ip6.arpa name). Returns the stream id
  // that the answer (stream_resolved or stream_ended) will carry, or 0 as for begin_stream.
  StreamId begin_resolve(const std::string& hostname);
  // Sends data on a stream: as many DATA cells as the windows allow now, the rest buffered (data
  // written before CONNECTED waits for it). Unknown streams are ignored.
  void write(StreamId stream, ByteView data);
  // False while the stream holds buffered data (or does not exist): stop writing until a
  // stream_writable event.
  bool writable(StreamId stream) const;
  std::size_t buffered_bytes(StreamId stream) const;
  // Pausing withholds the stream's SENDMEs (the exit stops after its window); resuming sends them.
  void set_receiving(StreamId stream, bool receiving);
  // Ends a stream from this side (sends END). No event follows for it.
  void end_stream(StreamId stream, EndReason reason = EndReason::done);
  bool has_stream(StreamId stream) const { return streams_.count(stream) != 0; }
  std::size_t stream_count() const { return streams_.size(); }

  // The link is congested: hold DATA (control cells still go) until it is cleared.
  void set_congested(bool congested);

  // Tears the circuit down from this side: DESTROY, then a closed event with this reason.
  void destroy(DestroyReason reason, const std::string& message);
  // The link under the circuit closed: nothing can be sent; a closed event follows.
  void link_closed(const std::string& why);

  // Output: cells for the link (appended to out) and events, oldest first.
  bool has_cells() const { return !out_.empty(); }
  void take_cells(std::vector<Cell>& out);
  std::optional<CircuitEvent> next_event();

  // Windows, for tests and diagnostics.
  int package_window() const { return package_window_; }
  int deliver_window() const { return deliver_window_; }
  int stream_package_window(StreamId stream) const;
  int stream_deliver_window(StreamId stream) const;

 private:
  struct Stream {
    bool resolve = false;
    bool connected = false;
    bool receiving = true;
    bool blocked = false;  // writable() said no; a stream_writable event is owed
    int package_window = kStreamWindowStart;
    int deliver_window = kStreamWindowStart;
    Bytes buffer;          // data the windows did not let out yet
    std::size_t buffer_off = 0;
    std::size_t buffered() const { return buffer.size() - buffer_off; }
  };

  void send_relay(RelayCommand command, StreamId stream, ByteView body, std::size_t hop);
  void send_data_cell(StreamId stream, ByteView chunk);
  void extend_or_finish();
  void handle_created(const Cell& cell);
  void handle_relay(Cell& cell);
  void handle_stream_message(const RelayMessageView& msg);
  void handle_sendme(StreamId stream);
  void handle_data(StreamId stream, ByteView body);
  void protocol_error(const std::string& message);
  void close_with(DestroyReason reason, const std::string& message);
  StreamId allocate_stream_id();
  std::size_t package_from(StreamId id, Stream& s, ByteView data);
  void drain_buffer(StreamId id, Stream& s);
  void package_all();
  void maybe_stream_sendme(StreamId id, Stream& s);
  void push_event(CircuitEvent ev) { events_.push_back(std::move(ev)); }
  std::size_t last_hop() const { return crypto_.hops() - 1; }

  CircId id_;
  std::vector<HopTarget> path_;
  crypto::Rng& rng_;
  State state_ = State::idle;
  crypto::ClientCircuitCrypto crypto_;
  std::optional<crypto::NtorClient> pending_handshake_;
  std::map<StreamId, Stream> streams_;
  StreamId next_stream_ = 1;
  int package_window_ = kCircuitWindowStart;
  int deliver_window_ = kCircuitWindowStart;
  bool congested_ = false;
  std::vector<Cell> out_;
  std::deque<CircuitEvent> events_;
};

}  // namespace thor::circuit
