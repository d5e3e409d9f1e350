// The directory's wire protocol, sans-IO: framing, message builders and validators, and the join
// handshake's signed transcripts. Spoken on the directory's --listen port by relays (join, heartbeat)
// and by anyone who wants the consensus (get_consensus). See docs/directory.md.
//
// Frame: u32 big-endian payload length (1 .. kMaxFrameBytes) then a UTF-8 JSON object with a string
// "type". Messages:
//   relay -> dir  hello         {"type":"hello","version":1,"nonce":B64(32)}
//   dir -> relay  challenge     {"type":"challenge","version":1,"nonce":B64(32),"directory_key":B64(32),
//                                "signature":B64(64)}   signature over challenge_transcript()
//   relay -> dir  join          {"type":"join","descriptor":{"document":{...},"signature":B64(64)},
//                                "proof":B64(64)}        proof over join_transcript()
//   dir -> relay  welcome       {"type":"welcome","heartbeat_interval_ms":N,"fingerprint":HEX40}
//   relay -> dir  heartbeat     {"type":"heartbeat","seq":N}
//   dir -> relay  heartbeat_ack {"type":"heartbeat_ack","seq":N}
//   any -> dir    get_consensus {"type":"get_consensus"}
//   dir -> any    consensus     {"type":"consensus","consensus":{"document":{...},"signature":B64(64)}}
//   either way    error         {"type":"error","reason":"..."}   the sender then closes
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/bytes.hpp"
#include "common/crypto/keys.hpp"
#include "common/dir/documents.hpp"
#include "common/result.hpp"

namespace thor::dir {

inline constexpr std::size_t kMaxFrameBytes = 1 << 20;
inline constexpr int kProtocolVersion = 1;
// A descriptor's published time may differ this much from the directory's clock.
inline constexpr std::int64_t kMaxPublishedSkewSeconds = 3600;

using Nonce = std::array<std::uint8_t, 32>;

// ---- Framing ----

Bytes encode_frame(const nlohmann::json& message);
Bytes encode_frame_payload(std::string_view payload);  // payload already serialised
// One frame from the front of data: ok (the message and the bytes used), incomplete (need more
// bytes), or invalid (length 0 or above max_frame, not JSON, not an object, no string "type").
Decoded<nlohmann::json> decode_frame(ByteView data, std::size_t max_frame = kMaxFrameBytes);

// Accumulates a stream and yields frames. Invalid is final: the connection must be closed.
class FrameReader {
 public:
  explicit FrameReader(std::size_t max_frame = kMaxFrameBytes) : max_frame_(max_frame) {}
  void append(ByteView data);
  Decoded<nlohmann::json> next();
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::size_t max_frame_;
  Bytes buf_;
  std::size_t pos_ = 0;
  std::string failed_;
};

// ---- Messages ----

std::string message_type(const nlohmann::json& message);  // "" when absent

nlohmann::json make_hello(const Nonce& relay_nonce);
nlohmann::json make_challenge(const Nonce& relay_nonce, const Nonce& directory_nonce,
                              const crypto::IdentityKey& directory);
nlohmann::json make_join(const nlohmann::json& descriptor_envelope, const crypto::Ed25519Signature& proof);
nlohmann::json make_welcome(std::uint64_t heartbeat_interval_ms, const std::string& fingerprint);
nlohmann::json make_heartbeat(std::uint64_t seq);
nlohmann::json make_heartbeat_ack(std::uint64_t seq);
nlohmann::json make_get_consensus();
nlohmann::json make_consensus_message(const nlohmann::json& consensus_envelope);
nlohmann::json make_error(const std::string& reason);

struct Hello {
  Nonce nonce{};
};
struct Challenge {
  Nonce nonce{};
  crypto::Ed25519Public directory_key;
  crypto::Ed25519Signature signature;
};
struct Join {
  nlohmann::json descriptor;  // the signed envelope
  crypto::Ed25519Signature proof;
};
struct Welcome {
  std::uint64_t heartbeat_interval_ms = 0;
  std::string fingerprint;
};

Result<Hello> parse_hello(const nlohmann::json& m);
Result<Challenge> parse_challenge(const nlohmann::json& m);
Result<Join> parse_join(const nlohmann::json& m);
Result<Welcome> parse_welcome(const nlohmann::json& m);
Result<std::uint64_t> parse_heartbeat(const nlohmann::json& m);      // the seq
Result<std::uint64_t> parse_heartbeat_ack(const nlohmann::json& m);  // the seq
Result<nlohmann::json> parse_consensus_message(const nlohmann::json& m);  // the envelope
Result<std::string> parse_error(const nlohmann::json& m);                 // the reason

// ---- The join handshake ----

// What the directory signs: "thor-dir-challenge-v1\0" || relay_nonce || directory_nonce.
Bytes challenge_transcript(const Nonce& relay_nonce, const Nonce& directory_nonce);
// What the relay signs: "thor-relay-join-v1\0" || relay_nonce || directory_nonce ||
// directory_key || BLAKE2b-256(canonical descriptor document). Binding the descriptor stops a man in
// the middle from swapping in an older descriptor of the same relay.
Bytes join_transcript(const Nonce& relay_nonce, const Nonce& directory_nonce,
                      const crypto::Ed25519Public& directory_key, const nlohmann::json& descriptor_document);

// Relay side: the challenge must come from the pinned key and sign this relay's own nonce.
Status check_challenge(const Challenge& c, const Nonce& relay_nonce, const crypto::Ed25519Public& pinned);
// Relay side: the join message for a descriptor, answering a checked challenge.
nlohmann::json build_join(const RelayDescriptor& d, const crypto::IdentityKey& identity, const Nonce& relay_nonce,
                          const Nonce& directory_nonce, const crypto::Ed25519Public& directory_key);
// Directory side: descriptor signature and fields, the proof, and the published time against now.
Result<RelayDescriptor> verify_join(const Join& j, const Nonce& relay_nonce, const Nonce& directory_nonce,
                                    const crypto::Ed25519Public& directory_key, std::int64_t now_seconds);

}  // namespace thor::dir
