#include "common/dir/documents.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <ctime>
#include <limits>
#include <set>

#include "common/crypto/encoding.hpp"

namespace thor::dir {

using nlohmann::json;

namespace {

constexpr std::uint64_t kMaxBandwidth = 1'000'000'000'000ULL;  // 1 TB/s: anything above is a lie
constexpr std::size_t kMaxVersionLength = 64;
constexpr std::size_t kMaxExitPolicyLength = 16 * 1024;
constexpr std::size_t kMaxNetworkLength = 64;

const std::set<std::string> kDescriptorKeys = {"format",   "identity", "onion_key", "nickname", "address",
                                               "port",     "exit_policy", "bandwidth", "version", "published"};
const std::set<std::string> kConsensusRelayKeys = {"fingerprint", "flags",     "identity", "onion_key",
                                                   "nickname",    "address",   "port",     "exit_policy",
                                                   "bandwidth",   "version",   "published"};
const std::set<std::string> kConsensusKeys = {"format",      "network",     "directory", "valid_after",
                                              "fresh_until", "valid_until", "relays"};

Status only_keys(const json& j, const std::set<std::string>& allowed, const char* what) {
  for (const auto& [k, v] : j.items()) {
    (void)v;
    if (!allowed.count(k)) return Error{std::string(what) + ": unknown field '" + k + "'"};
  }
  for (const auto& k : allowed)
    if (!j.contains(k)) return Error{std::string(what) + ": missing field '" + k + "'"};
  return {};
}

Result<std::string> get_string(const json& j, const char* key, const char* what) {
  const auto& v = j.at(key);
  if (!v.is_string()) return Error{std::string(what) + ": field '" + key + "' must be a string"};
  return v.get<std::string>();
}

Result<std::int64_t> get_int(const json& j, const char* key, const char* what, std::int64_t min,
                             std::int64_t max) {
  const auto& v = j.at(key);
  std::string bad = std::string(what) + ": field '" + key + "' must be an integer in [" + std::to_string(min) +
                    ", " + std::to_string(max) + "]";
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(max)) return Error{bad};
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer()) {
    auto i = v.get<std::int64_t>();
    if (i < min || i > max) return Error{bad};
    return i;
  }
  return Error{bad};
}

template <class Key>
Result<Key> get_key(const json& j, const char* key, const char* what) {
  auto s = get_string(j, key, what);
  if (!s) return Error{s.error()};
  auto raw = crypto::from_base64(*s);
  if (!raw || raw->size() != Key::size)
    return Error{std::string(what) + ": field '" + key + "' must be base64 of " + std::to_string(Key::size) + " bytes"};
  return *Key::from(*raw);
}

bool valid_nickname(const std::string& n) {
  if (n.empty() || n.size() > 19) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  });
}

// inet_ntop's spelling of a numeric address, so one endpoint has one text form.
std::string canonical_ip(const std::string& ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) inet_ntop(AF_INET, &a4, buf, sizeof buf);
  else if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) inet_ntop(AF_INET6, &a6, buf, sizeof buf);
  return buf;
}

bool printable_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

void put_descriptor_fields(json& j, const RelayDescriptor& d) {
  j["identity"] = crypto::to_base64(d.identity.view());
  j["onion_key"] = crypto::to_base64(d.onion_key.view());
  j["nickname"] = d.nickname;
  j["address"] = d.address.host;
  j["port"] = d.address.port;
  j["exit_policy"] = d.exit_policy.to_string();
  j["bandwidth"] = d.bandwidth;
  j["version"] = d.version;
  j["published"] = d.published;
}

Result<RelayDescriptor> read_descriptor_fields(const json& j, const char* what) {
  RelayDescriptor d;
  auto id = get_key<crypto::Ed25519Public>(j, "identity", what);
  if (!id) return Error{id.error()};
  d.identity = *id;
  auto onion = get_key<crypto::X25519Public>(j, "onion_key", what);
  if (!onion) return Error{onion.error()};
  if (onion->is_zero()) return Error{std::string(what) + ": onion_key is all zeros"};
  d.onion_key = *onion;
  auto nick = get_string(j, "nickname", what);
  if (!nick) return Error{nick.error()};
  if (!valid_nickname(*nick))
    return Error{std::string(what) + ": nickname must be 1-19 letters and digits [A-Za-z0-9]"};
  d.nickname = *nick;
  auto addr = get_string(j, "address", what);
  if (!addr) return Error{addr.error()};
  if (!is_ipv4_literal(*addr) && !is_ipv6_literal(*addr))
    return Error{std::string(what) + ": address must be a numeric IPv4 or IPv6 address (no brackets, no names)"};
  if (canonical_ip(*addr) != *addr)
    return Error{std::string(what) + ": address must be written in canonical form (" + canonical_ip(*addr) + ")"};
  if (*addr == "0.0.0.0" || *addr == "::")
    return Error{std::string(what) + ": address " + *addr + " is unspecified; advertise a reachable address"};
  auto port = get_int(j, "port", what, 1, 65535);
  if (!port) return Error{port.error()};
  d.address = HostPort{*addr, static_cast<std::uint16_t>(*port)};
  auto policy_text = get_string(j, "exit_policy", what);
  if (!policy_text) return Error{policy_text.error()};
  if (policy_text->size() > kMaxExitPolicyLength) return Error{std::string(what) + ": exit_policy too long"};
  auto policy = ExitPolicy::parse(*policy_text);
  if (!policy) return Error{std::string(what) + ": exit_policy: " + policy.error()};
  d.exit_policy = *policy;
  auto bw = get_int(j, "bandwidth", what, 0, static_cast<std::int64_t>(kMaxBandwidth));
  if (!bw) return Error{bw.error()};
  d.bandwidth = static_cast<std::uint64_t>(*bw);
  auto version = get_string(j, "version", what);
  if (!version) return Error{version.error()};
  if (version->empty() || version->size() > kMaxVersionLength || !printable_ascii(*version))
    return Error{std::string(what) + ": version must be 1-64 printable ASCII characters"};
  d.version = *version;
  auto published = get_int(j, "published", what, 0, std::numeric_limits<std::int64_t>::max());
  if (!published) return Error{published.error()};
  d.published = *published;
  return d;
}

struct Envelope {
  const json* document;
  crypto::Ed25519Signature signature;
};

Result<Envelope> open_envelope(const json& envelope, const char* what) {
  if (!envelope.is_object() || envelope.size() != 2 || !envelope.contains("document") ||
      !envelope.contains("signature"))
    return Error{std::string(what) + ": expected {\"document\": {...}, \"signature\": \"base64\"}"};
  const json& doc = envelope.at("document");
  if (!doc.is_object()) return Error{std::string(what) + ": document must be a JSON object"};
  auto sig = get_key<crypto::Ed25519Signature>(envelope, "signature", what);
  if (!sig) return Error{sig.error()};
  return Envelope{&doc, *sig};
}

}  // namespace

std::string canonical_json(const json& j) {
  // Invalid UTF-8 cannot come from a parsed document; replacing rather than throwing keeps a
  // locally built bad string from crashing a daemon (its signature then simply fails).
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<json> parse_untrusted_json(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return Error{"JSON nested deeper than " + std::to_string(max_depth) + " levels"};
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{"not valid JSON"};
  return j;
}

std::vector<std::string> flag_names(std::uint32_t flags) {
  std::vector<std::string> out;
  // Alphabetical, so the canonical form does not depend on the order flags were set.
  if (flags & kFlagExit) out.emplace_back("Exit");
  if (flags & kFlagFast) out.emplace_back("Fast");
  if (flags & kFlagRunning) out.emplace_back("Running");
  if (flags & kFlagStable) out.emplace_back("Stable");
  if (flags & kFlagValid) out.emplace_back("Valid");
  return out;
}

std::uint32_t flag_from_name(std::string_view name) {
  if (name == "Exit") return kFlagExit;
  if (name == "Fast") return kFlagFast;
  if (name == "Running") return kFlagRunning;
  if (name == "Stable") return kFlagStable;
  if (name == "Valid") return kFlagValid;
  return 0;
}

std::string format_utc(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (!gmtime_r(&t, &tm)) return std::to_string(unix_seconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

json descriptor_to_json(const RelayDescriptor& d) {
  json j = json::object();
  j["format"] = kDescriptorFormat;
  put_descriptor_fields(j, d);
  return j;
}

Result<RelayDescriptor> descriptor_from_json(const json& j) {
  const char* what = "descriptor";
  if (!j.is_object()) return Error{"descriptor: expected a JSON object"};
  if (auto st = only_keys(j, kDescriptorKeys, what); !st) return Error{st.error()};
  if (!j.at("format").is_string() || j.at("format").get<std::string>() != kDescriptorFormat)
    return Error{std::string("descriptor: format must be \"") + kDescriptorFormat + "\""};
  return read_descriptor_fields(j, what);
}

json sign_descriptor(const RelayDescriptor& d, const crypto::IdentityKey& identity) {
  json doc = descriptor_to_json(d);
  auto sig = identity.sign(as_bytes(canonical_json(doc)));
  return json{{"document", doc}, {"signature", crypto::to_base64(sig.view())}};
}

Result<RelayDescriptor> verify_descriptor(const json& envelope) {
  auto env = open_envelope(envelope, "descriptor");
  if (!env) return Error{env.error()};
  const json& doc = *env->document;
  // Fields first: this bounds what is canonicalised, and names the identity to verify against.
  auto d = descriptor_from_json(doc);
  if (!d) return Error{d.error()};
  if (!crypto::verify(d->identity, as_bytes(canonical_json(doc)), env->signature))
    return Error{"descriptor signature does not verify with the identity key it names (" +
                 crypto::fingerprint(d->identity) + ")"};
  return d;
}

json consensus_to_json(const Consensus& c) {
  json relays = json::array();
  std::vector<const ConsensusRelay*> sorted;
  for (const auto& r : c.relays) sorted.push_back(&r);
  std::sort(sorted.begin(), sorted.end(),
            [](const ConsensusRelay* a, const ConsensusRelay* b) { return a->descriptor.identity < b->descriptor.identity; });
  for (const auto* r : sorted) {
    json e = json::object();
    put_descriptor_fields(e, r->descriptor);
    e["fingerprint"] = crypto::fingerprint(r->descriptor.identity);
    e["flags"] = flag_names(r->flags);
    relays.push_back(std::move(e));
  }
  return json{{"format", kConsensusFormat},
              {"network", c.network},
              {"directory", crypto::to_base64(c.directory.view())},
              {"valid_after", c.valid_after},
              {"fresh_until", c.fresh_until},
              {"valid_until", c.valid_until},
              {"relays", std::move(relays)}};
}

Result<Consensus> consensus_from_json(const json& j) {
  const char* what = "consensus";
  if (!j.is_object()) return Error{"consensus: expected a JSON object"};
  if (auto st = only_keys(j, kConsensusKeys, what); !st) return Error{st.error()};
  if (!j.at("format").is_string() || j.at("format").get<std::string>() != kConsensusFormat)
    return Error{std::string("consensus: format must be \"") + kConsensusFormat + "\""};
  Consensus c;
  auto network = get_string(j, "network", what);
  if (!network) return Error{network.error()};
  if (network->empty() || network->size() > kMaxNetworkLength || !printable_ascii(*network))
    return Error{"consensus: network must be 1-64 printable ASCII characters"};
  c.network = *network;
  auto dir = get_key<crypto::Ed25519Public>(j, "directory", what);
  if (!dir) return Error{dir.error()};
  c.directory = *dir;
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  auto va = get_int(j, "valid_after", what, 0, kMax);
  if (!va) return Error{va.error()};
  auto fu = get_int(j, "fresh_until", what, 0, kMax);
  if (!fu) return Error{fu.error()};
  auto vu = get_int(j, "valid_until", what, 0, kMax);
  if (!vu) return Error{vu.error()};
  if (!(*va <= *fu && *fu <= *vu)) return Error{"consensus: times must satisfy valid_after <= fresh_until <= valid_until"};
  c.valid_after = *va;
  c.fresh_until = *fu;
  c.valid_until = *vu;
  const json& relays = j.at("relays");
  if (!relays.is_array()) return Error{"consensus: relays must be an array"};
  std::set<crypto::Ed25519Public> seen;
  for (std::size_t i = 0; i < relays.size(); ++i) {
    const json& e = relays[i];
    std::string rwhat = "consensus relay " + std::to_string(i);
    if (!e.is_object()) return Error{rwhat + ": expected a JSON object"};
    if (auto st = only_keys(e, kConsensusRelayKeys, rwhat.c_str()); !st) return Error{st.error()};
    auto d = read_descriptor_fields(e, rwhat.c_str());
    if (!d) return Error{d.error()};
    ConsensusRelay r;
    r.descriptor = std::move(*d);
    r.fingerprint = crypto::fingerprint(r.descriptor.identity);
    if (!e.at("fingerprint").is_string() || e.at("fingerprint").get<std::string>() != r.fingerprint)
      return Error{rwhat + ": fingerprint does not match its identity key"};
    if (!seen.insert(r.descriptor.identity).second) return Error{rwhat + ": relay " + r.fingerprint + " listed twice"};
    const json& flags = e.at("flags");
    if (!flags.is_array()) return Error{rwhat + ": flags must be an array of strings"};
    for (const auto& f : flags) {
      if (!f.is_string()) return Error{rwhat + ": flags must be an array of strings"};
      r.flags |= flag_from_name(f.get<std::string>());
    }
    c.relays.push_back(std::move(r));
  }
  return c;
}

json sign_consensus(const Consensus& c, const crypto::IdentityKey& directory_key) {
  json doc = consensus_to_json(c);
  auto sig = directory_key.sign(as_bytes(canonical_json(doc)));
  return json{{"document", doc}, {"signature", crypto::to_base64(sig.view())}};
}

Result<Consensus> verify_consensus(const json& envelope, const crypto::Ed25519Public& pinned, std::int64_t now) {
  auto env = open_envelope(envelope, "consensus");
  if (!env) return Error{env.error()};
  const json& doc = *env->document;
  // Signature before fields: nothing from an unsigned document is believed. The document came through
  // parse_untrusted_json (or was built here), so its depth is bounded before it is canonicalised.
  if (!crypto::verify(pinned, as_bytes(canonical_json(doc)), env->signature))
    return Error{"consensus signature does not verify with the pinned directory key (" + crypto::fingerprint(pinned) +
                 ")"};
  auto c = consensus_from_json(doc);
  if (!c) return Error{c.error()};
  if (!(c->directory == pinned))
    return Error{"consensus names directory " + crypto::fingerprint(c->directory) + ", not the pinned " +
                 crypto::fingerprint(pinned)};
  if (now + kConsensusClockSkewSeconds < c->valid_after)
    return Error{"consensus not valid until " + format_utc(c->valid_after) + " UTC (now " + format_utc(now) +
                 " UTC): check the clock"};
  if (now - kConsensusClockSkewSeconds > c->valid_until)
    return Error{"consensus expired at " + format_utc(c->valid_until) + " UTC (now " + format_utc(now) + " UTC)"};
  return c;
}

}  // namespace thor::dir
