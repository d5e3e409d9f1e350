// A test double for the relays of a circuit: one object plays every hop of one circuit, in memory,
// with the real per-hop crypto (ntor_server_handshake, RelayHopCrypto). It answers CREATE, EXTEND,
// BEGIN, DATA, SENDME, END and RESOLVE the way relays and an exit would, keeps the exit's windows,
// and records what arrived so tests can check it. No sockets.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/cell/cell.hpp"
#include "common/cell/relay_msg.hpp"
#include "common/circuit/client_circuit.hpp"
#include "common/crypto/keys.hpp"
#include "common/crypto/onion.hpp"
#include "common/crypto/random.hpp"
#include "common/dir/documents.hpp"

namespace thor::test {

struct FakeRelay {
  crypto::IdentityKey identity;
  crypto::X25519Keypair onion;
  HostPort address;
};

// n relays with keys from a seeded generator; addresses 127.0.0.1:port, port+1, ...
std::vector<FakeRelay> make_fake_relays(std::size_t n, std::uint64_t seed, std::uint16_t port = 9001);
std::vector<circuit::HopTarget> hop_targets(const std::vector<FakeRelay>& relays);
std::vector<dir::ConsensusRelay> consensus_path(const std::vector<FakeRelay>& relays);

struct FakeExitOptions {
  bool answer_create = true;               // false: CREATE goes unanswered (a build that times out)
  std::optional<EndReason> refuse_begin;   // answer BEGIN with END(reason) instead of CONNECTED
  std::string connected_address = "93.184.216.34";
  bool echo = true;                        // DATA from the client comes back on the same stream
  bool send_sendmes = true;                // acknowledge the client's DATA with SENDMEs
  std::vector<ResolvedAnswer> resolve_answers;
};

class FakeCircuit {
 public:
  FakeCircuit(const std::vector<FakeRelay>& relays, CircId id, FakeExitOptions options, std::uint64_t seed = 7);

  // A cell from the client on this circuit; replies go to take_replies().
  void receive(const Cell& cell);
  std::vector<Cell> take_replies();

  // The exit sends on its own: DATA (within its windows; the rest waits for SENDMEs), END, and
  // raw relay messages from any hop (for tests that break the protocol on purpose).
  void exit_send(StreamId stream, ByteView data);
  void exit_end(StreamId stream, EndReason reason);
  void send_from_hop(std::size_t hop, const RelayMessage& msg);
  void send_destroy(DestroyReason reason);

  std::size_t hops_built() const { return hops_.size(); }
  bool destroyed() const { return destroyed_; }             // the client's DESTROY, or ours
  std::optional<DestroyReason> destroy_received() const { return destroy_received_; }
  bool protocol_error() const { return protocol_error_; }   // a cell from the client failed
  const std::map<StreamId, Bytes>& received() const { return received_; }
  const std::map<StreamId, HostPort>& begins() const { return begins_; }
  const std::map<StreamId, EndReason>& ends_received() const { return ends_; }
  std::size_t data_cells_received() const { return data_cells_; }
  std::size_t circuit_sendmes_received() const { return circuit_sendmes_; }
  std::size_t stream_sendmes_received() const { return stream_sendmes_; }
  std::size_t exit_buffered(StreamId stream) const;
  FakeExitOptions& options() { return options_; }

 private:
  struct ExitStream {
    int package_window = kStreamWindowStart;
    int deliver_window = kStreamWindowStart;
    Bytes pending;
    std::size_t pending_off = 0;
  };
  void originate(std::size_t hop, const RelayMessage& msg);
  void handle(std::size_t hop, const RelayMessage& msg);
  void package();

  std::vector<FakeRelay> relays_;
  CircId id_;
  FakeExitOptions options_;
  crypto::DeterministicRng rng_;
  std::vector<crypto::RelayHopCrypto> hops_;
  std::vector<Cell> replies_;
  std::map<StreamId, ExitStream> streams_;
  int package_window_ = kCircuitWindowStart;
  int deliver_window_ = kCircuitWindowStart;
  bool destroyed_ = false;
  bool protocol_error_ = false;
  std::optional<DestroyReason> destroy_received_;
  std::map<StreamId, Bytes> received_;
  std::map<StreamId, HostPort> begins_;
  std::map<StreamId, EndReason> ends_;
  std::size_t data_cells_ = 0;
  std::size_t circuit_sendmes_ = 0;
  std::size_t stream_sendmes_ = 0;
};

}  // namespace thor::test
