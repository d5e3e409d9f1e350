#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "common/cell/relay_msg.hpp"
#include "common/crypto/encoding.hpp"
#include "common/crypto/hash.hpp"
#include "common/crypto/onion.hpp"

using namespace thor;
using namespace thor::crypto;

namespace {

// Fixed keys for the known-answer vectors: byte i of each key is base + i + 0x80 * hop.
HopKeys pattern_keys(int hop) {
  HopKeys k;
  auto fill = [&](SymmetricKey& key, int base) {
    for (int i = 0; i < 32; ++i) key.bytes[i] = static_cast<std::uint8_t>(base + i + 0x80 * hop);
  };
  fill(k.forward_digest, 0x00);
  fill(k.backward_digest, 0x20);
  fill(k.forward_cipher, 0x40);
  fill(k.backward_cipher, 0x60);
  return k;
}

HopKeys random_keys(Rng& rng) {
  HopKeys k;
  rng.fill(k.forward_digest.bytes);
  rng.fill(k.backward_digest.bytes);
  rng.fill(k.forward_cipher.bytes);
  rng.fill(k.backward_cipher.bytes);
  return k;
}

// A plaintext relay payload as relay_msg.hpp lays it out (header with zero recognized and tag).
CellPayload relay_payload(std::uint8_t command, std::uint16_t stream, ByteView data) {
  CellPayload p{};
  SpanWriter w(p);
  w.zeros(kRelayTagOffset + kRelayTagSize).u8(command).u16(stream).u16(static_cast<std::uint16_t>(data.size())).bytes(data);
  REQUIRE(w.ok());
  return p;
}

std::string hex_head(const CellPayload& p, std::size_t n = 32) { return to_hex(ByteView(p).first(n)); }
std::string hex_hash(const CellPayload& p) { return to_hex(ByteView(blake2b_256({ByteView(p)}))); }

// Payload equality ignoring the tag field (the sender's copy has no tag).
bool same_body(const CellPayload& a, const CellPayload& b) {
  return std::equal(a.begin(), a.begin() + kRelayTagOffset, b.begin()) &&
         std::equal(a.begin() + kRelayTagOffset + kRelayTagSize, a.end(), b.begin() + kRelayTagOffset + kRelayTagSize);
}

struct Circuit {
  ClientCircuitCrypto client;
  std::vector<RelayHopCrypto> relays;
  explicit Circuit(const std::vector<HopKeys>& keys) {
    for (const auto& k : keys) {
      client.add_hop(k);
      relays.emplace_back(k);
    }
  }
};

std::vector<HopKeys> three_random_hops(std::uint64_t seed) {
  DeterministicRng rng(seed);
  return {random_keys(rng), random_keys(rng), random_keys(rng)};
}

}  // namespace

// Computed with an independent implementation of onion.hpp's construction (Python: the
// cryptography package's ChaCha20 and Poly1305); they pin layer order, nonces, counters and the tag.
TEST_CASE("onion known-answer vectors") {
  const Bytes hello{'h', 'e', 'l', 'l', 'o'};
  const CellPayload plain = relay_payload(2, 1, hello);
  Circuit c({pattern_keys(0), pattern_keys(1), pattern_keys(2)});

  // To hop 2: sealed with hop 2's forward digest key, then layers 2, 1, 0 (all counters 0).
  CellPayload p = plain;
  c.client.encrypt_forward(p, 2);
  CHECK(hex_head(p) == "874074761d56fb2334d8824dca0a8a1bfc369eeba247f6f9630b6387612d5c1c");
  CHECK(hex_hash(p) == "be0dd0c099630700284ba966420b002e43a2cb7abf4af9619090ee24dd4235fd");
  CHECK_FALSE(c.relays[0].decrypt_forward(p));
  CHECK_FALSE(c.relays[1].decrypt_forward(p));
  CHECK(c.relays[2].decrypt_forward(p));
  CHECK(to_hex(ByteView(p).subspan(kRelayTagOffset, kRelayTagSize)) == "a4b016589c159f5fd9d2f030c731be2e");
  CHECK(same_body(p, plain));

  // To hop 0: hop 0's forward counter is now 1, its digest sequence still 0.
  p = plain;
  c.client.encrypt_forward(p, 0);
  CHECK(hex_head(p) == "7f04b972810961f134b422284269cd662905cd81b291e2f6fa3b20521f66ca1b");
  CHECK(hex_hash(p) == "d370b7d6435e4f67e77b0385cbf489853a8a93523ff705c8ce95b2c9726a9698");
  CHECK(c.relays[0].decrypt_forward(p));
  CHECK(same_body(p, plain));

  // From hop 1 to the client: sealed and encrypted by hop 1, layered by hop 0.
  p = plain;
  c.relays[1].originate_backward(p);
  c.relays[0].encrypt_backward(p);
  CHECK(hex_head(p) == "30b417cd73c06981df8f91dd67bc602d3ad43536785c5ac8d19fa3cfbd34837d");
  CHECK(hex_hash(p) == "dac78ffd4658cda85f4c8df22f2071620891e7d528b5203265c9766b8462a10c");
  auto from = c.client.decrypt_backward(p);
  REQUIRE(from);
  CHECK(*from == 1);
  CHECK(same_body(p, plain));
}

TEST_CASE("LayerCipher: applying twice restores; the counter advances per cell") {
  SymmetricKey key = pattern_keys(0).forward_cipher;
  LayerCipher enc(key), dec(key);
  CellPayload p = relay_payload(2, 7, as_bytes("data"));
  const CellPayload original = p;
  enc.apply(p);
  CHECK(p != original);
  CHECK(enc.counter() == 1);
  CellPayload second = original;
  enc.apply(second);
  CHECK(second != p);  // same plaintext, next counter: different ciphertext
  dec.apply(p);
  CHECK(p == original);
  dec.apply(second);
  CHECK(second == original);
  CHECK(dec.counter() == 2);
}

TEST_CASE("IntegrityTagger: seal and check; replays, reordering and recognized != 0 fail") {
  SymmetricKey key = pattern_keys(1).forward_digest;
  IntegrityTagger sender(key), receiver(key);
  CellPayload a = relay_payload(2, 1, as_bytes("first"));
  CellPayload b = relay_payload(2, 1, as_bytes("second"));
  a[0] = 0xAA;  // seal writes recognized = 0
  sender.seal(a);
  CHECK(a[0] == 0);
  CHECK(a[1] == 0);
  sender.seal(b);
  CHECK_FALSE(receiver.check_and_advance(b));  // out of order: wrong sequence number
  CHECK(receiver.check_and_advance(a));
  CHECK_FALSE(receiver.check_and_advance(a));  // replay
  CellPayload b_bad = b;
  b_bad[1] = 1;
  CHECK_FALSE(receiver.check_and_advance(b_bad));
  CHECK(receiver.check_and_advance(b));

  IntegrityTagger other(pattern_keys(2).forward_digest);
  CellPayload c = relay_payload(2, 1, as_bytes("x"));
  sender.seal(c);
  CHECK_FALSE(other.check_and_advance(c));
}

// Computed with an independent implementation of onion.hpp's tag (Python: the cryptography
// package's ChaCha20 and Poly1305): otk(seq) is bytes 32 * (seq % 8) of the 256-byte keystream for
// nonce seq / 8. The first tags take the path without a batch, the later ones the batched one; both
// must give these.
TEST_CASE("IntegrityTagger known answers: one-time keys eight per keystream, across batches") {
  const std::map<std::uint64_t, std::string> expected = {
      {0, "e75f9a3c65be04e40ded1b5bc0464fe8"},  {1, "e30fb0242f164e89a9f4f1681a5968f0"},
      {2, "67a8ccd04a389cdb338bad47e48d86ae"},  {3, "e4d9c4226c86680014553ec718d4a3d1"},
      {4, "d0d63777dc7a88cecbab103c71a3dade"},  {5, "6a4196726478cc73cb03c1c66b5a90d7"},
      {7, "7e14115f24041f22b957be09c19dba38"},  {8, "7be9289bcf0d77bafa0c7f408db75545"},
      {9, "8b9253cd2a28460a04fbc9450d44b29f"},  {15, "eb2a857db1f39445fd72552c73a11f59"},
      {16, "011e020ed1be0b14f913fbab2f4589ac"}, {17, "25453a96eafa3135c3371738146db8f5"},
  };
  IntegrityTagger sender(pattern_keys(1).forward_digest), receiver(pattern_keys(1).forward_digest);
  for (std::uint64_t seq = 0; seq <= 17; ++seq) {
    CAPTURE(seq);
    const std::string text = "cell " + std::to_string(seq);
    CellPayload p = relay_payload(2, 1, as_bytes(text));
    sender.seal(p);
    if (auto it = expected.find(seq); it != expected.end())
      CHECK(to_hex(ByteView(p).subspan(kRelayTagOffset, kRelayTagSize)) == it->second);
    CHECK(receiver.check_and_advance(p));
  }
}

TEST_CASE("three-hop onion round trip: data to and from every hop over many cells") {
  Circuit c(three_random_hops(10));
  DeterministicRng rng(11);
  int delivered_forward[3] = {0, 0, 0}, delivered_backward[3] = {0, 0, 0};
  for (int i = 0; i < 600; ++i) {
    const std::size_t hop = rng.uniform(3);
    Bytes data(rng.uniform(kRelayMaxData + 1));
    rng.fill(data);
    const CellPayload plain = relay_payload(static_cast<std::uint8_t>(1 + rng.uniform(12)),
                                            static_cast<std::uint16_t>(i), data);
    if (rng.uniform(2) == 0) {
      // Forward: each relay removes its layer; only the target recognizes the cell.
      CellPayload p = plain;
      c.client.encrypt_forward(p, hop);
      for (std::size_t h = 0; h <= hop; ++h) {
        const bool recognized = c.relays[h].decrypt_forward(p);
        REQUIRE(recognized == (h == hop));
      }
      REQUIRE(same_body(p, plain));
      ++delivered_forward[hop];
    } else {
      // Backward: the origin seals, every earlier relay adds its layer, the client names the hop.
      CellPayload p = plain;
      c.relays[hop].originate_backward(p);
      for (std::size_t h = hop; h-- > 0;) c.relays[h].encrypt_backward(p);
      auto from = c.client.decrypt_backward(p);
      REQUIRE(from);
      REQUIRE(*from == hop);
      REQUIRE(same_body(p, plain));
      ++delivered_backward[hop];
    }
  }
  for (int h = 0; h < 3; ++h) {
    CHECK(delivered_forward[h] > 50);
    CHECK(delivered_backward[h] > 50);
  }
}

TEST_CASE("onion: a circuit with different keys at one hop never recognizes") {
  auto keys = three_random_hops(12);
  Circuit good(keys);
  keys[1].forward_cipher.bytes[0] ^= 1;  // the middle relay holds a different layer key
  Circuit bad(keys);
  CellPayload p = relay_payload(2, 1, as_bytes("hi"));
  good.client.encrypt_forward(p, 2);
  CHECK_FALSE(bad.relays[0].decrypt_forward(p));
  CHECK_FALSE(bad.relays[1].decrypt_forward(p));
  CHECK_FALSE(bad.relays[2].decrypt_forward(p));
}

// Every bit of every payload byte, flipped at every point on the path (before each hop going
// forward, after each hop coming back): no hop ever recognizes the cell, so it is never delivered,
// and its destination detects it (the exit has no next hop; the client has no hop left).
TEST_CASE("tamper: every flipped bit at every point on the path is detected, never delivered") {
  const auto keys = three_random_hops(13);
  const CellPayload plain = relay_payload(2, 5, as_bytes("tamper test payload"));
  std::size_t trials = 0;

  for (std::size_t target = 0; target < 3; ++target) {
    for (std::size_t point = 0; point <= target; ++point) {  // flipped on the wire into hop `point`
      for (std::size_t pos = 0; pos < kCellPayloadSize; ++pos) {
        for (int bit = 0; bit < 8; ++bit) {
          Circuit c(keys);
          CellPayload p = plain;
          c.client.encrypt_forward(p, target);
          bool recognized_anywhere = false;
          for (std::size_t h = 0; h < 3; ++h) {
            if (h == point) p[pos] ^= static_cast<std::uint8_t>(1u << bit);
            if (c.relays[h].decrypt_forward(p)) recognized_anywhere = true;
          }
          REQUIRE_FALSE(recognized_anywhere);
          ++trials;
        }
      }
    }
  }

  for (std::size_t origin = 0; origin < 3; ++origin) {
    for (std::size_t point = 0; point <= origin; ++point) {  // flipped after leaving hop `point`
      for (std::size_t pos = 0; pos < kCellPayloadSize; ++pos) {
        for (int bit = 0; bit < 8; ++bit) {
          Circuit c(keys);
          CellPayload p = plain;
          c.relays[origin].originate_backward(p);
          for (std::size_t h = origin + 1; h-- > 0;) {
            if (h != origin) c.relays[h].encrypt_backward(p);
            if (h == point) p[pos] ^= static_cast<std::uint8_t>(1u << bit);
          }
          REQUIRE_FALSE(c.client.decrypt_backward(p).has_value());
          ++trials;
        }
      }
    }
  }
  CHECK(trials == 2 * 6 * kCellPayloadSize * 8);
}

TEST_CASE("tamper: after an untouched cell, the same state keeps working (counters in step)") {
  // Sanity for the test above: without the flip the same path delivers, so a failure there is the
  // flip's doing.
  const auto keys = three_random_hops(13);
  Circuit c(keys);
  for (int i = 0; i < 5; ++i) {
    CellPayload p = relay_payload(2, 5, as_bytes("tamper test payload"));
    c.client.encrypt_forward(p, 2);
    CHECK_FALSE(c.relays[0].decrypt_forward(p));
    CHECK_FALSE(c.relays[1].decrypt_forward(p));
    CHECK(c.relays[2].decrypt_forward(p));
    CellPayload q = relay_payload(4, 5, {});
    c.relays[2].originate_backward(q);
    c.relays[1].encrypt_backward(q);
    c.relays[0].encrypt_backward(q);
    CHECK(c.client.decrypt_backward(q) == std::optional<std::size_t>(2));
  }
}
