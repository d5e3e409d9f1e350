#include "common/crypto/keys.hpp"

#include <sodium.h>

#include <cassert>

#include "common/crypto/encoding.hpp"

namespace thor::crypto {

bool init() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

bool constant_time_equal(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void wipe(MutableByteView data) {
  if (!data.empty()) sodium_memzero(data.data(), data.size());
}

IdentityKey IdentityKey::generate(Rng& rng) {
  Ed25519Seed seed;
  rng.fill(seed.bytes);
  return from_seed(seed);
}

IdentityKey IdentityKey::from_seed(const Ed25519Seed& seed) {
  init();
  IdentityKey k;
  k.seed_ = seed;
  crypto_sign_seed_keypair(k.public_.bytes.data(), k.expanded_.bytes.data(), seed.bytes.data());
  return k;
}

Ed25519Signature IdentityKey::sign(ByteView message) const {
  Ed25519Signature sig;
  crypto_sign_detached(sig.bytes.data(), nullptr, message.data(), message.size(), expanded_.bytes.data());
  return sig;
}

bool verify(const Ed25519Public& key, ByteView message, const Ed25519Signature& signature) {
  init();
  return crypto_sign_verify_detached(signature.bytes.data(), message.data(), message.size(),
                                     key.bytes.data()) == 0;
}

std::string fingerprint(const Ed25519Public& key) {
  std::uint8_t digest[20];
  crypto_generichash(digest, sizeof digest, key.bytes.data(), key.bytes.size(), nullptr, 0);
  return to_hex_upper(ByteView(digest, sizeof digest));
}

X25519Keypair X25519Keypair::generate(Rng& rng) {
  X25519Secret secret;
  rng.fill(secret.bytes);
  return from_secret(secret);
}

X25519Keypair X25519Keypair::from_secret(const X25519Secret& secret) {
  init();
  X25519Keypair kp;
  kp.secret = secret;
  crypto_scalarmult_base(kp.public_key.bytes.data(), secret.bytes.data());
  return kp;
}

std::optional<SymmetricKey> x25519(const X25519Secret& secret, const X25519Public& peer) {
  SymmetricKey out;
  // libsodium returns -1 when the shared point is all zeros.
  if (crypto_scalarmult(out.bytes.data(), secret.bytes.data(), peer.bytes.data()) != 0) return std::nullopt;
  return out;
}

}  // namespace thor::crypto
