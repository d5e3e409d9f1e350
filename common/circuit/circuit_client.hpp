// Circuits and streams for a client (the proxy, and test clients of the relay): the thin libuv
// driver around ClientCircuit. It keeps one link per first-hop relay identity (many circuits per
// link, ids from Channel::allocate_circ_id), builds circuits with a timeout, and exposes streams.
//
// Handles are plain numbers (never 0) so that a stale handle is harmless: every call on a handle
// that is gone does nothing (or returns false/0).
//
// Callbacks run from the loop. They may call anything here, including destroy_circuit() or
// destroying the CircuitClient. Calls made by the owner (open_stream, write, close_stream,
// destroy_circuit, ...) never run callbacks of the same circuit synchronously, except where noted.
//
// Back-pressure, sending: write() always takes the bytes; can_write() turns false while a stream
// holds data that its package windows or a congested link did not let out, and on_writable says when
// to resume. Receiving: pause_reading() withholds the stream's SENDMEs, so the exit stops after one
// window (2000 cells, about 972 KB).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/bytes.hpp"
#include "common/cell/relay_msg.hpp"
#include "common/circuit/client_circuit.hpp"
#include "common/crypto/keys.hpp"
#include "common/crypto/random.hpp"
#include "common/dir/documents.hpp"
#include "common/link/channel.hpp"
#include "common/net_address.hpp"

namespace thor::circuit {

using CircuitRef = std::uint64_t;  // 0: none
using StreamRef = std::uint64_t;   // 0: none

struct CircuitClientOptions {
  std::uint64_t build_timeout_ms = 10'000;         // a circuit not built by then is destroyed
  std::uint64_t link_handshake_timeout_ms = 10'000;
  std::uint64_t idle_link_timeout_ms = 60'000;     // a link with no circuits is closed after this
  std::size_t link_high_water = 512 * 1024;        // above this many queued bytes DATA waits...
  std::size_t link_low_water = 128 * 1024;         // ...until the link drains to this
  const crypto::IdentityKey* identity = nullptr;   // proven on links; nullptr: anonymous (a proxy)
  crypto::Rng* rng = nullptr;                      // handshake randomness; nullptr: the system's
};

struct CircuitClosed {
  DestroyReason reason = DestroyReason::none;  // channel_closed, timeout, protocol, or the relay's
  std::string message;                         // for people and logs
};

struct StreamEnd {
  bool circuit_closed = false;         // the circuit died under the stream (reason is then destroy)
  EndReason reason = EndReason::misc;  // the exit's END reason (map it to a SOCKS reply)
  std::string message;
};

struct CircuitCallbacks {
  std::function<void()> on_built;
  // Once, when the circuit fails to build or dies; never after destroy_circuit(). Its streams
  // have had their on_end (circuit_closed) just before.
  std::function<void(const CircuitClosed&)> on_closed;
};

struct StreamCallbacks {
  std::function<void(const std::string& address)> on_connected;  // the IP the exit reached (may be "")
  std::function<void(ByteView data)> on_data;
  // Once: END from the exit, or the circuit died; never after close_stream() or destroy_circuit().
  std::function<void(const StreamEnd&)> on_end;
  std::function<void()> on_writable;  // buffered data went out; write more
};

struct ResolveOutcome {
  std::vector<ResolvedAnswer> answers;  // the exit's answers (which may be error types)
  std::optional<StreamEnd> failed;      // set when the exit ended the request or the circuit died
};
using ResolveCallback = std::function<void(const ResolveOutcome&)>;

class CircuitClient {
 public:
  CircuitClient(uv_loop_t* loop, CircuitClientOptions options = {});
  // Destroys every circuit (DESTROY goes out) and closes the links; no callbacks.
  ~CircuitClient();
  CircuitClient(const CircuitClient&) = delete;
  CircuitClient& operator=(const CircuitClient&) = delete;

  // Builds a circuit through `path` (first hop first; usually three relays). Returns at once;
  // on_built or on_closed follows from the loop.
  CircuitRef build_circuit(const std::vector<dir::ConsensusRelay>& path, CircuitCallbacks callbacks);
  CircuitRef build_circuit(const std::vector<HopTarget>& path, CircuitCallbacks callbacks);
  // DESTROY with reason requested; no callbacks for the circuit or its streams afterwards.
  void destroy_circuit(CircuitRef circuit);
  bool circuit_open(CircuitRef circuit) const;  // built and not closed
  bool circuit_exists(CircuitRef circuit) const;
  std::size_t stream_count(CircuitRef circuit) const;
  std::size_t circuit_count() const { return circuits_.size(); }
  std::size_t link_count() const { return links_.size(); }

  // Opens a stream to `target` (hostname or IP literal) on an open circuit: BEGIN goes out now, the
  // answer comes as on_connected or on_end. 0 when the circuit is not open.
  StreamRef open_stream(CircuitRef circuit, const HostPort& target, StreamCallbacks callbacks);
  // Sends bytes on a stream (split into 486-byte DATA cells). Returns can_write() afterwards.
  bool write(StreamRef stream, ByteView data);
  bool can_write(StreamRef stream) const;
  std::size_t buffered_bytes(StreamRef stream) const;
  void pause_reading(StreamRef stream);
  void resume_reading(StreamRef stream);
  // Sends END; no callbacks for the stream afterwards.
  void close_stream(StreamRef stream, EndReason reason = EndReason::done);
  bool stream_exists(StreamRef stream) const;
  CircuitRef stream_circuit(StreamRef stream) const;

  // Asks the exit of an open circuit to resolve a name (or a reverse name). 0 when not open.
  StreamRef resolve(CircuitRef circuit, const std::string& hostname, ResolveCallback callback);

 private:
  struct Link;
  struct Circuit;
  struct Stream {
    CircuitRef circuit = 0;
    StreamId id = 0;
    // Shared so that a callback can run to its end even when it closes its own stream.
    std::shared_ptr<StreamCallbacks> callbacks;
    std::shared_ptr<ResolveCallback> on_resolved;  // set for a resolve request
  };

  Link* link_for(const HopTarget& first);
  void on_link_cell(Link* link, Cell& cell);
  void pump_touched();
  void on_link_closed(Link* link, const std::string& reason);
  void on_link_drained(Link* link);
  void detach_from_link(Circuit& c);
  void pump(CircuitRef ref);
  void flush_cells(Circuit& c);
  void dispatch(CircuitRef ref, CircuitEvent& ev);
  void finish_closed(CircuitRef ref, const CircuitEvent& ev);
  Circuit* find(CircuitRef ref) const;
  Stream* find_stream(StreamRef ref);
  const Stream* find_stream(StreamRef ref) const;
  StreamRef stream_ref(const Circuit& c, StreamId id) const;

  uv_loop_t* loop_;
  CircuitClientOptions options_;
  crypto::Rng& rng_;
  std::map<crypto::Ed25519Public, std::unique_ptr<Link>> links_;
  std::unordered_map<CircuitRef, std::unique_ptr<Circuit>> circuits_;
  std::unordered_map<StreamRef, Stream> streams_;
  CircuitRef next_circuit_ = 1;
  StreamRef next_stream_ = 1;
  std::vector<Cell> scratch_;
  // Circuits that took cells in the current read from a link: their events run once the read's
  // cells are all in (so a stream's DATA cells of one read reach the application as one write).
  std::vector<CircuitRef> touched_;
  std::shared_ptr<bool> alive_;
};

}  // namespace thor::circuit
