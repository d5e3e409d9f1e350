// Relay descriptors from the network: arbitrary bytes as a signed envelope, and a genuine signed
// descriptor with one field replaced by fuzz. Parsing and verification never crash; whatever verifies
// re-encodes to the same canonical document.
#include <cstdint>
#include <string>

#include "common/dir/documents.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::dir;
using nlohmann::json;
using thor::fuzz::require;

namespace {

const crypto::IdentityKey& relay_key() {
  static const crypto::IdentityKey k = [] {
    crypto::DeterministicRng rng(7);
    return crypto::IdentityKey::generate(rng);
  }();
  return k;
}

json make_genuine() {
  RelayDescriptor d;
  d.identity = relay_key().public_key();
  crypto::DeterministicRng rng(8);
  d.onion_key = crypto::X25519Keypair::generate(rng).public_key;
  d.nickname = "fuzz";
  d.address = HostPort{"127.0.0.1", 5000};
  d.exit_policy = ExitPolicy::loopback_test_exit();
  d.bandwidth = 1000;
  d.version = "thor 0.1.0";
  d.published = 1700000000;
  return sign_descriptor(d, relay_key());
}

void check(const json& envelope) {
  auto d = verify_descriptor(envelope);
  if (!d) {
    require(!d.error().empty(), "descriptor error without a message");
    return;
  }
  // Verified: the canonical re-encoding is the signed document itself.
  require(canonical_json(descriptor_to_json(*d)) == canonical_json(envelope.at("document")),
          "a verified descriptor re-encodes to another document");
}

// Signing once keeps the smoke run quick.
const json& genuine() {
  static const json g = make_genuine();
  return g;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_descriptor", ByteView(data, size));
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto j = parse_untrusted_json(text)) {
    check(*j);
    (void)descriptor_from_json(*j);
  }
  if (size == 0) return 0;
  static const char* fields[] = {"format", "identity", "onion_key", "nickname", "address", "port",
                                 "exit_policy", "bandwidth", "version", "published", "extra"};
  json env = genuine();
  const char* field = fields[data[0] % (sizeof fields / sizeof fields[0])];
  std::string_view rest = text.substr(1);
  auto value = parse_untrusted_json(rest);
  env["document"][field] = value ? *value : json(std::string(rest));
  check(env);
  (void)descriptor_from_json(env["document"]);
  return 0;
}
