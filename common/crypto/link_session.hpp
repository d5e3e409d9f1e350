// thor-link-v2: the authenticated, encrypted channel between two nodes over TCP (sans-IO).
//
//   initiator -> responder: "THOR" | version u8 (=2) | offered u8 | e_i (X25519, 32)          38 bytes
//   responder -> initiator: e_r (32) | chosen u8 | ID_r (Ed25519, 32) | sig_r (64)             129 bytes
//        sig_r = Sign(ID_r, "thor-link-v2 responder" | offered | chosen | e_i | e_r)
//   both: th = BLAKE2b-256("thor-link-v2" | offered | chosen | e_i | e_r | ID_r)
//         k_i2r | k_r2i = kdf_expand(BLAKE2b-256(key=th, X25519(e, E)), "thor-link-v2 keys", 64)
//   initiator -> responder, first record: 0x00 (anonymous: a proxy)
//                                      or 0x01 | ID_i (32) | Sign(ID_i, "thor-link-v2 initiator" | th)
//   then records both ways.
// offered is a set of record ciphers (aead.hpp: 0x01 ChaCha20-Poly1305, 0x02 AES-256-GCM); the
// responder chooses one of them, AES-256-GCM when both sides have it. Its signature covers the offer
// as it received it, so an offer stripped on the way fails the initiator's check.
// A record is len u16 | AEAD(key, nonce = 0^4 | u64be(n), ad = len bytes, plaintext)
// with n counting records per direction; after the auth record every plaintext is 1..127 whole cells.
// An observer sees record sizes (as TCP already shows) but neither circuit ids nor commands.
// The initiator refuses a responder whose identity is not the expected one; the responder refuses
// an initiator whose signature does not check. Any failed record closes the link.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "common/bytes.hpp"
#include "common/cell/cell.hpp"
#include "common/crypto/aead.hpp"
#include "common/crypto/keys.hpp"
#include "common/crypto/random.hpp"
#include "common/result.hpp"

namespace thor::crypto {

constexpr std::size_t kLinkHelloSize = 38;
constexpr std::size_t kLinkResponseSize = 129;
constexpr std::size_t kLinkMaxCellsPerRecord = 127;

class LinkSession {
 public:
  // own: the initiator's identity when it is a relay (it then proves it), nullptr for a proxy.
  // ciphers: what this side offers (initiator) or accepts (responder); tests narrow it.
  static LinkSession initiator(const Ed25519Public& expected_responder, const IdentityKey* own, Rng& rng,
                               LinkCipherSet ciphers = supported_link_ciphers());
  static LinkSession responder(const IdentityKey& own, Rng& rng, LinkCipherSet ciphers = supported_link_ciphers());

  LinkSession(LinkSession&&) noexcept;
  LinkSession& operator=(LinkSession&&) noexcept;
  ~LinkSession();

  // Feeds bytes from the peer. Handshake bytes advance the handshake; each whole cell received is
  // passed to on_cell (514 bytes). An error (bad magic, wrong identity, bad signature, failed
  // record) means: close the link; the message says why.
  Status receive(ByteView data, const std::function<void(ByteView cell)>& on_cell);

  // Queues a cell (kCellSize bytes) for sending; cells queued before the handshake completes are
  // held until it does.
  void queue_cell(ByteView cell);
  // queue_cell without the copy: room for one cell (kCellSize bytes) at the end of what is queued,
  // which the caller fills completely before making any other call on this session.
  MutableByteView queue_cell_slot();
  // Moves everything ready to send (handshake messages, sealed records of queued cells) to out.
  void take_output(Bytes& out);
  bool has_output() const;

  bool established() const;
  // The peer's proven identity: the responder's for an initiator; for a responder, the
  // initiator's when it was a relay (nullopt for an anonymous proxy) — known once established.
  std::optional<Ed25519Public> peer_identity() const;
  // The record cipher the handshake agreed on, once established.
  std::optional<LinkCipher> cipher() const;

 private:
  struct State;
  explicit LinkSession(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace thor::crypto
