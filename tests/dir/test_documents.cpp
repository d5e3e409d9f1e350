#include <doctest/doctest.h>

#include "common/crypto/encoding.hpp"
#include "common/dir/documents.hpp"
#include "tests/dir/dir_test_support.hpp"

using namespace thor;
using namespace thor::dir;
using nlohmann::json;

namespace {
constexpr std::int64_t kNow = 1'700'000'000;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Consensus sample_consensus(const crypto::IdentityKey& dir, const crypto::IdentityKey& a, const crypto::IdentityKey& b) {
  Consensus c;
  c.network = "testnet";
  c.directory = dir.public_key();
  c.valid_after = kNow;
  c.fresh_until = kNow + 60;
  c.valid_until = kNow + 3600;
  ConsensusRelay ra{testing::make_descriptor(a, 5001, kNow, "alpha"), crypto::fingerprint(a.public_key()),
                    kFlagRunning | kFlagValid | kFlagExit};
  ConsensusRelay rb{testing::make_descriptor(b, 5002, kNow, "beta"), crypto::fingerprint(b.public_key()),
                    kFlagRunning | kFlagValid | kFlagFast};
  c.relays = {rb, ra};
  return c;
}
}  // namespace

TEST_CASE("descriptor: canonical JSON, sign, verify, round trip") {
  crypto::DeterministicRng rng(10);
  auto id = crypto::IdentityKey::generate(rng);
  auto d = testing::make_descriptor(id, 5000, kNow, "Relay1");
  json env = sign_descriptor(d, id);
  auto text = canonical_json(env);
  // Sorted keys, no spaces.
  CHECK(text.rfind("{\"document\":{\"address\":\"127.0.0.1\",\"bandwidth\":", 0) == 0);
  CHECK(!contains(text, " \""));
  auto back = verify_descriptor(env);
  REQUIRE_MESSAGE(back, testing::why(back));
  CHECK(canonical_json(descriptor_to_json(*back)) == canonical_json(descriptor_to_json(d)));
  CHECK(back->address.port == 5000);
  CHECK(back->exit_policy.to_string() == d.exit_policy.to_string());
  // Survives a trip through text and the untrusted parser.
  auto parsed = parse_untrusted_json(text);
  REQUIRE(parsed);
  CHECK(verify_descriptor(*parsed));
}

TEST_CASE("descriptor: tampered field, wrong key, bad fields are refused with a clear reason") {
  crypto::DeterministicRng rng(11);
  auto id = crypto::IdentityKey::generate(rng);
  auto other = crypto::IdentityKey::generate(rng);
  json env = sign_descriptor(testing::make_descriptor(id, 5000, kNow), id);

  json tampered = env;
  tampered["document"]["bandwidth"] = 999999999;
  auto r = verify_descriptor(tampered);
  REQUIRE(!r);
  CHECK(contains(r.error(), "signature does not verify"));

  // Signed by another key than the one it names.
  json wrong = sign_descriptor(testing::make_descriptor(id, 5000, kNow), other);
  r = verify_descriptor(wrong);
  REQUIRE(!r);
  CHECK(contains(r.error(), "signature does not verify"));

  struct Case {
    const char* field;
    json value;
    const char* says;
  };
  for (const auto& c : {Case{"nickname", "", "nickname"}, Case{"nickname", "has space", "nickname"},
                        Case{"nickname", "abcdefghijklmnopqrst", "nickname"}, Case{"address", "localhost", "numeric"},
                        Case{"address", "[::1]", "numeric"}, Case{"address", "0.0.0.0", "unspecified"},
                        Case{"address", "0:0::1", "canonical"}, Case{"port", 0, "port"}, Case{"port", 70000, "port"},
                        Case{"port", "80", "port"}, Case{"bandwidth", -1, "bandwidth"}, Case{"bandwidth", 1.5, "bandwidth"},
                        Case{"exit_policy", "allow all", "exit_policy"}, Case{"identity", "AAAA", "identity"},
                        Case{"onion_key", crypto::to_base64(Bytes(32, 0)), "all zeros"},
                        Case{"version", "", "version"}, Case{"published", -5, "published"},
                        Case{"format", "thor-consensus-1", "format"}}) {
    json doc = descriptor_to_json(testing::make_descriptor(id, 5000, kNow));
    doc[c.field] = c.value;
    auto d = descriptor_from_json(doc);
    REQUIRE_MESSAGE(!d, c.field);
    CHECK_MESSAGE(contains(d.error(), c.says), c.field, ": ", d.error());
  }
  json doc = descriptor_to_json(testing::make_descriptor(id, 5000, kNow));
  doc["extra"] = 1;
  CHECK(contains(descriptor_from_json(doc).error(), "unknown field 'extra'"));
  doc = descriptor_to_json(testing::make_descriptor(id, 5000, kNow));
  doc.erase("version");
  CHECK(contains(descriptor_from_json(doc).error(), "missing field 'version'"));
  CHECK(contains(verify_descriptor(json{{"document", 1}, {"signature", "x"}}).error(), "document must be"));
  CHECK(contains(verify_descriptor(json::array()).error(), "expected {"));
}

TEST_CASE("consensus: sign and verify with the pinned key; refuse tampered, wrong key, expired, not yet valid") {
  crypto::DeterministicRng rng(12);
  auto dir = crypto::IdentityKey::generate(rng);
  auto a = crypto::IdentityKey::generate(rng);
  auto b = crypto::IdentityKey::generate(rng);
  auto other = crypto::IdentityKey::generate(rng);
  json env = sign_consensus(sample_consensus(dir, a, b), dir);

  auto c = verify_consensus(env, dir.public_key(), kNow + 10);
  REQUIRE_MESSAGE(c, testing::why(c));
  CHECK(c->network == "testnet");
  REQUIRE(c->relays.size() == 2);
  // Sorted by identity, flags as names, fingerprints checked.
  CHECK(!(c->relays[1].descriptor.identity < c->relays[0].descriptor.identity));
  for (const auto& r : c->relays) {
    CHECK(r.fingerprint == crypto::fingerprint(r.descriptor.identity));
    CHECK(r.has(kFlagRunning));
  }
  auto flags = env["document"]["relays"][0]["flags"];
  CHECK(flags.is_array());

  json tampered = env;
  tampered["document"]["relays"][0]["port"] = 6000;
  auto t = verify_consensus(tampered, dir.public_key(), kNow);
  REQUIRE(!t);
  CHECK(t.error() == "consensus signature does not verify with the pinned directory key (" +
                         crypto::fingerprint(dir.public_key()) + ")");

  auto wrong = verify_consensus(env, other.public_key(), kNow);
  REQUIRE(!wrong);
  CHECK(contains(wrong.error(), "does not verify with the pinned directory key"));

  // Signed by another directory that names itself: still refused against our pin.
  json foreign = sign_consensus(sample_consensus(other, a, b), other);
  CHECK(!verify_consensus(foreign, dir.public_key(), kNow));

  auto expired = verify_consensus(env, dir.public_key(), kNow + 3600 + kConsensusClockSkewSeconds + 1);
  REQUIRE(!expired);
  CHECK(contains(expired.error(), "consensus expired at " + format_utc(kNow + 3600)));
  CHECK(verify_consensus(env, dir.public_key(), kNow + 3600 + kConsensusClockSkewSeconds));  // within skew

  auto early = verify_consensus(env, dir.public_key(), kNow - kConsensusClockSkewSeconds - 1);
  REQUIRE(!early);
  CHECK(contains(early.error(), "not valid until"));

  // The directory key inside the document must be the pinned one even if the signature matches.
  Consensus lying = sample_consensus(dir, a, b);
  lying.directory = other.public_key();
  auto l = verify_consensus(sign_consensus(lying, dir), dir.public_key(), kNow);
  REQUIRE(!l);
  CHECK(contains(l.error(), "not the pinned"));
}

TEST_CASE("consensus: document checks") {
  crypto::DeterministicRng rng(13);
  auto dir = crypto::IdentityKey::generate(rng);
  auto a = crypto::IdentityKey::generate(rng);
  auto b = crypto::IdentityKey::generate(rng);
  json doc = consensus_to_json(sample_consensus(dir, a, b));
  CHECK(consensus_from_json(doc));

  json dup = doc;
  dup["relays"].push_back(dup["relays"][0]);
  CHECK(contains(consensus_from_json(dup).error(), "listed twice"));
  json badfp = doc;
  badfp["relays"][0]["fingerprint"] = "00";
  CHECK(contains(consensus_from_json(badfp).error(), "fingerprint does not match"));
  json times = doc;
  times["valid_until"] = kNow - 1;
  CHECK(contains(consensus_from_json(times).error(), "valid_after <= fresh_until <= valid_until"));
  json unknown_flag = doc;
  unknown_flag["relays"][0]["flags"].push_back("Guard");
  auto u = consensus_from_json(unknown_flag);
  REQUIRE(u);  // unknown flags are ignored, for forward compatibility
  json floaty = doc;
  floaty["valid_after"] = 1.5;
  CHECK(!consensus_from_json(floaty));
}

TEST_CASE("untrusted JSON: depth bound, invalid UTF-8, garbage") {
  CHECK(parse_untrusted_json("{\"a\":[1,2,{\"b\":null}]}"));
  CHECK(!parse_untrusted_json(std::string(100, '[') + std::string(100, ']')));
  CHECK(contains(parse_untrusted_json(std::string(17, '[') + std::string(17, ']')).error(), "nested deeper"));
  CHECK(parse_untrusted_json("[\"[[[[[[[[[[[[[[[[[[[[[[[[\"]"));  // brackets inside strings do not count
  CHECK(!parse_untrusted_json("{\"a\":\"\xff\"}"));
  CHECK(!parse_untrusted_json("{\"a\":1} trailing"));
  CHECK(!parse_untrusted_json(""));
}

TEST_CASE("flags and time format") {
  CHECK(flag_names(kFlagValid | kFlagExit | kFlagRunning) == std::vector<std::string>{"Exit", "Running", "Valid"});
  CHECK(flag_from_name("Fast") == kFlagFast);
  CHECK(flag_from_name("Guard") == 0);
  CHECK(format_utc(0) == "1970-01-01 00:00:00");
  CHECK(format_utc(1700000000) == "2023-11-14 22:13:20");
}
