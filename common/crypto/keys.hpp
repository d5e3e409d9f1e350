// Strong fixed-size key types. Secrets are wiped on destruction; comparisons are constant-time.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.hpp"
#include "common/crypto/random.hpp"

namespace thor::crypto {

bool constant_time_equal(ByteView a, ByteView b);
void wipe(MutableByteView data);

template <std::size_t N, class Tag>
struct PublicBytes {
  static constexpr std::size_t size = N;
  std::array<std::uint8_t, N> bytes{};
  ByteView view() const { return ByteView(bytes); }
  bool operator==(const PublicBytes& o) const { return constant_time_equal(view(), o.view()); }
  bool operator<(const PublicBytes& o) const { return bytes < o.bytes; }  // for maps; not secret
  bool is_zero() const {
    for (auto b : bytes)
      if (b) return false;
    return true;
  }
  static std::optional<PublicBytes> from(ByteView data) {
    if (data.size() != N) return std::nullopt;
    PublicBytes p;
    std::copy(data.begin(), data.end(), p.bytes.begin());
    return p;
  }
};

template <std::size_t N, class Tag>
struct SecretBytes {
  static constexpr std::size_t size = N;
  std::array<std::uint8_t, N> bytes{};
  SecretBytes() = default;
  SecretBytes(const SecretBytes&) = default;
  SecretBytes& operator=(const SecretBytes&) = default;
  ~SecretBytes() { wipe(MutableByteView(bytes)); }
  ByteView view() const { return ByteView(bytes); }
  bool operator==(const SecretBytes& o) const { return constant_time_equal(view(), o.view()); }
};

struct Ed25519PublicTag {};
struct Ed25519SeedTag {};
struct Ed25519SignatureTag {};
struct X25519PublicTag {};
struct X25519SecretTag {};
struct SymmetricKeyTag {};

using Ed25519Public = PublicBytes<32, Ed25519PublicTag>;
using Ed25519Signature = PublicBytes<64, Ed25519SignatureTag>;
using Ed25519Seed = SecretBytes<32, Ed25519SeedTag>;
using X25519Public = PublicBytes<32, X25519PublicTag>;
using X25519Secret = SecretBytes<32, X25519SecretTag>;
using SymmetricKey = SecretBytes<32, SymmetricKeyTag>;

// A long-term Ed25519 identity (relays, the directory). Kept as its 32-byte seed.
class IdentityKey {
 public:
  static IdentityKey generate(Rng& rng);
  static IdentityKey from_seed(const Ed25519Seed& seed);
  const Ed25519Public& public_key() const { return public_; }
  const Ed25519Seed& seed() const { return seed_; }
  Ed25519Signature sign(ByteView message) const;

 private:
  Ed25519Seed seed_;
  SecretBytes<64, Ed25519SeedTag> expanded_;  // libsodium's secret key form: seed || public
  Ed25519Public public_;
};

bool verify(const Ed25519Public& key, ByteView message, const Ed25519Signature& signature);

// Human-facing name of an identity: 40 upper-case hex digits of BLAKE2b-160 of the public key.
std::string fingerprint(const Ed25519Public& key);

// An X25519 key pair: ephemeral (handshakes) or medium-term (a relay's onion key).
struct X25519Keypair {
  X25519Secret secret;
  X25519Public public_key;
  static X25519Keypair generate(Rng& rng);
  static X25519Keypair from_secret(const X25519Secret& secret);
};

// X25519(secret, peer). nullopt when the result is all zeros (a low-order peer point): the caller
// must refuse the peer, never use the zero secret.
std::optional<SymmetricKey> x25519(const X25519Secret& secret, const X25519Public& peer);

// Calls sodium_init once; false if libsodium could not start (the process cannot run safely).
bool init();

}  // namespace thor::crypto
