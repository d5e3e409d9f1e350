// thor-ntor-v1: the per-hop circuit handshake (Tor's ntor, with BLAKE2b for HMAC-SHA256).
//
// The client knows the relay's identity ID (Ed25519) and onion key B (X25519) from the consensus.
//   client -> relay (CREATE / EXTEND):  ID | B | X                      (96 bytes)
//   relay  -> client (CREATED / EXTENDED): Y | AUTH                     (64 bytes)
//   secret_input = X25519(y,X) | X25519(b,X) | ID | B | X | Y | PROTOID
//   KEY_SEED = BLAKE2b-256(key="thor-ntor-v1:key_extract", secret_input)
//   verify   = BLAKE2b-256(key="thor-ntor-v1:verify", secret_input)
//   AUTH     = BLAKE2b-256(key="thor-ntor-v1:mac", verify | ID | B | Y | X | PROTOID | "Server")
//   Df | Db | Kf | Kb = kdf_expand(KEY_SEED, "thor-ntor-v1:key_expand", 128 bytes)
// AUTH is the key confirmation: only a relay holding b computes it. Forward secrecy comes from y.
#pragma once

#include <span>

#include "common/bytes.hpp"
#include "common/crypto/keys.hpp"
#include "common/crypto/random.hpp"
#include "common/result.hpp"

namespace thor::crypto {

constexpr std::size_t kNtorOnionSkinSize = 96;
constexpr std::size_t kNtorReplySize = 64;

// The keys of one hop: digest (integrity) and cipher keys, forward (client to relay) and backward.
struct HopKeys {
  SymmetricKey forward_digest;
  SymmetricKey backward_digest;
  SymmetricKey forward_cipher;
  SymmetricKey backward_cipher;
};

class NtorClient {
 public:
  static NtorClient start(const Ed25519Public& relay_identity, const X25519Public& relay_onion_key, Rng& rng);
  // The 96 bytes to send in CREATE or EXTEND.
  const Bytes& onion_skin() const { return onion_skin_; }
  // Checks the relay's reply (AUTH) and derives the hop keys. An error means this was not the relay
  // we named (wrong onion key or identity) or the reply was corrupted.
  Result<HopKeys> finish(ByteView reply) const;

 private:
  Ed25519Public identity_;
  X25519Public onion_key_;
  X25519Keypair ephemeral_;
  Bytes onion_skin_;
};

struct NtorServerResult {
  Bytes reply;  // 64 bytes for CREATED or EXTENDED
  HopKeys keys;
};

// The relay's side. onion_keys: the current key and, during rotation, the previous one; the client
// names which by B. Errors: wrong length, an identity or onion key that is not ours, a bad point.
Result<NtorServerResult> ntor_server_handshake(const Ed25519Public& own_identity,
                                               std::span<const X25519Keypair* const> onion_keys,
                                               ByteView onion_skin, Rng& rng);

}  // namespace thor::crypto
