#include <doctest/doctest.h>

#include <array>
#include <string>

#include "common/crypto/encoding.hpp"
#include "common/crypto/ntor.hpp"

using namespace thor;
using namespace thor::crypto;

namespace {

struct Relay {
  IdentityKey identity;
  X25519Keypair onion;
};

Relay make_relay(Rng& rng) {
  auto id = IdentityKey::generate(rng);
  auto onion = X25519Keypair::generate(rng);
  return Relay{id, onion};
}

Result<NtorServerResult> serve(const Relay& relay, ByteView skin, Rng& rng) {
  const X25519Keypair* keys[] = {&relay.onion};
  return ntor_server_handshake(relay.identity.public_key(), keys, skin, rng);
}

bool same_keys(const HopKeys& a, const HopKeys& b) {
  return a.forward_digest == b.forward_digest && a.backward_digest == b.backward_digest &&
         a.forward_cipher == b.forward_cipher && a.backward_cipher == b.backward_cipher;
}

}  // namespace

// The vectors were computed with an independent implementation of the construction in ntor.hpp
// (Python: hashlib.blake2b, the cryptography package's X25519 and Ed25519, and a re-implementation
// of DeterministicRng over ChaCha20). Any change to the handshake's bytes shows up here.
TEST_CASE("ntor known-answer vector: onion skin, reply and hop keys") {
  DeterministicRng rng(0x74686f72);
  Relay relay = make_relay(rng);
  auto client = NtorClient::start(relay.identity.public_key(), relay.onion.public_key, rng);
  CHECK(to_hex(client.onion_skin()) ==
        "20b9e5392328a245a2ae533a95a985728faf084c4277018588ad6661a327783f"   // ID
        "f7ca4dcb08d368def17d0682d6ec92aef288b509216f0065f3edc411ac31f20d"   // B
        "15030aaaaab316195cbc5b19577f3707bb2cf6b7a0a498219b852d84d4bacd20");  // X
  auto server = serve(relay, client.onion_skin(), rng);
  REQUIRE(server.ok());
  CHECK(to_hex(server->reply) ==
        "cb821ab68bc879ff74b733b0d5a42ac6c1bf54953411adcb590f3f0a85a4bd0b"    // Y
        "372c0ac8811847b1798a1f69077e6b8d496c858697423265127d27cf60c3b0ad");  // AUTH
  const HopKeys& k = server->keys;
  CHECK(to_hex(k.forward_digest.view()) == "e16278713fc0f73e9752fa8e2d04e47dc35e1e437df291ecdc0a28fc82078949");
  CHECK(to_hex(k.backward_digest.view()) == "581a20ac3f610200c98f62a155f93cd375a1e1fa19e8fca2044544eb258baf56");
  CHECK(to_hex(k.forward_cipher.view()) == "131c429a4f23aa410f43cc94fc16d95380a3cda156c73294d50a3ce66ff8378b");
  CHECK(to_hex(k.backward_cipher.view()) == "af76bddaaecc681a145ccd8712b7228db26cc3486821b30ed3defe63ec57c130");

  auto keys = client.finish(server->reply);
  REQUIRE(keys.ok());
  CHECK(same_keys(*keys, server->keys));
}

TEST_CASE("ntor: client and relay derive the same keys; every run differs") {
  DeterministicRng rng(1);
  Relay relay = make_relay(rng);
  HopKeys previous;
  for (int i = 0; i < 20; ++i) {
    auto client = NtorClient::start(relay.identity.public_key(), relay.onion.public_key, rng);
    REQUIRE(client.onion_skin().size() == kNtorOnionSkinSize);
    auto server = serve(relay, client.onion_skin(), rng);
    REQUIRE(server.ok());
    REQUIRE(server->reply.size() == kNtorReplySize);
    auto keys = client.finish(server->reply);
    REQUIRE(keys.ok());
    CHECK(same_keys(*keys, server->keys));
    // Four distinct keys, and fresh ones per handshake (forward secrecy needs fresh ephemerals).
    CHECK_FALSE(keys->forward_cipher == keys->backward_cipher);
    CHECK_FALSE(keys->forward_digest == keys->backward_digest);
    CHECK_FALSE(keys->forward_cipher == keys->forward_digest);
    CHECK_FALSE(keys->forward_cipher == previous.forward_cipher);
    previous = *keys;
  }
}

TEST_CASE("ntor: the relay accepts its previous onion key during rotation") {
  DeterministicRng rng(2);
  Relay relay = make_relay(rng);
  auto old_key = X25519Keypair::generate(rng);
  auto client = NtorClient::start(relay.identity.public_key(), old_key.public_key, rng);
  const X25519Keypair* keys[] = {&relay.onion, &old_key};
  auto server = ntor_server_handshake(relay.identity.public_key(), keys, client.onion_skin(), rng);
  REQUIRE(server.ok());
  auto hop = client.finish(server->reply);
  REQUIRE(hop.ok());
  CHECK(same_keys(*hop, server->keys));
}

TEST_CASE("ntor: a relay refuses an onion skin for another identity or onion key") {
  DeterministicRng rng(3);
  Relay relay = make_relay(rng);
  Relay other = make_relay(rng);

  auto wrong_id = NtorClient::start(other.identity.public_key(), relay.onion.public_key, rng);
  auto r1 = serve(relay, wrong_id.onion_skin(), rng);
  REQUIRE_FALSE(r1.ok());
  CHECK(r1.error().find("identity") != std::string::npos);
  CHECK(r1.error().find(fingerprint(other.identity.public_key())) != std::string::npos);

  auto wrong_onion = NtorClient::start(relay.identity.public_key(), other.onion.public_key, rng);
  auto r2 = serve(relay, wrong_onion.onion_skin(), rng);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().find("onion key") != std::string::npos);
}

TEST_CASE("ntor: a relay without the named onion key cannot produce AUTH") {
  DeterministicRng rng(4);
  Relay relay = make_relay(rng);
  Relay impostor = make_relay(rng);
  // The client names relay's identity and onion key. An impostor on the path rewrites the skin to
  // name its own keys and answers: the client must refuse.
  auto client = NtorClient::start(relay.identity.public_key(), relay.onion.public_key, rng);
  Bytes skin = client.onion_skin();
  std::copy(impostor.identity.public_key().bytes.begin(), impostor.identity.public_key().bytes.end(), skin.begin());
  std::copy(impostor.onion.public_key.bytes.begin(), impostor.onion.public_key.bytes.end(), skin.begin() + 32);
  auto answer = serve(impostor, skin, rng);
  REQUIRE(answer.ok());
  auto keys = client.finish(answer->reply);
  REQUIRE_FALSE(keys.ok());
  CHECK(keys.error().find("AUTH does not match") != std::string::npos);

  // Same identity, different onion key (a stale or forged descriptor): also refused.
  Bytes skin2 = client.onion_skin();
  std::copy(impostor.onion.public_key.bytes.begin(), impostor.onion.public_key.bytes.end(), skin2.begin() + 32);
  const X25519Keypair* keys2[] = {&impostor.onion};
  auto answer2 = ntor_server_handshake(relay.identity.public_key(), keys2, skin2, rng);
  REQUIRE(answer2.ok());
  CHECK_FALSE(client.finish(answer2->reply).ok());
}

TEST_CASE("ntor: every corrupted reply byte is refused; wrong lengths are errors") {
  DeterministicRng rng(5);
  Relay relay = make_relay(rng);
  auto client = NtorClient::start(relay.identity.public_key(), relay.onion.public_key, rng);
  auto server = serve(relay, client.onion_skin(), rng);
  REQUIRE(server.ok());
  for (std::size_t i = 0; i < kNtorReplySize; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = server->reply;
      bad[i] ^= static_cast<std::uint8_t>(1u << bit);
      auto keys = client.finish(bad);
      REQUIRE_FALSE(keys.ok());
      CHECK(keys.error().rfind("ntor: ", 0) == 0);
    }
  }
  CHECK(client.finish(server->reply).ok());  // the untouched reply still works

  Bytes short_reply(server->reply.begin(), server->reply.end() - 1);
  auto r = client.finish(short_reply);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == "ntor: reply is 63 bytes, expected 64");

  Bytes long_skin = client.onion_skin();
  long_skin.push_back(0);
  auto s = serve(relay, long_skin, rng);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error() == "ntor: onion skin is 97 bytes, expected 96");
  CHECK_FALSE(serve(relay, ByteView(), rng).ok());
}

TEST_CASE("ntor: low-order points are refused on both sides") {
  DeterministicRng rng(6);
  Relay relay = make_relay(rng);
  auto client = NtorClient::start(relay.identity.public_key(), relay.onion.public_key, rng);
  Bytes skin = client.onion_skin();
  std::fill(skin.begin() + 64, skin.end(), 0);  // X = 0
  auto s = serve(relay, skin, rng);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().find("low-order") != std::string::npos);

  Bytes reply(kNtorReplySize, 0);  // Y = 0
  auto c = client.finish(reply);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().find("low-order") != std::string::npos);
}
