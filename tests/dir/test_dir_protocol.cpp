#include <doctest/doctest.h>

#include "common/crypto/encoding.hpp"
#include "common/dir/dir_protocol.hpp"
#include "common/dir/dir_session.hpp"
#include "tests/dir/dir_test_support.hpp"

using namespace thor;
using namespace thor::dir;
using nlohmann::json;

namespace {
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Bytes raw_frame(std::uint32_t len, std::string_view payload) {
  Bytes out;
  Writer(out).u32(len).bytes(payload);
  return out;
}

json decode_one(const Bytes& frame) {
  auto d = decode_frame(frame);
  REQUIRE(d.is_ok());
  CHECK(d.consumed == frame.size());
  return *d.value;
}
}  // namespace

TEST_CASE("frames: exact bytes, byte-at-a-time, several in one read") {
  Bytes f = encode_frame(json{{"type", "get_consensus"}});
  const std::string payload = "{\"type\":\"get_consensus\"}";
  CHECK(f == raw_frame(static_cast<std::uint32_t>(payload.size()), payload));

  FrameReader r;
  for (std::size_t i = 0; i + 1 < f.size(); ++i) {
    r.append(ByteView(&f[i], 1));
    CHECK(r.next().is_incomplete());
  }
  r.append(ByteView(&f.back(), 1));
  auto d = r.next();
  REQUIRE(d.is_ok());
  CHECK(message_type(*d.value) == "get_consensus");
  CHECK(r.next().is_incomplete());
  CHECK(r.buffered() == 0);

  Bytes two = encode_frame(make_heartbeat(1));
  Bytes second = encode_frame(make_heartbeat(2));
  two.insert(two.end(), second.begin(), second.end());
  two.push_back(0);  // the first byte of a third frame
  r.append(two);
  CHECK(*parse_heartbeat(*r.next().value) == 1);
  CHECK(*parse_heartbeat(*r.next().value) == 2);
  CHECK(r.next().is_incomplete());
  CHECK(r.buffered() == 1);
}

TEST_CASE("frames: oversized, empty and garbage are invalid, and invalid is final") {
  auto big = decode_frame(raw_frame(kMaxFrameBytes + 1, ""));
  REQUIRE(big.is_invalid());
  CHECK(contains(big.error, "larger than the limit"));
  // The limit is known from the header alone: no need to wait for a megabyte.
  CHECK(decode_frame(raw_frame(0xffffffff, "")).is_invalid());
  CHECK(decode_frame(raw_frame(kMaxFrameBytes, "{")).is_incomplete());
  CHECK(decode_frame(raw_frame(0, "")).is_invalid());
  CHECK(contains(decode_frame(raw_frame(5, "hello")).error, "not valid JSON"));
  CHECK(contains(decode_frame(raw_frame(2, "[]")).error, "not a JSON object"));
  CHECK(contains(decode_frame(raw_frame(2, "{}")).error, "no \"type\""));
  CHECK(contains(decode_frame(raw_frame(10, "{\"type\":1}")).error, "no \"type\""));
  std::string deep = "{\"type\":\"x\",\"a\":" + std::string(40, '[') + std::string(40, ']') + "}";
  CHECK(contains(decode_frame(raw_frame(static_cast<std::uint32_t>(deep.size()), deep)).error, "nested"));

  FrameReader r;
  r.append(raw_frame(5, "hello"));
  CHECK(r.next().is_invalid());
  r.append(encode_frame(make_get_consensus()));
  CHECK(r.next().is_invalid());
  CHECK(decode_frame({}).is_incomplete());
  std::uint8_t three[3] = {0, 0, 0};
  CHECK(decode_frame(three).is_incomplete());
}

TEST_CASE("messages: builders and parsers agree; parsers refuse what is wrong") {
  Nonce n{};
  n[0] = 7;
  auto h = parse_hello(decode_one(encode_frame(make_hello(n))));
  REQUIRE(h);
  CHECK(h->nonce == n);
  CHECK(contains(parse_hello(json{{"type", "hello"}, {"version", 2}, {"nonce", crypto::to_base64(n)}}).error(),
                 "unsupported protocol version"));
  CHECK(contains(parse_hello(json{{"type", "hello"}, {"version", 1}, {"nonce", "AAAA"}}).error(), "32 bytes"));
  CHECK(contains(parse_hello(json{{"type", "join"}}).error(), "expected a 'hello'"));

  auto w = parse_welcome(decode_one(encode_frame(make_welcome(150, "AB"))));
  REQUIRE(w);
  CHECK(w->heartbeat_interval_ms == 150);
  CHECK(!parse_welcome(json{{"type", "welcome"}, {"heartbeat_interval_ms", 0}, {"fingerprint", "AB"}}));
  CHECK(!parse_welcome(json{{"type", "welcome"}, {"heartbeat_interval_ms", -5}, {"fingerprint", "AB"}}));
  CHECK(*parse_heartbeat_ack(make_heartbeat_ack(9)) == 9);
  CHECK(!parse_heartbeat(json{{"type", "heartbeat"}, {"seq", "x"}}));
  CHECK(*parse_error(make_error("nope")) == "nope");
  CHECK(parse_consensus_message(make_consensus_message(json{{"document", json::object()}, {"signature", ""}})));
  CHECK(!parse_consensus_message(json{{"type", "consensus"}, {"consensus", 5}}));
  CHECK(!parse_join(json{{"type", "join"}, {"descriptor", json::object()}, {"proof", "AA=="}}));
  CHECK(message_type(json::array()) == "");
}

namespace {
struct Handshake {
  crypto::DeterministicRng rng{20};
  crypto::IdentityKey directory = crypto::IdentityKey::generate(rng);
  crypto::IdentityKey relay = crypto::IdentityKey::generate(rng);
  Nonce relay_nonce{}, dir_nonce{};
  std::int64_t now = testing::unix_now();
  Handshake() {
    rng.fill(relay_nonce);
    rng.fill(dir_nonce);
  }
  RelayDescriptor descriptor() const { return testing::make_descriptor(relay, 5000, now); }
};
}  // namespace

TEST_CASE("join handshake: challenge and proof verify; every wrong piece is refused") {
  Handshake h;
  auto ch = parse_challenge(make_challenge(h.relay_nonce, h.dir_nonce, h.directory));
  REQUIRE(ch);
  CHECK(check_challenge(*ch, h.relay_nonce, h.directory.public_key()));
  // The relay pins another key, or the challenge signed another nonce.
  auto other = crypto::IdentityKey::generate(h.rng);
  CHECK(contains(check_challenge(*ch, h.relay_nonce, other.public_key()).error(), "not the pinned"));
  Nonce stale = h.relay_nonce;
  stale[0] ^= 1;
  CHECK(contains(check_challenge(*ch, stale, h.directory.public_key()).error(), "does not verify"));
  // An impostor who claims the pinned key but cannot sign.
  auto forged = parse_challenge(make_challenge(h.relay_nonce, h.dir_nonce, other));
  forged->directory_key = h.directory.public_key();
  CHECK(!check_challenge(*forged, h.relay_nonce, h.directory.public_key()));

  auto join = parse_join(build_join(h.descriptor(), h.relay, h.relay_nonce, h.dir_nonce, h.directory.public_key()));
  REQUIRE(join);
  auto d = verify_join(*join, h.relay_nonce, h.dir_nonce, h.directory.public_key(), h.now);
  REQUIRE_MESSAGE(d, testing::why(d));
  CHECK(d->identity == h.relay.public_key());

  // Replayed into another handshake (other directory nonce): the proof no longer verifies.
  Nonce other_nonce = h.dir_nonce;
  other_nonce[31] ^= 0x80;
  CHECK(contains(verify_join(*join, h.relay_nonce, other_nonce, h.directory.public_key(), h.now).error(),
                 "join proof does not verify"));
  // A proof for a different descriptor (a man in the middle swapping documents).
  auto swapped = *join;
  swapped.descriptor = sign_descriptor(testing::make_descriptor(h.relay, 5001, h.now), h.relay);
  CHECK(contains(verify_join(swapped, h.relay_nonce, h.dir_nonce, h.directory.public_key(), h.now).error(),
                 "join proof does not verify"));
  // A bad descriptor signature.
  auto badsig = *join;
  badsig.descriptor["document"]["nickname"] = "mallory";
  CHECK(contains(verify_join(badsig, h.relay_nonce, h.dir_nonce, h.directory.public_key(), h.now).error(),
                 "descriptor signature does not verify"));
  // Published too far from the directory's clock.
  CHECK(contains(verify_join(*join, h.relay_nonce, h.dir_nonce, h.directory.public_key(),
                             h.now + kMaxPublishedSkewSeconds + 1)
                     .error(),
                 "too old"));
  CHECK(contains(verify_join(*join, h.relay_nonce, h.dir_nonce, h.directory.public_key(),
                             h.now - kMaxPublishedSkewSeconds - 1)
                     .error(),
                 "future"));
}

TEST_CASE("directory session: hello, challenge, join, heartbeat, get_consensus, and refusals") {
  crypto::DeterministicRng rng(30);
  auto directory = crypto::IdentityKey::generate(rng);
  auto relay = crypto::IdentityKey::generate(rng);
  Membership members(Membership::Limits{100, 10, 1000000});
  DirectorySession::Env env{&directory, &members, &rng, 100};
  const std::int64_t now_ms = testing::unix_now() * 1000;

  DirectorySession s(env, 1);
  // Anyone may ask for the consensus, at any time.
  CHECK(s.on_message(make_get_consensus(), now_ms).send_consensus);
  // Out of order: join before hello.
  {
    DirectorySession early(env, 2);
    auto out = early.on_message(json{{"type", "join"}}, now_ms);
    CHECK(out.close);
    CHECK(contains(out.problem, "join before hello"));
    CHECK(message_type(decode_one(out.frames.at(0))) == "error");
  }

  Nonce rn{};
  rng.fill(rn);
  auto out = s.on_message(make_hello(rn), now_ms);
  REQUIRE(out.frames.size() == 1);
  auto ch = parse_challenge(decode_one(out.frames[0]));
  REQUIRE(ch);
  REQUIRE(check_challenge(*ch, rn, directory.public_key()));

  auto d = testing::make_descriptor(relay, 5000, now_ms / 1000);
  out = s.on_message(build_join(d, relay, rn, ch->nonce, directory.public_key()), now_ms);
  REQUIRE_MESSAGE(!out.close, out.problem);
  CHECK(out.membership_changed);
  auto w = parse_welcome(decode_one(out.frames.at(0)));
  REQUIRE(w);
  CHECK(w->heartbeat_interval_ms == 100);
  CHECK(w->fingerprint == crypto::fingerprint(relay.public_key()));
  CHECK(s.state() == DirectorySession::State::joined);
  CHECK(members.running_count() == 1);

  out = s.on_message(make_heartbeat(5), now_ms + 50);
  CHECK(*parse_heartbeat_ack(decode_one(out.frames.at(0))) == 5);
  CHECK(members.find(relay.public_key())->last_heartbeat_ms == now_ms + 50);

  // A second join on the same connection is refused; an unknown type too.
  DirectorySession s2(env, 3);
  s2.on_message(make_hello(rn), now_ms);
  auto unknown = s2.on_message(json{{"type", "teleport"}}, now_ms);
  CHECK(unknown.close);
  CHECK(contains(unknown.problem, "unknown message type 'teleport'"));

  // The connection drops: not running at once.
  CHECK(s.on_closed(now_ms + 60));
  CHECK(members.running_count() == 0);
}

TEST_CASE("directory session: a join with a bad signature gets an error reply and counts as refused") {
  crypto::DeterministicRng rng(31);
  auto directory = crypto::IdentityKey::generate(rng);
  auto relay = crypto::IdentityKey::generate(rng);
  Membership members(Membership::Limits{100, 10, 1000000});
  DirectorySession::Env env{&directory, &members, &rng, 100};
  const std::int64_t now_ms = testing::unix_now() * 1000;
  DirectorySession s(env, 1);
  Nonce rn{};
  auto ch = parse_challenge(decode_one(s.on_message(make_hello(rn), now_ms).frames.at(0)));
  json join = build_join(testing::make_descriptor(relay, 5000, now_ms / 1000), relay, rn, ch->nonce,
                         directory.public_key());
  join["descriptor"]["document"]["bandwidth"] = 1;  // breaks the descriptor signature
  auto out = s.on_message(join, now_ms);
  CHECK(out.close);
  auto reason = parse_error(decode_one(out.frames.at(0)));
  REQUIRE(reason);
  CHECK(contains(*reason, "join refused: descriptor signature does not verify"));
  CHECK(members.counters().joins_refused == 1);
  CHECK(members.running_count() == 0);
}
