// Onion layers and per-hop integrity for RELAY cell payloads (509 bytes).
//
// Layer: each hop and direction has a ChaCha20 key (Kf, Kb) and a cell counter n (starting at 0,
// +1 for every cell that passes that hop in that direction); the layer is
// ChaCha20-IETF(key, nonce = 0x00000000 | u64be(n)) XOR payload.
//
// Integrity: the hop that originates a cell (the client for forward cells to hop i; hop i for
// backward cells) writes tag = Poly1305(otk, payload with tag zeroed), with the one-time key
// otk = ChaCha20-IETF(D, nonce = 0x00000000 | u64be(seq / 8))[32 * (seq % 8) .. +32], where D is
// that hop's digest key for the direction and seq counts the cells this hop originated (or
// recognized) in that direction: one 256-byte keystream gives the keys of eight consecutive cells.
// A cell is "recognized" at a hop when, after removing the layer,
// recognized == 0 and the tag matches (then seq advances). A cell flipped anywhere fails the tag at
// its destination; a relay with no next hop, or a client where no hop recognizes it, tears the
// circuit down.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "common/cell/cell.hpp"
#include "common/crypto/ntor.hpp"

namespace thor::crypto {

// One direction of one hop.
class LayerCipher {
 public:
  explicit LayerCipher(const SymmetricKey& key) : key_(key) {}
  void apply(CellPayload& payload);  // encrypt == decrypt; advances the counter
  std::uint64_t counter() const { return counter_; }

 private:
  SymmetricKey key_;
  std::uint64_t counter_ = 0;
};

class IntegrityTagger {
 public:
  explicit IntegrityTagger(const SymmetricKey& key);
  IntegrityTagger(IntegrityTagger&&) noexcept;
  IntegrityTagger& operator=(IntegrityTagger&&) noexcept;
  ~IntegrityTagger();
  void seal(CellPayload& payload);              // writes recognized=0 and the tag; seq += 1
  bool check_and_advance(const CellPayload& payload);  // recognized == 0 and tag matches -> seq += 1

 private:
  struct KeyBatch;  // the one-time keys of eight cells, made at once
  void one_time_key(std::uint8_t (&otk)[32]);
  void compute_tag(const CellPayload& payload, std::uint8_t (&tag)[16]);

  SymmetricKey key_;
  std::uint64_t seq_ = 0;
  // Only for a tagger that carries a stream of cells (an exit, a client): one that sees a handful
  // (a middle relay's EXTEND) derives each key alone and keeps no keystream.
  std::unique_ptr<KeyBatch> batch_;
};

// The relay's state for the one hop it is on a circuit.
class RelayHopCrypto {
 public:
  explicit RelayHopCrypto(const HopKeys& keys);
  // Removes this hop's forward layer in place. True when the cell is for this hop.
  bool decrypt_forward(CellPayload& payload);
  // Seals and encrypts a cell this hop originates toward the client.
  void originate_backward(CellPayload& payload);
  // Adds this hop's backward layer to a cell coming from further along the circuit.
  void encrypt_backward(CellPayload& payload);

 private:
  LayerCipher forward_, backward_;
  IntegrityTagger forward_check_, backward_seal_;
};

// The client's state for a whole circuit: one entry per hop, index 0 the first (guard) hop.
class ClientCircuitCrypto {
 public:
  void add_hop(const HopKeys& keys);
  std::size_t hops() const { return hops_.size(); }
  // Seals the cell for hop `target` and adds the layers of hops target..0.
  void encrypt_forward(CellPayload& payload, std::size_t target);
  // Removes layers from hop 0 on until a hop recognizes the cell; returns that hop's index, or
  // nullopt when none does (corrupted: the caller destroys the circuit).
  std::optional<std::size_t> decrypt_backward(CellPayload& payload);

 private:
  struct Hop {
    LayerCipher forward, backward;
    IntegrityTagger forward_seal, backward_check;
  };
  std::vector<Hop> hops_;
};

}  // namespace thor::crypto
