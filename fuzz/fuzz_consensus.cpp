// Consensus documents from the network: arbitrary bytes as a signed envelope, and a genuine signed
// consensus with one field (or one relay's field) replaced by fuzz. Verification never crashes and
// never accepts a document the pinned key did not sign.
#include <cstdint>
#include <string>

#include "common/dir/documents.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::dir;
using nlohmann::json;
using thor::fuzz::require;

namespace {

constexpr std::int64_t kNow = 1700000000;

const crypto::IdentityKey& key(int which) {
  static const crypto::IdentityKey keys[3] = {
      [] { crypto::DeterministicRng r(1); return crypto::IdentityKey::generate(r); }(),
      [] { crypto::DeterministicRng r(2); return crypto::IdentityKey::generate(r); }(),
      [] { crypto::DeterministicRng r(3); return crypto::IdentityKey::generate(r); }()};
  return keys[which];
}

json make_genuine() {
  Consensus c;
  c.network = "fuzz";
  c.directory = key(0).public_key();
  c.valid_after = kNow;
  c.fresh_until = kNow + 60;
  c.valid_until = kNow + 3600;
  for (int i = 1; i <= 2; ++i) {
    ConsensusRelay r;
    r.descriptor.identity = key(i).public_key();
    crypto::DeterministicRng rng(static_cast<std::uint64_t>(10 + i));
    r.descriptor.onion_key = crypto::X25519Keypair::generate(rng).public_key;
    r.descriptor.nickname = "r" + std::to_string(i);
    r.descriptor.address = HostPort{"127.0.0.1", static_cast<std::uint16_t>(5000 + i)};
    r.descriptor.version = "thor 0.1.0";
    r.descriptor.published = kNow;
    r.fingerprint = crypto::fingerprint(r.descriptor.identity);
    r.flags = kFlagRunning | kFlagValid;
    c.relays.push_back(r);
  }
  return sign_consensus(c, key(0));
}

// Signing once keeps the smoke run quick.
const json& genuine() {
  static const json g = make_genuine();
  return g;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_consensus", ByteView(data, size));
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto j = parse_untrusted_json(text)) {
    // Random bytes are never signed by the pinned key.
    require(!verify_consensus(*j, key(0).public_key(), kNow), "unsigned bytes verify as a consensus");
    (void)consensus_from_json(*j);
    if (j->is_object() && j->contains("document")) (void)consensus_from_json(j->at("document"));
  }
  if (size < 2) return 0;
  static const char* fields[] = {"format", "network", "directory", "valid_after", "fresh_until", "valid_until",
                                 "relays", "fingerprint", "flags", "address", "port", "identity", "exit_policy"};
  json env = genuine();
  const char* field = fields[data[0] % (sizeof fields / sizeof fields[0])];
  std::string_view rest = text.substr(2);
  auto parsed = parse_untrusted_json(rest);
  json value = parsed ? *parsed : json(std::string(rest));
  json& doc = env["document"];
  if (data[1] & 1) doc["relays"][data[1] % 2][field] = value;
  else doc[field] = value;
  bool changed = canonical_json(doc) != canonical_json(genuine()["document"]);
  auto v = verify_consensus(env, key(0).public_key(), kNow);
  require(!(v && changed), "a modified consensus verifies");
  (void)consensus_from_json(doc);
  // Re-signed, the fields alone decide.
  auto c = consensus_from_json(doc);
  if (c) {
    json resigned = sign_consensus(*c, key(0));
    require(verify_consensus(resigned, key(0).public_key(), c->valid_after) || !(c->directory == key(0).public_key()),
            "a re-signed consensus does not verify");
  }
  return 0;
}
