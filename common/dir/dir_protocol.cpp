#include "common/dir/dir_protocol.hpp"

#include "common/crypto/encoding.hpp"
#include "common/crypto/hash.hpp"

namespace thor::dir {

using nlohmann::json;

namespace {

constexpr std::string_view kChallengeLabel{"thor-dir-challenge-v1\0", 22};
constexpr std::string_view kJoinLabel{"thor-relay-join-v1\0", 19};
constexpr std::size_t kMaxReasonLength = 1024;

std::string b64(ByteView b) { return crypto::to_base64(b); }

template <std::size_t N>
Result<std::array<std::uint8_t, N>> get_bytes(const json& m, const char* key, const char* what) {
  auto it = m.find(key);
  if (it == m.end() || !it->is_string())
    return Error{std::string(what) + ": field '" + key + "' missing or not a string"};
  auto raw = crypto::from_base64(it->get<std::string>());
  if (!raw || raw->size() != N)
    return Error{std::string(what) + ": field '" + key + "' must be base64 of " + std::to_string(N) + " bytes"};
  std::array<std::uint8_t, N> out{};
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
}

Result<std::uint64_t> get_u64(const json& m, const char* key, const char* what) {
  auto it = m.find(key);
  if (it == m.end() || !it->is_number_unsigned())
    return Error{std::string(what) + ": field '" + key + "' missing or not a non-negative integer"};
  return it->get<std::uint64_t>();
}

Status expect_type(const json& m, const char* type) {
  if (message_type(m) != type)
    return Error{std::string("expected a '") + type + "' message, got '" + message_type(m) + "'"};
  return {};
}

Status check_version(const json& m, const char* what) {
  auto it = m.find("version");
  if (it == m.end() || !it->is_number_integer() || it->get<std::int64_t>() != kProtocolVersion)
    return Error{std::string(what) + ": unsupported protocol version (this side speaks " +
                 std::to_string(kProtocolVersion) + ")"};
  return {};
}

}  // namespace

Bytes encode_frame_payload(std::string_view payload) {
  Bytes out;
  out.reserve(4 + payload.size());
  Writer w(out);
  w.u32(static_cast<std::uint32_t>(payload.size()));
  w.bytes(payload);
  return out;
}

Bytes encode_frame(const json& message) { return encode_frame_payload(canonical_json(message)); }

Decoded<json> decode_frame(ByteView data, std::size_t max_frame) {
  Reader r(data);
  std::uint32_t len = 0;
  if (!r.u32(len)) return Decoded<json>::incomplete();
  if (len == 0) return Decoded<json>::invalid("empty frame");
  if (len > max_frame)
    return Decoded<json>::invalid("frame of " + std::to_string(len) + " bytes is larger than the limit of " +
                                  std::to_string(max_frame));
  ByteView payload;
  if (!r.take(len, payload)) return Decoded<json>::incomplete();
  auto j = parse_untrusted_json(as_chars(payload));
  if (!j) return Decoded<json>::invalid("frame payload: " + j.error());
  if (!j->is_object()) return Decoded<json>::invalid("frame payload is not a JSON object");
  auto t = j->find("type");
  if (t == j->end() || !t->is_string() || t->get<std::string>().empty())
    return Decoded<json>::invalid("message has no \"type\"");
  return Decoded<json>::ok(std::move(*j), r.consumed());
}

void FrameReader::append(ByteView data) {
  if (!failed_.empty()) return;
  // Compact once the consumed prefix dominates, so a long connection does not grow the buffer.
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), data.begin(), data.end());
}

Decoded<json> FrameReader::next() {
  if (!failed_.empty()) return Decoded<json>::invalid(failed_);
  auto d = decode_frame(ByteView(buf_).subspan(pos_), max_frame_);
  if (d.is_ok()) pos_ += d.consumed;
  if (d.is_invalid()) {
    failed_ = d.error;
    buf_.clear();
    pos_ = 0;
  }
  return d;
}

std::string message_type(const json& m) {
  if (!m.is_object()) return "";
  auto t = m.find("type");
  if (t == m.end() || !t->is_string()) return "";
  return t->get<std::string>();
}

json make_hello(const Nonce& relay_nonce) {
  return json{{"type", "hello"}, {"version", kProtocolVersion}, {"nonce", b64(relay_nonce)}};
}

json make_challenge(const Nonce& relay_nonce, const Nonce& directory_nonce, const crypto::IdentityKey& directory) {
  auto sig = directory.sign(challenge_transcript(relay_nonce, directory_nonce));
  return json{{"type", "challenge"},
              {"version", kProtocolVersion},
              {"nonce", b64(directory_nonce)},
              {"directory_key", b64(directory.public_key().view())},
              {"signature", b64(sig.view())}};
}

json make_join(const json& descriptor_envelope, const crypto::Ed25519Signature& proof) {
  return json{{"type", "join"}, {"descriptor", descriptor_envelope}, {"proof", b64(proof.view())}};
}

json make_welcome(std::uint64_t heartbeat_interval_ms, const std::string& fingerprint) {
  return json{{"type", "welcome"}, {"heartbeat_interval_ms", heartbeat_interval_ms}, {"fingerprint", fingerprint}};
}

json make_heartbeat(std::uint64_t seq) { return json{{"type", "heartbeat"}, {"seq", seq}}; }
json make_heartbeat_ack(std::uint64_t seq) { return json{{"type", "heartbeat_ack"}, {"seq", seq}}; }
json make_get_consensus() { return json{{"type", "get_consensus"}}; }
json make_consensus_message(const json& envelope) { return json{{"type", "consensus"}, {"consensus", envelope}}; }
json make_error(const std::string& reason) { return json{{"type", "error"}, {"reason", reason}}; }

Result<Hello> parse_hello(const json& m) {
  if (auto st = expect_type(m, "hello"); !st) return Error{st.error()};
  if (auto st = check_version(m, "hello"); !st) return Error{st.error()};
  auto n = get_bytes<32>(m, "nonce", "hello");
  if (!n) return Error{n.error()};
  return Hello{*n};
}

Result<Challenge> parse_challenge(const json& m) {
  if (auto st = expect_type(m, "challenge"); !st) return Error{st.error()};
  if (auto st = check_version(m, "challenge"); !st) return Error{st.error()};
  Challenge c;
  auto n = get_bytes<32>(m, "nonce", "challenge");
  if (!n) return Error{n.error()};
  c.nonce = *n;
  auto k = get_bytes<32>(m, "directory_key", "challenge");
  if (!k) return Error{k.error()};
  c.directory_key.bytes = *k;
  auto s = get_bytes<64>(m, "signature", "challenge");
  if (!s) return Error{s.error()};
  c.signature.bytes = *s;
  return c;
}

Result<Join> parse_join(const json& m) {
  if (auto st = expect_type(m, "join"); !st) return Error{st.error()};
  Join j;
  auto it = m.find("descriptor");
  if (it == m.end() || !it->is_object()) return Error{"join: field 'descriptor' missing or not an object"};
  j.descriptor = *it;
  auto p = get_bytes<64>(m, "proof", "join");
  if (!p) return Error{p.error()};
  j.proof.bytes = *p;
  return j;
}

Result<Welcome> parse_welcome(const json& m) {
  if (auto st = expect_type(m, "welcome"); !st) return Error{st.error()};
  Welcome w;
  auto iv = get_u64(m, "heartbeat_interval_ms", "welcome");
  if (!iv) return Error{iv.error()};
  if (*iv == 0) return Error{"welcome: heartbeat_interval_ms must be positive"};
  w.heartbeat_interval_ms = *iv;
  auto f = m.find("fingerprint");
  if (f == m.end() || !f->is_string()) return Error{"welcome: field 'fingerprint' missing or not a string"};
  w.fingerprint = f->get<std::string>();
  return w;
}

Result<std::uint64_t> parse_heartbeat(const json& m) {
  if (auto st = expect_type(m, "heartbeat"); !st) return Error{st.error()};
  return get_u64(m, "seq", "heartbeat");
}

Result<std::uint64_t> parse_heartbeat_ack(const json& m) {
  if (auto st = expect_type(m, "heartbeat_ack"); !st) return Error{st.error()};
  return get_u64(m, "seq", "heartbeat_ack");
}

Result<json> parse_consensus_message(const json& m) {
  if (auto st = expect_type(m, "consensus"); !st) return Error{st.error()};
  auto it = m.find("consensus");
  if (it == m.end() || !it->is_object()) return Error{"consensus message: field 'consensus' missing or not an object"};
  return *it;
}

Result<std::string> parse_error(const json& m) {
  if (auto st = expect_type(m, "error"); !st) return Error{st.error()};
  auto it = m.find("reason");
  if (it == m.end() || !it->is_string()) return std::string("(no reason given)");
  std::string reason = it->get<std::string>();
  if (reason.size() > kMaxReasonLength) reason.resize(kMaxReasonLength);
  return reason;
}

Bytes challenge_transcript(const Nonce& relay_nonce, const Nonce& directory_nonce) {
  Bytes out;
  Writer w(out);
  w.bytes(kChallengeLabel).bytes(ByteView(relay_nonce)).bytes(ByteView(directory_nonce));
  return out;
}

Bytes join_transcript(const Nonce& relay_nonce, const Nonce& directory_nonce, const crypto::Ed25519Public& directory_key,
                      const json& descriptor_document) {
  auto digest = crypto::blake2b_256({as_bytes(canonical_json(descriptor_document))});
  Bytes out;
  Writer w(out);
  w.bytes(kJoinLabel)
      .bytes(ByteView(relay_nonce))
      .bytes(ByteView(directory_nonce))
      .bytes(directory_key.view())
      .bytes(ByteView(digest));
  return out;
}

Status check_challenge(const Challenge& c, const Nonce& relay_nonce, const crypto::Ed25519Public& pinned) {
  if (!(c.directory_key == pinned))
    return Error{"the directory presented key " + crypto::fingerprint(c.directory_key) + ", not the pinned " +
                 crypto::fingerprint(pinned)};
  if (!crypto::verify(pinned, challenge_transcript(relay_nonce, c.nonce), c.signature))
    return Error{"the directory's challenge signature does not verify with the pinned key"};
  return {};
}

json build_join(const RelayDescriptor& d, const crypto::IdentityKey& identity, const Nonce& relay_nonce,
                const Nonce& directory_nonce, const crypto::Ed25519Public& directory_key) {
  json envelope = sign_descriptor(d, identity);
  auto proof = identity.sign(join_transcript(relay_nonce, directory_nonce, directory_key, envelope.at("document")));
  return make_join(envelope, proof);
}

Result<RelayDescriptor> verify_join(const Join& j, const Nonce& relay_nonce, const Nonce& directory_nonce,
                                    const crypto::Ed25519Public& directory_key, std::int64_t now_seconds) {
  auto d = verify_descriptor(j.descriptor);
  if (!d) return Error{d.error()};
  if (!crypto::verify(d->identity,
                      join_transcript(relay_nonce, directory_nonce, directory_key, j.descriptor.at("document")),
                      j.proof))
    return Error{"join proof does not verify with the descriptor's identity key " + crypto::fingerprint(d->identity)};
  if (d->published > now_seconds + kMaxPublishedSkewSeconds)
    return Error{"descriptor published " + format_utc(d->published) + " UTC, too far in the future (directory time " +
                 format_utc(now_seconds) + " UTC): check the relay's clock"};
  if (d->published < now_seconds - kMaxPublishedSkewSeconds)
    return Error{"descriptor published " + format_utc(d->published) + " UTC is too old (directory time " +
                 format_utc(now_seconds) + " UTC): publish a fresh one or check the relay's clock"};
  return d;
}

}  // namespace thor::dir
