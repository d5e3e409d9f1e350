#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/crypto/aead.hpp"
#include "common/crypto/encoding.hpp"
#include "common/crypto/hash.hpp"
#include "common/crypto/link_session.hpp"

using namespace thor;
using namespace thor::crypto;

namespace {

Bytes make_cell(std::uint32_t i) {
  Bytes c(kCellSize);
  for (std::size_t j = 0; j < c.size(); ++j) c[j] = static_cast<std::uint8_t>(i * 7 + j);
  c[0] = static_cast<std::uint8_t>(i >> 24);  // cells differ in their first bytes too
  c[1] = static_cast<std::uint8_t>(i >> 16);
  c[2] = static_cast<std::uint8_t>(i >> 8);
  c[3] = static_cast<std::uint8_t>(i);
  return c;
}

struct Inbox {
  std::vector<Bytes> cells;
  std::function<void(ByteView)> sink() {
    return [this](ByteView c) { cells.emplace_back(c.begin(), c.end()); };
  }
};

Bytes take(LinkSession& s) {
  Bytes out;
  s.take_output(out);
  return out;
}

// Delivers `data` to `to` in pieces of at most `chunk` bytes.
Status feed(LinkSession& to, ByteView data, Inbox& inbox, std::size_t chunk) {
  auto sink = inbox.sink();
  while (!data.empty()) {
    const std::size_t n = std::min(chunk, data.size());
    if (Status st = to.receive(data.first(n), sink); !st) return st;
    data = data.subspan(n);
  }
  return {};
}

// Moves output both ways until neither side has anything to say.
void pump(LinkSession& a, Inbox& at_a, LinkSession& b, Inbox& at_b, std::size_t chunk = SIZE_MAX) {
  for (int round = 0; round < 100 && (a.has_output() || b.has_output()); ++round) {
    if (a.has_output()) REQUIRE(feed(b, take(a), at_b, chunk).ok());
    if (b.has_output()) REQUIRE(feed(a, take(b), at_a, chunk).ok());
  }
  REQUIRE_FALSE(a.has_output());
  REQUIRE_FALSE(b.has_output());
}

struct Keys {
  IdentityKey responder, initiator;
};
Keys make_keys() {
  DeterministicRng krng(13);
  auto r = IdentityKey::generate(krng);
  auto i = IdentityKey::generate(krng);
  return Keys{r, i};
}

// A hand-built initiator that follows link_session.hpp from the primitives, so the test can send
// what a real session never would (a bad signature, a malformed or misplaced record) and check the
// key schedule independently of LinkSession.
constexpr LinkCipherSet kChaCha = cipher_bit(LinkCipher::chacha20_poly1305);
constexpr LinkCipherSet kAes = cipher_bit(LinkCipher::aes256_gcm);
bool have_aes() { return (supported_link_ciphers() & kAes) != 0; }

struct RawInitiator {
  X25519Keypair e;
  LinkCipherSet offered = kChaCha;
  Bytes hello;
  LinkCipher cipher = LinkCipher::chacha20_poly1305;
  SymmetricKey i2r, r2i;
  std::array<std::uint8_t, 32> th{};
  std::uint64_t sent = 0;

  explicit RawInitiator(Rng& rng) : e(X25519Keypair::generate(rng)) {
    Writer(hello).bytes("THOR").u8(2).u8(offered).bytes(e.public_key.view());
  }
  void on_response(ByteView response) {
    REQUIRE(response.size() == kLinkResponseSize);
    X25519Public e_r = *X25519Public::from(response.first(32));
    const std::uint8_t chosen = response[32];
    REQUIRE(chosen == offered);
    cipher = static_cast<LinkCipher>(chosen);
    Ed25519Public id_r = *Ed25519Public::from(response.subspan(33, 32));
    const std::uint8_t negotiated[2] = {offered, chosen};
    th = blake2b_256({as_bytes("thor-link-v2"), ByteView(negotiated), e.public_key.view(), e_r.view(), id_r.view()});
    auto shared = x25519(e.secret, e_r);
    REQUIRE(shared);
    SymmetricKey prk;
    prk.bytes = blake2b_256({shared->view()}, ByteView(th));
    std::array<std::uint8_t, 64> k{};
    kdf_expand(prk, "thor-link-v2 keys", k);
    std::copy_n(k.begin(), 32, i2r.bytes.begin());
    std::copy_n(k.begin() + 32, 32, r2i.bytes.begin());
  }
  Bytes record(ByteView plaintext) {
    Bytes r;
    Writer(r).u16(static_cast<std::uint16_t>(plaintext.size() + kAeadTagSize)).bytes(plaintext).zeros(kAeadTagSize);
    MutableByteView m(r);
    aead_seal(cipher, i2r, sent++, m.first(2), m.subspan(2, plaintext.size()), m.subspan(2 + plaintext.size()));
    return r;
  }
  Bytes auth(const IdentityKey& as, ByteView signed_part) {
    Bytes a;
    Writer(a).u8(1).bytes(as.public_key().view()).bytes(as.sign(signed_part).view());
    return a;
  }
  Bytes signed_part() const {
    Bytes m;
    Writer(m).bytes("thor-link-v2 initiator").bytes(ByteView(th));
    return m;
  }
};

// A responder that has answered a RawInitiator's hello.
struct RawPair {
  DeterministicRng rrng{21}, irng{22};
  Keys keys = make_keys();
  LinkSession responder = LinkSession::responder(keys.responder, rrng);
  RawInitiator raw{irng};
  Inbox inbox;
  RawPair() {
    REQUIRE(feed(responder, raw.hello, inbox, SIZE_MAX).ok());
    raw.on_response(take(responder));
  }
};

// An initiator and responder that have exchanged hello and response; the initiator's output (auth
// record and the cells it held) has not been delivered yet.
struct Handshaken {
  DeterministicRng irng{31}, rrng{32};
  Keys keys = make_keys();
  LinkSession initiator, responder;
  Inbox at_initiator, at_responder;
  explicit Handshaken(bool relay_initiator, int held_cells = 0)
      : initiator(LinkSession::initiator(keys.responder.public_key(), relay_initiator ? &keys.initiator : nullptr, irng)),
        responder(LinkSession::responder(keys.responder, rrng)) {
    for (int i = 0; i < held_cells; ++i) initiator.queue_cell(make_cell(static_cast<std::uint32_t>(i)));
    REQUIRE(feed(responder, take(initiator), at_responder, SIZE_MAX).ok());
    REQUIRE(feed(initiator, take(responder), at_initiator, SIZE_MAX).ok());
    REQUIRE(initiator.established());
  }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// Computed with an independent implementation of link_session.hpp (Python: hashlib.blake2b, the
// cryptography package's X25519, Ed25519, ChaCha20-Poly1305 and AES-GCM, DeterministicRng over
// ChaCha20), once for each record cipher.
struct LinkVector {
  LinkCipherSet ciphers;  // offered by the initiator and accepted by the responder
  const char* hello;
  const char* response;
  const char* auth_record;  // the first 115 bytes the initiator sends after the response
  const char* initiator_out_digest;
  const char* responder_out_digest;
};

void check_link_vector(const LinkVector& v) {
  Keys keys = make_keys();
  DeterministicRng irng(11), rrng(12);
  auto initiator = LinkSession::initiator(keys.responder.public_key(), &keys.initiator, irng, v.ciphers);
  auto responder = LinkSession::responder(keys.responder, rrng, v.ciphers);
  initiator.queue_cell(make_cell(0));
  initiator.queue_cell(make_cell(1));

  Bytes hello = take(initiator);
  CHECK(to_hex(hello) == v.hello);
  CHECK(hello.size() == kLinkHelloSize);
  Inbox at_r, at_i;
  REQUIRE(feed(responder, hello, at_r, SIZE_MAX).ok());
  Bytes response = take(responder);
  CHECK(to_hex(response) == v.response);
  CHECK(response.size() == kLinkResponseSize);
  REQUIRE(feed(initiator, response, at_i, SIZE_MAX).ok());

  // The auth record and the held cells leave together, the cells sealed into one record.
  Bytes out = take(initiator);
  REQUIRE(out.size() == (2 + 97 + 16) + (2 + 2 * kCellSize + 16));
  CHECK(to_hex(ByteView(out).first(115)) == v.auth_record);
  CHECK(to_hex(ByteView(blake2b_256({ByteView(out)}))) == v.initiator_out_digest);

  REQUIRE(feed(responder, out, at_r, SIZE_MAX).ok());
  REQUIRE(at_r.cells.size() == 2);
  CHECK(at_r.cells[0] == make_cell(0));
  CHECK(at_r.cells[1] == make_cell(1));

  Bytes rcell(kCellSize);
  for (std::size_t j = 0; j < rcell.size(); ++j) rcell[j] = static_cast<std::uint8_t>(3 * j + 1);
  responder.queue_cell(rcell);
  Bytes rout = take(responder);
  CHECK(to_hex(ByteView(blake2b_256({ByteView(rout)}))) == v.responder_out_digest);
  REQUIRE(feed(initiator, rout, at_i, SIZE_MAX).ok());
  REQUIRE(at_i.cells.size() == 1);
  CHECK(at_i.cells[0] == rcell);
  CHECK(initiator.cipher() == std::optional<LinkCipher>(static_cast<LinkCipher>(v.ciphers & kAes ? kAes : kChaCha)));
  CHECK(responder.cipher() == initiator.cipher());
}

TEST_CASE("link known-answer vector, ChaCha20-Poly1305: hello, response, auth record and data records") {
  check_link_vector(LinkVector{
      kChaCha,
      "54484f5202018eb4dacec87997b308e4d7423a1f403991850941a9ffed7d3708555aeca2fb6b",
      "7a69ad5438cfd1a437051638ef0e76a3aa11f33e49fa5fcedb170e46ab917323017f79815069a9cfd095578fefffce5e8ca471b396d0adc87f"
      "89d49d622ba1ae5e274e7408c1e72ed9de46f63637cf9d1a9ab972a6708b911a29804abc3bb30d3315106af60aa8fd5ae51f102ae59664ba"
      "e24201b211f470b10f9e7d93978cf60a",
      "00717b3baa5617f149ddb1a8b1edad32351f626caa225cf82662ae4ca2d0806624ad7f8379bd06599fe41c48119b6d3644fb357394ff8e36"
      "eba9727315ea114ff85c6c530d3152fbb188ded30f0df6194dc9cd057fabaa422ecf56b8d444af2982efa8ac0fbb733b31a6fc4147f1d0"
      "92eb15fe",
      "3726defaedd475f694ba7a2c8456f00ddd19c5eb867e6580338cd5a13d9635f6",
      "2b4f3bb028b9f834f11989ced6a6aeb0a87f74a8111eb28ddbad6f6294b42d85",
  });
}

TEST_CASE("link known-answer vector, AES-256-GCM: hello, response, auth record and data records") {
  if (!have_aes()) {
    MESSAGE("this CPU has no AES-GCM instructions: AES-256-GCM is never offered here, nothing to check");
    return;
  }
  check_link_vector(LinkVector{
      kChaCha | kAes,
      "54484f5202038eb4dacec87997b308e4d7423a1f403991850941a9ffed7d3708555aeca2fb6b",
      "7a69ad5438cfd1a437051638ef0e76a3aa11f33e49fa5fcedb170e46ab917323027f79815069a9cfd095578fefffce5e8ca471b396d0adc87f"
      "89d49d622ba1ae5e66d3bb8cd791963aa95b5a6b6fecbe10dbc84a1665fc6ca1eaba434071c20e3ab7830503f6e8b48347eee099690d3d9b"
      "ba0dfcc85f5fd24cb3d7aaa15fcff70a",
      "0071cc36836dc46b6e020d897d55c9c6c1abc99a218829d583d2e57351147701ce57bdfcebb4ac39ad3cf5ab52d92d46e599fedbe77d9483"
      "5cef9604e04f7e8d2467256dbfdfa282a1ab48000483d7a4c628d8719b59c56b1121dbee6a49fb7ac8ae9bc60fb80f3b957aa34c10ec90dd"
      "fc4623",
      "a69b7a27458fc225dcc03c718ef5f0318ce249be6c77ba75f1944415eb784ecb",
      "c09bc3503346c74cb79be39441ed0a5f6e22eaace00b7d750e3ad56b80449174",
  });
}

TEST_CASE("link: cipher negotiation picks AES-256-GCM only when both sides have it") {
  struct Case {
    LinkCipherSet offer, accept;
    std::optional<LinkCipher> expect;
  };
  std::vector<Case> cases = {
      {kChaCha, kChaCha, LinkCipher::chacha20_poly1305},
      {kChaCha, kChaCha | kAes, LinkCipher::chacha20_poly1305},
      {kChaCha | kAes, kChaCha, LinkCipher::chacha20_poly1305},
      {kAes, kChaCha, std::nullopt},
  };
  if (have_aes()) {
    cases.push_back({kChaCha | kAes, kChaCha | kAes, LinkCipher::aes256_gcm});
    cases.push_back({kAes, kAes, LinkCipher::aes256_gcm});
  }
  for (const Case& c : cases) {
    CAPTURE(int(c.offer));
    CAPTURE(int(c.accept));
    Keys keys = make_keys();
    DeterministicRng irng(81), rrng(82);
    auto initiator = LinkSession::initiator(keys.responder.public_key(), nullptr, irng, c.offer);
    auto responder = LinkSession::responder(keys.responder, rrng, c.accept);
    Inbox at_i, at_r;
    if (!c.expect) {
      Status st = feed(responder, take(initiator), at_r, SIZE_MAX);
      REQUIRE_FALSE(st.ok());
      CHECK(st.error() == "link: no cipher in common: the initiator offers AES-256-GCM, this node accepts ChaCha20-Poly1305");
      CHECK_FALSE(responder.has_output());
      continue;
    }
    initiator.queue_cell(make_cell(7));
    pump(initiator, at_i, responder, at_r);
    REQUIRE(responder.established());
    CHECK(initiator.cipher() == c.expect);
    CHECK(responder.cipher() == c.expect);
    REQUIRE(at_r.cells.size() == 1);
    CHECK(at_r.cells[0] == make_cell(7));
  }
}

TEST_CASE("link: an offer narrowed on the way (a downgrade) fails the initiator's signature check") {
  Keys keys = make_keys();
  DeterministicRng irng(83), rrng(84);
  auto initiator = LinkSession::initiator(keys.responder.public_key(), nullptr, irng, kChaCha | kAes);
  auto responder = LinkSession::responder(keys.responder, rrng, kChaCha | kAes);
  Inbox at_i, at_r;
  Bytes hello = take(initiator);
  REQUIRE(hello[5] == (kChaCha | kAes));
  hello[5] = kChaCha;  // someone on the path strips AES-256-GCM from the offer
  REQUIRE(feed(responder, hello, at_r, SIZE_MAX).ok());
  Bytes response = take(responder);
  CHECK(response[32] == kChaCha);  // the responder answered the offer it saw...
  Status st = feed(initiator, response, at_i, SIZE_MAX);
  REQUIRE_FALSE(st.ok());  // ...which is not the one the initiator made
  CHECK(contains(st.error(), "responder's signature does not verify"));
  CHECK_FALSE(initiator.established());
}

TEST_CASE("link: the initiator refuses a signed choice of a cipher it did not offer") {
  // A responder (hand-built: a real one never does this) that signs a choice outside the offer.
  Keys keys = make_keys();
  DeterministicRng irng(85), rrng(86);
  X25519Keypair e_r = X25519Keypair::generate(rrng);
  for (std::uint8_t chosen : {std::uint8_t{0x02}, std::uint8_t{0x03}, std::uint8_t{0x00}, std::uint8_t{0x80}}) {
    CAPTURE(int(chosen));
    auto fresh = LinkSession::initiator(keys.responder.public_key(), nullptr, irng, kChaCha);
    Bytes h = take(fresh);
    Bytes signed_part;
    Writer(signed_part).bytes("thor-link-v2 responder").u8(kChaCha).u8(chosen).bytes(ByteView(h).subspan(6, 32))
        .bytes(e_r.public_key.view());
    Bytes response;
    Writer(response).bytes(e_r.public_key.view()).u8(chosen).bytes(keys.responder.public_key().view())
        .bytes(keys.responder.sign(signed_part).view());
    Inbox at_i;
    Status st = fresh.receive(response, at_i.sink());
    REQUIRE_FALSE(st.ok());
    CHECK(contains(st.error(), "link: responder chose cipher 0x"));
    CHECK(contains(st.error(), "which is not one we offered (ChaCha20-Poly1305)"));
    CHECK_FALSE(fresh.established());
  }
}

TEST_CASE("link: cells both ways, in order, with identities proven") {
  for (bool relay_initiator : {false, true}) {
    CAPTURE(relay_initiator);
    Keys keys = make_keys();
    DeterministicRng irng(1), rrng(2);
    auto initiator = LinkSession::initiator(keys.responder.public_key(), relay_initiator ? &keys.initiator : nullptr, irng);
    auto responder = LinkSession::responder(keys.responder, rrng);
    CHECK_FALSE(initiator.established());
    CHECK_FALSE(responder.established());
    CHECK_FALSE(initiator.peer_identity());
    CHECK(initiator.has_output());  // the hello
    CHECK_FALSE(responder.has_output());

    Inbox at_i, at_r;
    for (std::uint32_t i = 0; i < 10; ++i) initiator.queue_cell(make_cell(i));  // held until established
    for (std::uint32_t i = 0; i < 5; ++i) responder.queue_cell(make_cell(1000 + i));
    pump(initiator, at_i, responder, at_r);
    REQUIRE(initiator.established());
    REQUIRE(responder.established());
    CHECK(initiator.peer_identity() == std::optional<Ed25519Public>(keys.responder.public_key()));
    if (relay_initiator)
      CHECK(responder.peer_identity() == std::optional<Ed25519Public>(keys.initiator.public_key()));
    else
      CHECK_FALSE(responder.peer_identity().has_value());

    for (std::uint32_t i = 10; i < 700; ++i) initiator.queue_cell(make_cell(i));
    for (std::uint32_t i = 5; i < 400; ++i) responder.queue_cell(make_cell(1000 + i));
    pump(initiator, at_i, responder, at_r);
    REQUIRE(at_r.cells.size() == 700);
    REQUIRE(at_i.cells.size() == 400);
    for (std::uint32_t i = 0; i < 700; ++i) REQUIRE(at_r.cells[i] == make_cell(i));
    for (std::uint32_t i = 0; i < 400; ++i) REQUIRE(at_i.cells[i] == make_cell(1000 + i));
  }
}

TEST_CASE("link: queued cells are sealed up to 127 per record") {
  Handshaken h(false);
  REQUIRE(feed(h.responder, take(h.initiator), h.at_responder, SIZE_MAX).ok());
  for (std::uint32_t i = 0; i < 300; ++i) h.initiator.queue_cell(make_cell(i));
  Bytes out = take(h.initiator);
  // 127 + 127 + 46 cells: three records, each 2 length bytes and a 16-byte tag around its cells.
  CHECK(out.size() == 300 * kCellSize + 3 * (2 + 16));
  CHECK(((out[0] << 8) | out[1]) == 127 * kCellSize + 16);
  CHECK(((out[2 + 127 * kCellSize + 16] << 8) | out[3 + 127 * kCellSize + 16]) == 127 * kCellSize + 16);
  REQUIRE(feed(h.responder, out, h.at_responder, SIZE_MAX).ok());
  CHECK(h.at_responder.cells.size() == 300);

  // take_output appends when the caller's buffer is not empty.
  h.initiator.queue_cell(make_cell(1));
  Bytes both{0xAB};
  h.initiator.take_output(both);
  CHECK(both.size() == 1 + kCellSize + 18);
  CHECK(both[0] == 0xAB);
  CHECK_FALSE(h.initiator.has_output());
}

TEST_CASE("link: queue_cell_slot gives the same records as queue_cell, before and after the handshake") {
  // Two identical pairs (same seeds): one queues by copy, the other fills slots.
  auto queue = [](LinkSession& s, std::uint32_t i, bool slot) {
    Bytes c = make_cell(i);
    if (!slot) {
      s.queue_cell(c);
      return;
    }
    MutableByteView room = s.queue_cell_slot();
    REQUIRE(room.size() == kCellSize);
    std::copy(c.begin(), c.end(), room.begin());
  };
  Bytes wire[2];
  for (int slot = 0; slot < 2; ++slot) {
    DeterministicRng irng(71), rrng(72);
    Keys keys = make_keys();
    LinkSession initiator = LinkSession::initiator(keys.responder.public_key(), nullptr, irng);
    LinkSession responder = LinkSession::responder(keys.responder, rrng);
    Inbox at_initiator, at_responder;
    for (std::uint32_t i = 0; i < 5; ++i) queue(initiator, i, slot == 1);  // held until established
    Bytes hello = take(initiator);
    REQUIRE(feed(responder, hello, at_responder, SIZE_MAX).ok());
    REQUIRE(feed(initiator, take(responder), at_initiator, SIZE_MAX).ok());
    for (std::uint32_t i = 5; i < 300; ++i) queue(initiator, i, slot == 1);  // 127 + 127 + 46
    wire[slot] = take(initiator);
    REQUIRE(feed(responder, wire[slot], at_responder, SIZE_MAX).ok());
    REQUIRE(at_responder.cells.size() == 300);
    for (std::uint32_t i = 0; i < 300; ++i) CHECK(at_responder.cells[i] == make_cell(i));
  }
  CHECK(wire[0] == wire[1]);
}

TEST_CASE("link: byte-at-a-time and arbitrary fragments, several records per delivery") {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{37}, std::size_t{513},
                            std::size_t{1000}, std::size_t{70000}}) {
    CAPTURE(chunk);
    Keys keys = make_keys();
    DeterministicRng irng(3), rrng(4);
    auto initiator = LinkSession::initiator(keys.responder.public_key(), &keys.initiator, irng);
    auto responder = LinkSession::responder(keys.responder, rrng);
    Inbox at_i, at_r;
    initiator.queue_cell(make_cell(0));
    pump(initiator, at_i, responder, at_r, chunk);
    REQUIRE(responder.established());
    REQUIRE(at_r.cells.size() == 1);
    // Several records in one output: a full one, a partial one, then more after a flush.
    for (std::uint32_t i = 1; i < 200; ++i) initiator.queue_cell(make_cell(i));
    for (std::uint32_t i = 0; i < 130; ++i) responder.queue_cell(make_cell(5000 + i));
    pump(initiator, at_i, responder, at_r, chunk);
    REQUIRE(at_r.cells.size() == 200);
    REQUIRE(at_i.cells.size() == 130);
    for (std::uint32_t i = 0; i < 200; ++i) REQUIRE(at_r.cells[i] == make_cell(i));
    for (std::uint32_t i = 0; i < 130; ++i) REQUIRE(at_i.cells[i] == make_cell(5000 + i));
  }
}

TEST_CASE("link: random fragmentation of a long stream") {
  Handshaken h(true);
  DeterministicRng rng(5);
  Bytes stream = take(h.initiator);  // the auth record
  for (std::uint32_t i = 0; i < 1000; ++i) {
    h.initiator.queue_cell(make_cell(i));
    if (rng.uniform(50) == 0) {
      Bytes part = take(h.initiator);
      stream.insert(stream.end(), part.begin(), part.end());
    }
  }
  Bytes rest = take(h.initiator);
  stream.insert(stream.end(), rest.begin(), rest.end());
  ByteView left(stream);
  auto sink = h.at_responder.sink();
  while (!left.empty()) {
    std::size_t n = std::min<std::size_t>(left.size(), 1 + rng.uniform(3000));
    REQUIRE(h.responder.receive(left.first(n), sink).ok());
    left = left.subspan(n);
  }
  REQUIRE(h.at_responder.cells.size() == 1000);
  for (std::uint32_t i = 0; i < 1000; ++i) REQUIRE(h.at_responder.cells[i] == make_cell(i));
}

TEST_CASE("link: the initiator refuses a responder with another identity") {
  Keys keys = make_keys();
  DeterministicRng krng(40), irng(41), rrng(42);
  IdentityKey impostor = IdentityKey::generate(krng);
  auto initiator = LinkSession::initiator(keys.responder.public_key(), nullptr, irng);
  auto responder = LinkSession::responder(impostor, rrng);
  initiator.queue_cell(make_cell(0));
  Inbox at_i, at_r;
  REQUIRE(feed(responder, take(initiator), at_r, SIZE_MAX).ok());
  Status st = feed(initiator, take(responder), at_i, SIZE_MAX);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error() == "link: responder proved identity " + fingerprint(impostor.public_key()) + ", expected " +
                          fingerprint(keys.responder.public_key()));
  CHECK_FALSE(initiator.established());
  CHECK_FALSE(initiator.peer_identity());
  CHECK_FALSE(initiator.has_output());  // neither the auth record nor the held cell leaves
  // The session stays failed.
  Status again = initiator.receive(Bytes{1, 2, 3}, at_i.sink());
  REQUIRE_FALSE(again.ok());
  CHECK(again.error() == st.error());
}

TEST_CASE("link: a corrupted response (bad signature, key or identity) is refused") {
  Keys keys = make_keys();
  for (std::size_t pos = 0; pos < kLinkResponseSize; ++pos) {
    CAPTURE(pos);
    DeterministicRng irng(43), rrng(44);
    auto initiator = LinkSession::initiator(keys.responder.public_key(), nullptr, irng);
    auto responder = LinkSession::responder(keys.responder, rrng);
    Inbox at_i, at_r;
    REQUIRE(feed(responder, take(initiator), at_r, SIZE_MAX).ok());
    Bytes response = take(responder);
    response[pos] ^= static_cast<std::uint8_t>(1u << (pos % 8));
    Status st = feed(initiator, response, at_i, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(contains(st.error(), "responder's signature does not verify"));
    CHECK_FALSE(initiator.established());
  }
}

TEST_CASE("link: the responder refuses a bad initiator signature and malformed auth records") {
  Keys keys = make_keys();
  DeterministicRng krng(50);
  IdentityKey other = IdentityKey::generate(krng);

  SUBCASE("a well-formed auth record from a hand-built initiator is accepted") {
    RawPair p;
    Bytes good = p.raw.record(p.raw.auth(keys.initiator, p.raw.signed_part()));
    REQUIRE(feed(p.responder, good, p.inbox, SIZE_MAX).ok());
    CHECK(p.responder.established());
    CHECK(p.responder.peer_identity() == std::optional<Ed25519Public>(keys.initiator.public_key()));
    // And the responder's records open under the r2i key derived independently.
    p.responder.queue_cell(make_cell(9));
    Bytes rec = take(p.responder);
    REQUIRE(rec.size() == 2 + kCellSize + 16);
    Bytes plain(kCellSize);
    CHECK(aead_open(p.raw.cipher, p.raw.r2i, 0, ByteView(rec).first(2), ByteView(rec).subspan(2, kCellSize),
                    ByteView(rec).subspan(2 + kCellSize), plain));
    CHECK(plain == make_cell(9));
  }
  SUBCASE("signature by another key than the one claimed") {
    RawPair p;
    Bytes auth = p.raw.auth(keys.initiator, p.raw.signed_part());
    auto forged = other.sign(p.raw.signed_part());
    std::copy(forged.bytes.begin(), forged.bytes.end(), auth.begin() + 33);
    Status st = feed(p.responder, p.raw.record(auth), p.inbox, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == "link: initiator's signature does not verify (it claimed identity " +
                            fingerprint(keys.initiator.public_key()) + ")");
    CHECK_FALSE(p.responder.established());
  }
  SUBCASE("signature over another transcript (a replayed authentication)") {
    RawPair p;
    Bytes stale = p.raw.signed_part();
    stale.back() ^= 1;
    Status st = feed(p.responder, p.raw.record(p.raw.auth(keys.initiator, stale)), p.inbox, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(contains(st.error(), "initiator's signature does not verify"));
  }
  SUBCASE("unknown auth kind") {
    RawPair p;
    Bytes auth = p.raw.auth(keys.initiator, p.raw.signed_part());
    auth[0] = 2;
    Status st = feed(p.responder, p.raw.record(auth), p.inbox, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == "link: malformed authentication record (kind 2, 97 bytes)");
  }
  SUBCASE("anonymous kind with a relay-sized body") {
    RawPair p;
    Bytes auth = p.raw.auth(keys.initiator, p.raw.signed_part());
    auth[0] = 0;
    Status st = feed(p.responder, p.raw.record(auth), p.inbox, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(contains(st.error(), "malformed authentication record"));
  }
  SUBCASE("cells before authentication") {
    RawPair p;
    Status st = feed(p.responder, p.raw.record(make_cell(0)), p.inbox, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() ==
          "link: expected the initiator's authentication record (17 or 113 bytes), got a record of 530 bytes");
    CHECK(p.inbox.cells.empty());
  }
  SUBCASE("records after authentication must hold whole cells, at most 127") {
    RawPair p;
    REQUIRE(feed(p.responder, p.raw.record(Bytes{0}), p.inbox, SIZE_MAX).ok());  // anonymous
    REQUIRE(p.responder.established());
    CHECK_FALSE(p.responder.peer_identity());
    REQUIRE(feed(p.responder, p.raw.record(make_cell(1)), p.inbox, SIZE_MAX).ok());
    CHECK(p.inbox.cells.size() == 1);
    Status st = feed(p.responder, p.raw.record(Bytes(100, 0)), p.inbox, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == "link: record of 116 bytes does not hold whole cells");
  }
  SUBCASE("an oversized record is refused from its length alone") {
    RawPair p;
    REQUIRE(feed(p.responder, p.raw.record(Bytes{0}), p.inbox, SIZE_MAX).ok());
    const std::size_t too_big = 0xffff;
    Bytes header{static_cast<std::uint8_t>(too_big >> 8), static_cast<std::uint8_t>(too_big)};
    Status st = feed(p.responder, header, p.inbox, 1);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == "link: record of " + std::to_string(too_big) + " bytes exceeds the maximum of 65294");
  }
}

TEST_CASE("link: bad magic and bad version are refused at once") {
  Keys keys = make_keys();
  DeterministicRng rrng(60);
  {
    auto r = LinkSession::responder(keys.responder, rrng);
    Inbox in;
    Status st = r.receive(as_bytes("GET / HTTP/1.1\r\n"), in.sink());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == "link: bad magic: the peer does not speak thor-link");
    CHECK_FALSE(r.has_output());
  }
  {
    auto r = LinkSession::responder(keys.responder, rrng);
    Inbox in;
    CHECK(r.receive(as_bytes("T"), in.sink()).ok());  // so far so good
    Status st = r.receive(as_bytes("x"), in.sink());  // fails on the first wrong byte
    REQUIRE_FALSE(st.ok());
    CHECK(contains(st.error(), "bad magic"));
  }
  {
    auto r = LinkSession::responder(keys.responder, rrng);
    Inbox in;
    Bytes hello;
    Writer(hello).bytes("THOR").u8(1).zeros(32);  // a thor-link-v1 hello
    Status st = feed(r, hello, in, 1);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == "link: unsupported link version 1 (we speak 2)");
    CHECK_FALSE(r.has_output());
  }
  {
    auto r = LinkSession::responder(keys.responder, rrng);
    Inbox in;
    Bytes hello;
    Writer(hello).bytes("THOR").u8(2).u8(kChaCha).zeros(32);  // a low-order ephemeral key
    Status st = r.receive(hello, in.sink());
    REQUIRE_FALSE(st.ok());
    CHECK(contains(st.error(), "low-order"));
  }
}

// Every byte of each record type, with one bit flipped, must fail the link and deliver no cell of
// that record: the auth record, a one-cell record, a full 127-cell record (sampled), both ways.
TEST_CASE("link: a flipped bit in any record is an error, and nothing of it is delivered") {
  // Initiator to responder: auth record followed by a one-cell record.
  const Bytes clean = [] {
    Handshaken h(true, 1);
    return take(h.initiator);
  }();
  REQUIRE(clean.size() == 115 + 2 + kCellSize + 16);
  for (std::size_t pos = 0; pos < clean.size(); ++pos) {
    CAPTURE(pos);
    Handshaken h(true, 1);
    Bytes bad = take(h.initiator);
    REQUIRE(bad == clean);
    bad[pos] ^= static_cast<std::uint8_t>(1u << (pos % 8));
    Status st = feed(h.responder, bad, h.at_responder, SIZE_MAX);
    REQUIRE_FALSE(st.ok());
    CHECK(h.at_responder.cells.empty());
    CHECK(st.error().rfind("link: ", 0) == 0);
  }

  // Responder to initiator: a one-cell record, then a full record (every 41st byte and the ends).
  for (std::size_t cells : {std::size_t{1}, kLinkMaxCellsPerRecord}) {
    CAPTURE(cells);
    const std::size_t record_size = 2 + cells * kCellSize + 16;
    for (std::size_t pos = 0; pos < record_size; pos += (cells == 1 || pos < 20 || pos + 20 > record_size) ? 1 : 41) {
      CAPTURE(pos);
      Handshaken h(false);
      REQUIRE(feed(h.responder, take(h.initiator), h.at_responder, SIZE_MAX).ok());
      for (std::uint32_t i = 0; i < cells; ++i) h.responder.queue_cell(make_cell(i));
      Bytes rec = take(h.responder);
      REQUIRE(rec.size() == record_size);
      rec[pos] ^= static_cast<std::uint8_t>(1u << (pos % 8));
      Status st = feed(h.initiator, rec, h.at_initiator, SIZE_MAX);
      REQUIRE_FALSE(st.ok());
      CHECK(h.at_initiator.cells.empty());
    }
  }
}

TEST_CASE("link: records cannot be replayed, reordered or dropped") {
  Handshaken h(false);
  REQUIRE(feed(h.responder, take(h.initiator), h.at_responder, SIZE_MAX).ok());
  h.initiator.queue_cell(make_cell(1));
  Bytes first = take(h.initiator);
  h.initiator.queue_cell(make_cell(2));
  Bytes second = take(h.initiator);
  {
    Status st = feed(h.responder, second, h.at_responder, SIZE_MAX);  // first one dropped
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == "link: record authentication failed (record 1): corrupted or forged bytes on the link");
  }
  Handshaken g(false);
  REQUIRE(feed(g.responder, take(g.initiator), g.at_responder, SIZE_MAX).ok());
  g.initiator.queue_cell(make_cell(1));
  Bytes once = take(g.initiator);
  REQUIRE(feed(g.responder, once, g.at_responder, SIZE_MAX).ok());
  CHECK_FALSE(feed(g.responder, once, g.at_responder, SIZE_MAX).ok());  // replayed
  CHECK(g.at_responder.cells.size() == 1);
}
