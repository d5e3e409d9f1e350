// A link: one TCP connection carrying cells between two nodes, through a LinkSession (the
// authenticated, encrypted thor-link-v2 channel). Used by relays (both directions) and the proxy.
//
// Cells sent in one loop iteration are batched into as few records and writes as possible.
// Back-pressure: queued_bytes() tells how much is waiting for the socket; the owner stops reading
// its sources above a bound and resumes in on_drain.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/cell/cell.hpp"
#include "common/crypto/keys.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"
#include "common/uv/tcp.hpp"

namespace thor::link {

// Settings shared by both ends of a link (kept outside Channel so it can be a default argument).
struct ChannelOptions {
  // A link that has not finished its handshake this long after it started is closed.
  std::uint64_t handshake_timeout_ms = 10'000;
};

class Channel {
 public:
  using Options = ChannelOptions;
  struct Callbacks {
    std::function<void(Cell& cell)> on_cell;                 // a decoded cell from the peer
    std::function<void()> on_established;                    // handshake done, peer proven
    std::function<void(const std::string& reason)> on_closed;  // once, for any end but close()
    // After the cells of one read from the socket have all been passed to on_cell (optional): the
    // point to act once on what a batch of cells produced (one write of a stream's data instead of
    // one per cell).
    std::function<void()> on_read_done;
  };

  // Opens a link to the relay at `address` (numeric), which must prove `expected_identity`.
  // own: a relay's identity (it proves it to the peer); nullptr for a proxy (anonymous).
  static std::unique_ptr<Channel> connect(uv_loop_t* loop, const HostPort& address,
                                          const crypto::Ed25519Public& expected_identity,
                                          const crypto::IdentityKey* own, Callbacks callbacks,
                                          ChannelOptions options = {});
  // Takes over an accepted connection; this side proves `own`.
  static std::unique_ptr<Channel> accept(std::unique_ptr<uv::TcpConnection> conn,
                                         const crypto::IdentityKey& own, Callbacks callbacks,
                                         ChannelOptions options = {});

  virtual ~Channel() = default;

  // Queues a cell. Never calls back synchronously: failures are reported through on_closed from
  // the loop, so a caller may keep using the Channel after send() returns.
  virtual void send(const Cell& cell) = 0;
  // Cells queued and not yet written, plus what the socket has not taken.
  virtual std::size_t queued_bytes() const = 0;
  // on_drain: cb runs (from the loop) each time queued_bytes() falls to low_water or below after
  // having been above it.
  virtual void on_drain(std::size_t low_water, std::function<void()> cb) = 0;
  // Stops reading the socket (cells already read in this callback round are still delivered).
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;

  virtual bool established() const = 0;
  virtual bool is_initiator() const = 0;
  // For an initiator: the responder's identity (as expected). For a responder: the initiator's
  // identity when it is a relay, nullopt for a proxy.
  virtual std::optional<crypto::Ed25519Public> peer_identity() const = 0;
  // A circuit id not in use on this link, with this side's initiator bit; 0 when exhausted.
  virtual CircId allocate_circ_id(const std::function<bool(CircId)>& in_use) = 0;
  // "1.2.3.4:5678" for logs at debug level.
  virtual std::string peer_address() const = 0;

  // Sends what is queued and closes; no callbacks after this. Destroying a Channel does the same.
  // Safe to call (or to destroy the Channel) from inside any of its callbacks.
  virtual void close() = 0;
};

}  // namespace thor::link
