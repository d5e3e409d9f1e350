#include "common/crypto/onion.hpp"

#include <sodium.h>

#include <algorithm>
#include <cassert>

#include "common/cell/relay_msg.hpp"

namespace thor::crypto {
namespace {

static_assert(crypto_stream_chacha20_ietf_KEYBYTES == SymmetricKey::size);
static_assert(crypto_stream_chacha20_ietf_NONCEBYTES == 12);
static_assert(kRelayRecognizedOffset + 2 == kRelayTagOffset);
static_assert(kRelayTagSize == crypto_verify_16_BYTES);

void put_u64be(std::uint8_t* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(v >> (8 * (7 - i)));
}

}  // namespace

// libsodium's ChaCha20 runs 8 blocks at a time only on whole 512-byte chunks; 509 bytes take its
// 4-block and 1-block paths and cost 2.4 times as much (578 ns against 242 ns on the development
// machine). So the payload is run as 512 bytes through a buffer: the same keystream, the last 3 bytes
// of it unused.
constexpr std::size_t kLayerBlockSize = 512;
static_assert(kCellPayloadSize <= kLayerBlockSize && kLayerBlockSize % 64 == 0);

void LayerCipher::apply(CellPayload& payload) {
  std::uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
  put_u64be(nonce + 4, counter_);
  alignas(64) std::uint8_t block[kLayerBlockSize];
  std::copy_n(payload.begin(), kCellPayloadSize, block);
  std::fill(block + kCellPayloadSize, block + kLayerBlockSize, std::uint8_t{0});
  crypto_stream_chacha20_ietf_xor_ic(block, block, kLayerBlockSize, nonce, 0, key_.bytes.data());
  std::copy_n(block, kCellPayloadSize, payload.begin());
  ++counter_;
}

// The one-time keys come eight at a time: ChaCha20 computes 64-byte blocks, so a lone 32-byte key
// costs a whole block (113 ns on the development machine), while libsodium's four-block path makes
// 256 bytes, eight keys, in 209 ns (26 ns a key). Two tags per cell of a download (the exit seals,
// the client checks) make that about 3% of the whole network's CPU.
constexpr std::uint64_t kKeysPerBatch = 8;
constexpr std::size_t kOneTimeKeySize = crypto_onetimeauth_poly1305_KEYBYTES;
constexpr std::uint64_t kBatchAfterTags = 4;  // a tagger that has made this many gets a batch

struct IntegrityTagger::KeyBatch {
  std::uint64_t index = ~std::uint64_t{0};  // seq / 8 of the keys held; none yet
  alignas(64) std::uint8_t keys[kKeysPerBatch * kOneTimeKeySize];
  ~KeyBatch() { sodium_memzero(keys, sizeof keys); }
};

IntegrityTagger::IntegrityTagger(const SymmetricKey& key) : key_(key) {}
IntegrityTagger::IntegrityTagger(IntegrityTagger&&) noexcept = default;
IntegrityTagger& IntegrityTagger::operator=(IntegrityTagger&&) noexcept = default;
IntegrityTagger::~IntegrityTagger() = default;

void IntegrityTagger::one_time_key(std::uint8_t (&otk)[kOneTimeKeySize]) {
  std::uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
  put_u64be(nonce + 4, seq_ / kKeysPerBatch);
  const std::uint64_t slot = seq_ % kKeysPerBatch;
  if (!batch_ && seq_ >= kBatchAfterTags) batch_ = std::make_unique<KeyBatch>();
  if (batch_) {
    if (batch_->index != seq_ / kKeysPerBatch) {
      crypto_stream_chacha20_ietf(batch_->keys, sizeof batch_->keys, nonce, key_.bytes.data());
      batch_->index = seq_ / kKeysPerBatch;
    }
    std::copy_n(batch_->keys + slot * kOneTimeKeySize, kOneTimeKeySize, otk);
    return;
  }
  // The one 64-byte block (block counter slot / 2) that holds this key.
  std::uint8_t block[64] = {};
  crypto_stream_chacha20_ietf_xor_ic(block, block, sizeof block, nonce, static_cast<std::uint32_t>(slot / 2),
                                     key_.bytes.data());
  std::copy_n(block + (slot % 2) * kOneTimeKeySize, kOneTimeKeySize, otk);
  sodium_memzero(block, sizeof block);
}

// Poly1305(otk, payload with the tag zeroed). The payload is fed around the tag field so that it
// is neither copied nor modified.
void IntegrityTagger::compute_tag(const CellPayload& payload, std::uint8_t (&tag)[kRelayTagSize]) {
  static_assert(crypto_onetimeauth_poly1305_BYTES == kRelayTagSize);
  static constexpr std::uint8_t kZeroTag[kRelayTagSize] = {};
  std::uint8_t otk[kOneTimeKeySize];
  one_time_key(otk);
  crypto_onetimeauth_poly1305_state st;
  crypto_onetimeauth_poly1305_init(&st, otk);
  crypto_onetimeauth_poly1305_update(&st, payload.data(), kRelayTagOffset);
  crypto_onetimeauth_poly1305_update(&st, kZeroTag, sizeof kZeroTag);
  constexpr std::size_t after = kRelayTagOffset + kRelayTagSize;
  crypto_onetimeauth_poly1305_update(&st, payload.data() + after, payload.size() - after);
  crypto_onetimeauth_poly1305_final(&st, tag);  // final() wipes the state
  sodium_memzero(otk, sizeof otk);
}

void IntegrityTagger::seal(CellPayload& payload) {
  payload[kRelayRecognizedOffset] = 0;
  payload[kRelayRecognizedOffset + 1] = 0;
  std::uint8_t tag[kRelayTagSize];
  compute_tag(payload, tag);
  std::copy_n(tag, kRelayTagSize, payload.begin() + kRelayTagOffset);
  ++seq_;
}

bool IntegrityTagger::check_and_advance(const CellPayload& payload) {
  // recognized != 0 is the cheap early-out for cells meant for a later hop (as in Tor); the tag is
  // what decides.
  if (payload[kRelayRecognizedOffset] != 0 || payload[kRelayRecognizedOffset + 1] != 0) return false;
  std::uint8_t tag[kRelayTagSize];
  compute_tag(payload, tag);
  // Constant time; crypto_verify_16 is a few word operations where sodium_memcmp loops over volatile
  // bytes (2.5% of the proxy in a bulk download).
  if (crypto_verify_16(tag, payload.data() + kRelayTagOffset) != 0) return false;
  ++seq_;
  return true;
}

RelayHopCrypto::RelayHopCrypto(const HopKeys& keys)
    : forward_(keys.forward_cipher),
      backward_(keys.backward_cipher),
      forward_check_(keys.forward_digest),
      backward_seal_(keys.backward_digest) {}

bool RelayHopCrypto::decrypt_forward(CellPayload& payload) {
  forward_.apply(payload);
  return forward_check_.check_and_advance(payload);
}

void RelayHopCrypto::originate_backward(CellPayload& payload) {
  backward_seal_.seal(payload);
  backward_.apply(payload);
}

void RelayHopCrypto::encrypt_backward(CellPayload& payload) { backward_.apply(payload); }

void ClientCircuitCrypto::add_hop(const HopKeys& keys) {
  hops_.push_back(Hop{LayerCipher(keys.forward_cipher), LayerCipher(keys.backward_cipher),
                      IntegrityTagger(keys.forward_digest), IntegrityTagger(keys.backward_digest)});
}

void ClientCircuitCrypto::encrypt_forward(CellPayload& payload, std::size_t target) {
  assert(target < hops_.size());
  hops_[target].forward_seal.seal(payload);
  for (std::size_t i = target + 1; i-- > 0;) hops_[i].forward.apply(payload);
}

std::optional<std::size_t> ClientCircuitCrypto::decrypt_backward(CellPayload& payload) {
  for (std::size_t i = 0; i < hops_.size(); ++i) {
    hops_[i].backward.apply(payload);
    if (hops_[i].backward_check.check_and_advance(payload)) return i;
  }
  return std::nullopt;
}

}  // namespace thor::crypto
