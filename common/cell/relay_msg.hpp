// Relay messages: what travels inside the onion layers of a RELAY cell. A middle relay sees only
// ciphertext, so it cannot tell BEGIN from DATA.
//
// The plaintext relay payload (509 bytes), as the recognizing hop sees it:
//   recognized u16 (=0) | tag[16] | relay_command u8 | stream_id u16 | length u16 | data[length] | zeros
// The tag is the hop's integrity check (crypto/onion.hpp); encoding leaves it zero for the onion
// layer to fill.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/bytes.hpp"
#include "common/cell/cell.hpp"
#include "common/crypto/keys.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"

namespace thor {

constexpr std::size_t kRelayRecognizedOffset = 0;
constexpr std::size_t kRelayTagOffset = 2;
constexpr std::size_t kRelayTagSize = 16;
constexpr std::size_t kRelayCommandOffset = 18;
constexpr std::size_t kRelayHeaderSize = 23;
constexpr std::size_t kRelayMaxData = kCellPayloadSize - kRelayHeaderSize;  // 486

using StreamId = std::uint16_t;

enum class RelayCommand : std::uint8_t {
  begin = 1,
  data = 2,
  end = 3,
  connected = 4,
  sendme = 5,
  extend = 6,
  extended = 7,
  truncate = 8,
  truncated = 9,
  drop = 10,
  resolve = 11,
  resolved = 12,
};
const char* to_string(RelayCommand c);

// Tor's END reasons (tor-spec 6.3); the proxy maps each to a SOCKS5 reply code.
enum class EndReason : std::uint8_t {
  misc = 1,
  resolve_failed = 2,
  connect_refused = 3,
  exit_policy = 4,
  destroy = 5,
  done = 6,
  timeout = 7,
  no_route = 8,
  hibernating = 9,
  internal = 10,
  resource_limit = 11,
  conn_reset = 12,
  protocol = 13,
  not_directory = 14,
};
const char* to_string(EndReason r);

// A relay message in its decoded form: the command, the stream, and the raw body.
struct RelayMessage {
  RelayCommand command = RelayCommand::drop;
  StreamId stream_id = 0;
  Bytes body;  // at most kRelayMaxData bytes
  bool operator==(const RelayMessage&) const = default;
};

// A decoded relay message whose body points into the payload it came from: no allocation, for the
// DATA path. Valid while that payload is.
struct RelayMessageView {
  RelayCommand command = RelayCommand::drop;
  StreamId stream_id = 0;
  ByteView body;
};

// Writes header (recognized=0, tag=0) and body into a full 509-byte relay payload; the rest is zero.
// Returns an error when the body is longer than kRelayMaxData.
Status encode_relay_payload(const RelayMessage& msg, CellPayload& out);
// The same from its parts, without building a RelayMessage (no copy of the body on the way).
Status encode_relay_payload(RelayCommand command, StreamId stream, ByteView body, CellPayload& out);
// Reads a recognized plaintext payload (the tag is the onion layer's business and is not read).
// Invalid when recognized != 0, the command is unknown, length > 486, the stream id breaks the
// command's rule (stream messages need one; EXTEND, EXTENDED, TRUNCATE, TRUNCATED and DROP must use
// 0; SENDME either), SENDME or TRUNCATE has a body, or a byte after the body is not zero.
// encode_relay_payload refuses the same things.
Result<RelayMessage> decode_relay_payload(const CellPayload& payload);
// The same checks; the body stays in `payload`.
Result<RelayMessageView> decode_relay_view(const CellPayload& payload);

// ---- bodies ------------------------------------------------------------------------------------

struct BeginBody {
  HostPort target;          // a name, IPv4 or IPv6 literal; resolved at the exit
  std::uint32_t flags = 0;
  bool operator==(const BeginBody&) const = default;
};
struct ConnectedBody {
  std::optional<std::string> address;  // the IP the exit connected to ("1.2.3.4", "::1")
  std::uint32_t ttl = 0;
  bool operator==(const ConnectedBody&) const = default;
};
struct EndBody {
  EndReason reason = EndReason::misc;
  bool operator==(const EndBody&) const = default;
};
struct ExtendBody {
  HostPort address;                // numeric IPv4 or IPv6 of the next relay
  crypto::Ed25519Public identity;  // the next relay must prove this identity on the link
  CreateBody create;
  bool operator==(const ExtendBody&) const = default;
};
struct ExtendedBody {
  CreatedBody created;
  bool operator==(const ExtendedBody&) const = default;
};
struct TruncatedBody {
  DestroyReason reason = DestroyReason::none;
  bool operator==(const TruncatedBody&) const = default;
};
struct ResolveBody {
  std::string hostname;  // or "d.c.b.a.in-addr.arpa" / ip6.arpa for a reverse lookup
  bool operator==(const ResolveBody&) const = default;
};
struct ResolvedAnswer {
  enum class Type : std::uint8_t { hostname = 0, ipv4 = 4, ipv6 = 6, error_transient = 0xF0, error_permanent = 0xF1 };
  Type type = Type::ipv4;
  std::string value;  // dotted/colon text for addresses, the name for hostname, empty for errors
  std::uint32_t ttl = 0;
  bool operator==(const ResolvedAnswer&) const = default;
};
struct ResolvedBody {
  std::vector<ResolvedAnswer> answers;
  bool operator==(const ResolvedBody&) const = default;
};

// Encoders never assert on content: what they carry may come from a SOCKS client, DNS or the
// consensus. Parsers are the gate. A BEGIN or RESOLVE whose host check_target_host() refuses is
// encoded as given and the exit refuses it (END protocol); check first to answer sooner. An address
// that is not an IP literal of its kind gives an empty CONNECTED (no address) or an empty EXTEND
// (which the relay refuses). A RESOLVED answer the wire cannot carry (a name that fails the name
// rules, an address that is not a literal of its type) goes out as error_permanent, so no lookup
// result can make an exit send a RESOLVED that the client would refuse.

// Why `host` cannot be the target of BEGIN or RESOLVE; ok when it is an IPv4 literal (dotted quad),
// an IPv6 literal (without brackets), or a DNS name: at most 255 bytes of letters, digits, '-', '.',
// '_', labels of 1-63 bytes, an optional final '.', and a last label that is not numeric ("1.2.3",
// "2130706433" and "0x7f.1" are addresses to inet_aton, not names). The message never quotes the host.
Status check_target_host(std::string_view host);

Bytes encode_begin(const BeginBody& b);
Result<BeginBody> parse_begin(ByteView body);
Bytes encode_connected(const ConnectedBody& b);
Result<ConnectedBody> parse_connected(ByteView body);
Bytes encode_end(const EndBody& b);
Result<EndBody> parse_end(ByteView body);  // empty or an unknown reason means misc, as in Tor
Bytes encode_extend(const ExtendBody& b);
Result<ExtendBody> parse_extend(ByteView body);
Bytes encode_extended(const ExtendedBody& b);
Result<ExtendedBody> parse_extended(ByteView body);
Bytes encode_truncated(const TruncatedBody& b);
Result<TruncatedBody> parse_truncated(ByteView body);  // an unknown reason reads as none
Bytes encode_resolve(const ResolveBody& b);
Result<ResolveBody> parse_resolve(ByteView body);
Bytes encode_resolved(const ResolvedBody& b);
Result<ResolvedBody> parse_resolved(ByteView body);

// Flow control windows, counted in DATA cells: four times Tor's fixed values (1000/100, 500/50),
// whose 243 KB per stream in flight starved a loopback circuit that moves more than 100 MB/s (the
// SENDME loop through four busy processes takes longer than that window lasts; docs/protocol.md 8).
constexpr int kCircuitWindowStart = 4000;
constexpr int kCircuitWindowIncrement = 400;
constexpr int kStreamWindowStart = 2000;
constexpr int kStreamWindowIncrement = 200;

}  // namespace thor
