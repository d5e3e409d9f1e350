#include "common/crypto/ntor.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <string>
#include <string_view>

#include "common/crypto/hash.hpp"

namespace thor::crypto {
namespace {

constexpr std::string_view kProtoId = "thor-ntor-v1";
constexpr std::string_view kKeyExtract = "thor-ntor-v1:key_extract";
constexpr std::string_view kVerify = "thor-ntor-v1:verify";
constexpr std::string_view kMac = "thor-ntor-v1:mac";
constexpr std::string_view kKeyExpand = "thor-ntor-v1:key_expand";
constexpr std::string_view kServer = "Server";

// Every label is used as a BLAKE2b key, so each must be a length generichash accepts.
static_assert(kKeyExtract.size() >= crypto_generichash_KEYBYTES_MIN);
static_assert(kVerify.size() >= crypto_generichash_KEYBYTES_MIN);
static_assert(kMac.size() >= crypto_generichash_KEYBYTES_MIN);

constexpr std::size_t kSecretInputSize = 32 * 6 + kProtoId.size();

// The shared computation of both sides: from the two DH results and the public values, the key
// seed (turned into hop keys) and AUTH. Intermediate secrets are wiped before returning.
struct Derived {
  HopKeys keys;
  std::array<std::uint8_t, 32> auth{};
};

Derived derive(const SymmetricKey& dh_ephemeral, const SymmetricKey& dh_onion, const Ed25519Public& id,
               const X25519Public& b, const X25519Public& x, const X25519Public& y) {
  std::array<std::uint8_t, kSecretInputSize> secret_input{};
  SpanWriter w(secret_input);
  w.bytes(dh_ephemeral.view()).bytes(dh_onion.view()).bytes(id.view()).bytes(b.view()).bytes(x.view())
      .bytes(y.view()).bytes(kProtoId);
  assert(w.ok() && w.remaining() == 0);

  SymmetricKey key_seed;
  key_seed.bytes = blake2b_256({ByteView(secret_input)}, as_bytes(kKeyExtract));
  auto verify = blake2b_256({ByteView(secret_input)}, as_bytes(kVerify));
  wipe(MutableByteView(secret_input));

  Derived d;
  d.auth = blake2b_256({ByteView(verify), id.view(), b.view(), y.view(), x.view(), as_bytes(kProtoId),
                        as_bytes(kServer)},
                       as_bytes(kMac));
  wipe(MutableByteView(verify));

  std::array<std::uint8_t, 128> material{};
  kdf_expand(key_seed, kKeyExpand, MutableByteView(material));
  auto take = [&](std::size_t i, SymmetricKey& k) {
    std::copy_n(material.begin() + static_cast<std::ptrdiff_t>(32 * i), 32, k.bytes.begin());
  };
  take(0, d.keys.forward_digest);
  take(1, d.keys.backward_digest);
  take(2, d.keys.forward_cipher);
  take(3, d.keys.backward_cipher);
  wipe(MutableByteView(material));
  return d;
}

}  // namespace

NtorClient NtorClient::start(const Ed25519Public& relay_identity, const X25519Public& relay_onion_key, Rng& rng) {
  init();
  NtorClient c;
  c.identity_ = relay_identity;
  c.onion_key_ = relay_onion_key;
  c.ephemeral_ = X25519Keypair::generate(rng);
  c.onion_skin_.reserve(kNtorOnionSkinSize);
  Writer(c.onion_skin_).bytes(relay_identity.view()).bytes(relay_onion_key.view()).bytes(c.ephemeral_.public_key.view());
  return c;
}

Result<HopKeys> NtorClient::finish(ByteView reply) const {
  if (reply.size() != kNtorReplySize)
    return Error{"ntor: reply is " + std::to_string(reply.size()) + " bytes, expected " +
                 std::to_string(kNtorReplySize)};
  Reader r(reply);
  X25519Public y;
  std::array<std::uint8_t, 32> auth{};
  r.array(y.bytes);
  r.array(auth);

  auto dh_ephemeral = x25519(ephemeral_.secret, y);
  if (!dh_ephemeral) return Error{"ntor: the relay's ephemeral key is a low-order point"};
  auto dh_onion = x25519(ephemeral_.secret, onion_key_);
  if (!dh_onion) return Error{"ntor: the relay's onion key is a low-order point"};

  Derived d = derive(*dh_ephemeral, *dh_onion, identity_, onion_key_, ephemeral_.public_key, y);
  if (!constant_time_equal(ByteView(d.auth), ByteView(auth)))
    return Error{"ntor: AUTH does not match: the relay " + fingerprint(identity_) +
                 " does not hold the onion key we used, or the reply was corrupted"};
  return std::move(d.keys);
}

Result<NtorServerResult> ntor_server_handshake(const Ed25519Public& own_identity,
                                               std::span<const X25519Keypair* const> onion_keys,
                                               ByteView onion_skin, Rng& rng) {
  init();
  if (onion_skin.size() != kNtorOnionSkinSize)
    return Error{"ntor: onion skin is " + std::to_string(onion_skin.size()) + " bytes, expected " +
                 std::to_string(kNtorOnionSkinSize)};
  Reader r(onion_skin);
  Ed25519Public id;
  X25519Public b, x;
  r.array(id.bytes);
  r.array(b.bytes);
  r.array(x.bytes);

  if (!(id == own_identity))
    return Error{"ntor: onion skin names identity " + fingerprint(id) + ", we are " + fingerprint(own_identity)};
  const X25519Keypair* onion = nullptr;
  for (const X25519Keypair* k : onion_keys)
    if (k && k->public_key == b) onion = k;
  if (!onion) return Error{"ntor: onion skin names an onion key that is not ours (stale consensus?)"};

  X25519Keypair ephemeral = X25519Keypair::generate(rng);
  auto dh_ephemeral = x25519(ephemeral.secret, x);
  auto dh_onion = x25519(onion->secret, x);
  if (!dh_ephemeral || !dh_onion) return Error{"ntor: the client's ephemeral key is a low-order point"};

  Derived d = derive(*dh_ephemeral, *dh_onion, id, b, x, ephemeral.public_key);
  NtorServerResult out;
  out.reply.reserve(kNtorReplySize);
  Writer(out.reply).bytes(ephemeral.public_key.view()).bytes(ByteView(d.auth));
  out.keys = std::move(d.keys);
  return out;
}

}  // namespace thor::crypto
