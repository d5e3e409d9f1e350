// Relay messages and their bodies. The layouts are in relay_msg.hpp and docs/protocol.md.
//
// As for control cells, every message has one encoding: bodies end where their last field ends,
// the payload after the body is zero, and anything else is refused. Error messages never quote a
// host name or an address from the peer: relays log them, and destinations are what Thor hides.
// Encoders never assert on content (see relay_msg.hpp): the parsers are the gate.
#include "common/cell/relay_msg.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cassert>
#include <cstdio>

namespace thor {

namespace {

constexpr std::size_t kMaxHostLength = 255;
constexpr std::size_t kMaxLabelLength = 63;

bool known_relay_command(std::uint8_t c) {
  return c >= static_cast<std::uint8_t>(RelayCommand::begin) && c <= static_cast<std::uint8_t>(RelayCommand::resolved);
}

enum class StreamRule { required, forbidden, either };

// Stream messages name a stream; circuit messages must not (Tor's rule), so a confused or hostile
// peer cannot make one look like the other. SENDME is both: stream 0 is the circuit's window.
StreamRule stream_rule(RelayCommand c) {
  switch (c) {
    case RelayCommand::begin:
    case RelayCommand::data:
    case RelayCommand::end:
    case RelayCommand::connected:
    case RelayCommand::resolve:
    case RelayCommand::resolved: return StreamRule::required;
    case RelayCommand::extend:
    case RelayCommand::extended:
    case RelayCommand::truncate:
    case RelayCommand::truncated:
    case RelayCommand::drop: return StreamRule::forbidden;
    case RelayCommand::sendme: return StreamRule::either;
  }
  return StreamRule::either;
}

// SENDME and TRUNCATE say everything by their command.
bool must_be_empty(RelayCommand c) { return c == RelayCommand::sendme || c == RelayCommand::truncate; }

std::string hex16(std::uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

std::string hex8(std::uint8_t v) {
  char buf[6];
  std::snprintf(buf, sizeof buf, "0x%02x", v);
  return buf;
}

// Header checks shared by encode and decode, so each refuses exactly what the other would.
Status check_message(RelayCommand command, StreamId stream_id, std::size_t body_size) {
  const char* name = to_string(command);
  if (body_size > kRelayMaxData)
    return Error{std::string("relay payload: ") + name + " body of " + std::to_string(body_size) +
                 " bytes exceeds " + std::to_string(kRelayMaxData)};
  switch (stream_rule(command)) {
    case StreamRule::required:
      if (stream_id == 0) return Error{std::string("relay payload: ") + name + " on stream 0 (it needs a stream)"};
      break;
    case StreamRule::forbidden:
      if (stream_id != 0)
        return Error{std::string("relay payload: ") + name + " on stream " + std::to_string(stream_id) +
                     " (a circuit message, stream must be 0)"};
      break;
    case StreamRule::either: break;
  }
  if (must_be_empty(command) && body_size != 0)
    return Error{std::string("relay payload: ") + name + " carries " + std::to_string(body_size) +
                 " body bytes (must be empty)"};
  return {};
}

// "EXTEND: body ends before the port (needs 2 bytes, 1 left)"
Error ends_before(const char* msg, const char* field, std::size_t need, const Reader& r) {
  return Error{std::string(msg) + ": body ends before " + field + " (needs " + std::to_string(need) +
               " bytes, " + std::to_string(r.remaining()) + " left)"};
}

Status no_trailing(const char* msg, const char* after, const Reader& r) {
  if (r.empty()) return {};
  return Error{std::string(msg) + ": " + std::to_string(r.remaining()) + " unexpected bytes after " + after};
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex_digit(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '.' || c == '_';
}

// inet_aton (which getaddrinfo falls back to) reads "2130706433", "127.1" and "0x7f.1" as addresses.
// A name whose last label is numeric would hide its real target from anyone reading the string
// (an exit policy, a log), and no top-level domain is numeric, so such names are refused.
bool numeric_label(std::string_view label) {
  if (label.size() > 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X')) {
    for (char c : label.substr(2))
      if (!is_hex_digit(c)) return false;
    return true;
  }
  for (char c : label)
    if (!is_digit(c)) return false;
  return true;
}

// Why `host` is not an acceptable target: empty when it is a valid IPv4 or IPv6 literal (without
// brackets) or a DNS name of letters, digits, '-', '.', '_' with one optional trailing dot.
std::string host_problem(std::string_view host) {
  if (host.empty()) return "host is empty";
  if (host.size() > kMaxHostLength)
    return "host is " + std::to_string(host.size()) + " bytes long (at most " + std::to_string(kMaxHostLength) + ")";
  if (host.find(':') != std::string_view::npos)
    return is_ipv6_literal(host) ? "" : "host contains ':' but is not an IPv6 address";
  if (is_ipv4_literal(host)) return "";
  for (std::size_t i = 0; i < host.size(); ++i)
    if (!is_name_char(host[i]))
      return "host has character " + hex8(static_cast<std::uint8_t>(host[i])) + " at position " + std::to_string(i) +
             " (names use letters, digits, '-', '.', '_')";
  std::string_view name = host;
  if (name.back() == '.') name.remove_suffix(1);  // a fully qualified name
  std::string_view last;
  while (true) {
    std::size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    if (label.empty()) return "host has an empty label";
    if (label.size() > kMaxLabelLength)
      return "host has a label of " + std::to_string(label.size()) + " bytes (at most " +
             std::to_string(kMaxLabelLength) + ")";
    last = label;
    if (dot == std::string_view::npos) break;
    name.remove_prefix(dot + 1);
  }
  if (numeric_label(last)) return "host ends in a numeric label but is not a dotted-quad IPv4 address";
  return "";
}

// Reads a NUL-terminated string; false when no NUL comes before the body ends.
bool read_nul_terminated(Reader& r, std::string& out) {
  std::uint8_t b = 0;
  while (r.u8(b)) {
    if (b == 0) return true;
    out.push_back(static_cast<char>(b));
  }
  return false;
}

Result<std::uint16_t> parse_port(std::string_view text, const char* msg) {
  if (text.empty()) return Error{std::string(msg) + ": port is missing after ':'"};
  for (char c : text)
    if (!is_digit(c)) return Error{std::string(msg) + ": port is not a decimal number"};
  if (text.size() > 1 && text[0] == '0') return Error{std::string(msg) + ": port has a leading zero"};
  if (text.size() > 5) return Error{std::string(msg) + ": port out of range (1-65535)"};
  unsigned value = 0;
  for (char c : text) value = value * 10 + static_cast<unsigned>(c - '0');
  if (value == 0 || value > 65535)
    return Error{std::string(msg) + ": port " + std::to_string(value) + " out of range (1-65535)"};
  return static_cast<std::uint16_t>(value);
}

// An IP literal in binary: 4 or 16 bytes, or empty when `text` is neither.
Bytes ip_to_bytes(const std::string& text, std::uint8_t& atype) {
  Bytes out;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    atype = 4;
    auto p = reinterpret_cast<const std::uint8_t*>(&v4);
    out.assign(p, p + 4);
  } else if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    atype = 6;
    auto p = reinterpret_cast<const std::uint8_t*>(&v6);
    out.assign(p, p + 16);
  }
  return out;
}

std::string ip_to_text(ByteView addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.size() == 4) {
    in_addr v4{};
    std::copy(addr.begin(), addr.end(), reinterpret_cast<std::uint8_t*>(&v4));
    inet_ntop(AF_INET, &v4, buf, sizeof buf);
  } else {
    assert(addr.size() == 16);
    in6_addr v6{};
    std::copy(addr.begin(), addr.end(), reinterpret_cast<std::uint8_t*>(&v6));
    inet_ntop(AF_INET6, &v6, buf, sizeof buf);
  }
  return buf;
}

std::size_t address_size(std::uint8_t atype) { return atype == 4 ? 4 : atype == 6 ? 16 : 0; }

// atype u8 (4 or 6) | address (4 or 16 bytes), as in CONNECTED and EXTEND.
Result<std::string> read_address(Reader& r, const char* msg) {
  std::uint8_t atype = 0;
  if (!r.u8(atype)) return ends_before(msg, "the address type", 1, r);
  std::size_t size = address_size(atype);
  if (size == 0) return Error{std::string(msg) + ": address type " + std::to_string(atype) + " unknown (4 or 6)"};
  ByteView addr;
  if (!r.take(size, addr)) return ends_before(msg, atype == 4 ? "the IPv4 address" : "the IPv6 address", size, r);
  return ip_to_text(addr);
}

Status check_handshake_type(std::uint16_t htype, const char* msg) {
  if (htype == kHandshakeNtorV1) return {};
  return Error{std::string(msg) + ": handshake type " + hex16(htype) + " unknown (expected " +
               hex16(kHandshakeNtorV1) + ", thor-ntor-v1)"};
}

}  // namespace

const char* to_string(RelayCommand c) {
  switch (c) {
    case RelayCommand::begin: return "BEGIN";
    case RelayCommand::data: return "DATA";
    case RelayCommand::end: return "END";
    case RelayCommand::connected: return "CONNECTED";
    case RelayCommand::sendme: return "SENDME";
    case RelayCommand::extend: return "EXTEND";
    case RelayCommand::extended: return "EXTENDED";
    case RelayCommand::truncate: return "TRUNCATE";
    case RelayCommand::truncated: return "TRUNCATED";
    case RelayCommand::drop: return "DROP";
    case RelayCommand::resolve: return "RESOLVE";
    case RelayCommand::resolved: return "RESOLVED";
  }
  return "unknown";
}

const char* to_string(EndReason r) {
  switch (r) {
    case EndReason::misc: return "misc";
    case EndReason::resolve_failed: return "resolve_failed";
    case EndReason::connect_refused: return "connect_refused";
    case EndReason::exit_policy: return "exit_policy";
    case EndReason::destroy: return "destroy";
    case EndReason::done: return "done";
    case EndReason::timeout: return "timeout";
    case EndReason::no_route: return "no_route";
    case EndReason::hibernating: return "hibernating";
    case EndReason::internal: return "internal";
    case EndReason::resource_limit: return "resource_limit";
    case EndReason::conn_reset: return "conn_reset";
    case EndReason::protocol: return "protocol";
    case EndReason::not_directory: return "not_directory";
  }
  return "unknown";
}

// ---- relay payload ---------------------------------------------------------------------------

Status encode_relay_payload(RelayCommand command, StreamId stream, ByteView body, CellPayload& out) {
  if (!known_relay_command(static_cast<std::uint8_t>(command)))
    return Error{"relay payload: relay command " + std::to_string(static_cast<unsigned>(command)) + " unknown"};
  if (auto s = check_message(command, stream, body.size()); !s) return s;
  SpanWriter w{MutableByteView(out)};
  w.u16(0).zeros(kRelayTagSize).u8(static_cast<std::uint8_t>(command)).u16(stream);
  w.u16(static_cast<std::uint16_t>(body.size())).bytes(body);
  assert(w.ok());
  // Only the padding after the body needs zeroing: a full DATA cell has none.
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(kRelayHeaderSize + body.size()), out.end(), std::uint8_t{0});
  return {};
}

Status encode_relay_payload(const RelayMessage& msg, CellPayload& out) {
  return encode_relay_payload(msg.command, msg.stream_id, ByteView(msg.body), out);
}

Result<RelayMessageView> decode_relay_view(const CellPayload& payload) {
  Reader r{ByteView(payload)};
  std::uint16_t recognized = 0, length = 0;
  std::uint8_t command = 0;
  RelayMessageView msg;
  bool read = r.u16(recognized) && r.skip(kRelayTagSize) && r.u8(command) && r.u16(msg.stream_id) && r.u16(length);
  assert(read);  // a payload always holds 509 bytes
  (void)read;
  if (recognized != 0)
    return Error{"relay payload: recognized field is " + hex16(recognized) + ", not 0 (not a cell for this hop)"};
  if (!known_relay_command(command))
    return Error{"relay payload: relay command " + std::to_string(command) + " unknown"};
  msg.command = static_cast<RelayCommand>(command);
  if (length > kRelayMaxData)
    return Error{"relay payload: length " + std::to_string(length) + " exceeds " + std::to_string(kRelayMaxData)};
  if (auto s = check_message(msg.command, msg.stream_id, length); !s) return Error{s.error()};
  read = r.take(length, msg.body);
  assert(read);
  const std::size_t end = r.consumed();
  auto bad = std::find_if(payload.begin() + static_cast<std::ptrdiff_t>(end), payload.end(),
                          [](std::uint8_t b) { return b != 0; });
  if (bad != payload.end())
    return Error{"relay payload: byte " + std::to_string(*bad) + " at payload offset " +
                 std::to_string(bad - payload.begin()) + " after the " + to_string(msg.command) +
                 " body (padding must be zero)"};
  return msg;
}

Result<RelayMessage> decode_relay_payload(const CellPayload& payload) {
  auto view = decode_relay_view(payload);
  if (!view) return Error{view.error()};
  RelayMessage msg;
  msg.command = view->command;
  msg.stream_id = view->stream_id;
  msg.body.assign(view->body.begin(), view->body.end());
  return msg;
}

// ---- BEGIN -------------------------------------------------------------------------------------

Status check_target_host(std::string_view host) {
  if (auto why = host_problem(host); !why.empty()) return Error{why};
  return {};
}

Bytes encode_begin(const BeginBody& b) {
  // An invalid host is sent as given: even one holding a NUL cannot smuggle a different target,
  // since ":port", a NUL and the flags always follow it and the exit refuses the trailing bytes.
  Bytes out;
  Writer(out).bytes(b.target.to_string()).u8(0).u32(b.flags);
  return out;
}

Result<BeginBody> parse_begin(ByteView body) {
  Reader r(body);
  std::string text;
  if (body.empty()) return Error{"BEGIN: empty body (needs \"host:port\" and a NUL)"};
  if (!read_nul_terminated(r, text)) return Error{"BEGIN: address is not NUL-terminated"};
  BeginBody out;
  std::string_view host, port;
  std::string_view t = text;
  if (!t.empty() && t.front() == '[') {
    std::size_t close = t.find(']');
    if (close == std::string_view::npos) return Error{"BEGIN: '[' without a closing ']'"};
    if (close + 1 >= t.size() || t[close + 1] != ':') return Error{"BEGIN: expected ':' and a port after ']'"};
    host = t.substr(1, close - 1);
    port = t.substr(close + 2);
    if (!is_ipv6_literal(host)) return Error{"BEGIN: the host in brackets is not an IPv6 address"};
  } else {
    std::size_t colon = t.rfind(':');
    if (colon == std::string_view::npos) return Error{"BEGIN: address has no ':port'"};
    host = t.substr(0, colon);
    port = t.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return Error{"BEGIN: an IPv6 address must be in brackets"};
  }
  if (auto why = host_problem(host); !why.empty()) return Error{"BEGIN: " + why};
  auto p = parse_port(port, "BEGIN");
  if (!p) return Error{p.error()};
  out.target = HostPort{std::string(host), *p};
  // The flags are optional on the wire (a body may end at the NUL); when present they are whole.
  if (!r.empty()) {
    if (!r.u32(out.flags))
      return Error{"BEGIN: " + std::to_string(r.remaining()) + " bytes after the address (flags need 4)"};
  }
  if (auto s = no_trailing("BEGIN", "the flags", r); !s) return Error{s.error()};
  return out;
}

// ---- CONNECTED ---------------------------------------------------------------------------------

Bytes encode_connected(const ConnectedBody& b) {
  Bytes out;
  if (!b.address) return out;
  std::uint8_t atype = 0;
  Bytes addr = ip_to_bytes(*b.address, atype);
  if (addr.empty()) return out;  // not a literal: say nothing rather than something wrong
  Writer(out).u8(atype).bytes(ByteView(addr)).u32(b.ttl);
  return out;
}

Result<ConnectedBody> parse_connected(ByteView body) {
  ConnectedBody out;
  if (body.empty()) return out;
  Reader r(body);
  auto addr = read_address(r, "CONNECTED");
  if (!addr) return Error{addr.error()};
  out.address = std::move(addr.value());
  if (!r.u32(out.ttl)) return ends_before("CONNECTED", "the TTL", 4, r);
  if (auto s = no_trailing("CONNECTED", "the TTL", r); !s) return Error{s.error()};
  return out;
}

// ---- END ---------------------------------------------------------------------------------------

Bytes encode_end(const EndBody& b) { return Bytes{static_cast<std::uint8_t>(b.reason)}; }

Result<EndBody> parse_end(ByteView body) {
  EndBody out;  // misc
  Reader r(body);
  std::uint8_t reason = 0;
  if (!r.u8(reason)) return out;  // empty means misc, as in Tor
  // Unknown reasons read as misc: the stream ends either way, and misc maps to SOCKS "general
  // failure", the right answer for a reason the proxy cannot name.
  if (reason >= static_cast<std::uint8_t>(EndReason::misc) && reason <= static_cast<std::uint8_t>(EndReason::not_directory))
    out.reason = static_cast<EndReason>(reason);
  if (auto s = no_trailing("END", "the reason", r); !s) return Error{s.error()};
  return out;
}

// ---- EXTEND / EXTENDED -------------------------------------------------------------------------

Bytes encode_extend(const ExtendBody& b) {
  Bytes out;
  std::uint8_t atype = 0;
  Bytes addr = ip_to_bytes(b.address.host, atype);
  if (addr.empty()) return out;  // not a literal: every relay refuses an empty EXTEND
  Writer(out)
      .u8(atype)
      .bytes(ByteView(addr))
      .u16(b.address.port)
      .bytes(b.identity.view())
      .u16(b.create.handshake_type)
      .u16(static_cast<std::uint16_t>(b.create.handshake.size()))
      .bytes(ByteView(b.create.handshake));
  return out;
}

Result<ExtendBody> parse_extend(ByteView body) {
  Reader r(body);
  ExtendBody out;
  if (body.empty()) return Error{"EXTEND: empty body"};
  auto addr = read_address(r, "EXTEND");
  if (!addr) return Error{addr.error()};
  std::uint16_t port = 0;
  if (!r.u16(port)) return ends_before("EXTEND", "the port", 2, r);
  if (port == 0) return Error{"EXTEND: port 0 out of range (1-65535)"};
  out.address = HostPort{std::move(addr.value()), port};
  if (!r.array(out.identity.bytes)) return ends_before("EXTEND", "the identity key", 32, r);
  if (out.identity.is_zero()) return Error{"EXTEND: identity key is all zeros"};
  std::uint16_t hlen = 0;
  if (!r.u16(out.create.handshake_type)) return ends_before("EXTEND", "the handshake type", 2, r);
  if (auto s = check_handshake_type(out.create.handshake_type, "EXTEND"); !s) return Error{s.error()};
  if (!r.u16(hlen)) return ends_before("EXTEND", "the handshake length", 2, r);
  ByteView hdata;
  if (!r.take(hlen, hdata))
    return Error{"EXTEND: handshake length " + std::to_string(hlen) + " but only " + std::to_string(r.remaining()) +
                 " bytes follow"};
  out.create.handshake.assign(hdata.begin(), hdata.end());
  if (auto s = no_trailing("EXTEND", "the handshake", r); !s) return Error{s.error()};
  return out;
}

Bytes encode_extended(const ExtendedBody& b) {
  Bytes out;
  Writer(out).u16(static_cast<std::uint16_t>(b.created.handshake.size())).bytes(ByteView(b.created.handshake));
  return out;
}

Result<ExtendedBody> parse_extended(ByteView body) {
  Reader r(body);
  ExtendedBody out;
  std::uint16_t hlen = 0;
  if (!r.u16(hlen)) return ends_before("EXTENDED", "the handshake length", 2, r);
  ByteView hdata;
  if (!r.take(hlen, hdata))
    return Error{"EXTENDED: handshake length " + std::to_string(hlen) + " but only " + std::to_string(r.remaining()) +
                 " bytes follow"};
  out.created.handshake.assign(hdata.begin(), hdata.end());
  if (auto s = no_trailing("EXTENDED", "the handshake", r); !s) return Error{s.error()};
  return out;
}

// ---- TRUNCATED ---------------------------------------------------------------------------------

Bytes encode_truncated(const TruncatedBody& b) { return Bytes{static_cast<std::uint8_t>(b.reason)}; }

Result<TruncatedBody> parse_truncated(ByteView body) {
  Reader r(body);
  TruncatedBody out;
  std::uint8_t reason = 0;
  if (!r.u8(reason)) return ends_before("TRUNCATED", "the reason", 1, r);
  // As for DESTROY: the circuit is cut whatever the reason; an unknown one reads as none.
  if (reason <= static_cast<std::uint8_t>(DestroyReason::no_such_service)) out.reason = static_cast<DestroyReason>(reason);
  if (auto s = no_trailing("TRUNCATED", "the reason", r); !s) return Error{s.error()};
  return out;
}

// ---- RESOLVE / RESOLVED ------------------------------------------------------------------------

Bytes encode_resolve(const ResolveBody& b) {
  Bytes out;
  Writer(out).bytes(b.hostname).u8(0);
  return out;
}

Result<ResolveBody> parse_resolve(ByteView body) {
  Reader r(body);
  ResolveBody out;
  if (body.empty()) return Error{"RESOLVE: empty body (needs a hostname and a NUL)"};
  if (!read_nul_terminated(r, out.hostname)) return Error{"RESOLVE: hostname is not NUL-terminated"};
  if (auto why = host_problem(out.hostname); !why.empty()) return Error{"RESOLVE: " + why};
  if (auto s = no_trailing("RESOLVE", "the NUL", r); !s) return Error{s.error()};
  return out;
}

Bytes encode_resolved(const ResolvedBody& b) {
  using Type = ResolvedAnswer::Type;
  Bytes out;
  Writer w(out);
  for (const auto& a : b.answers) {
    Type type = a.type;
    Bytes value;
    switch (a.type) {
      case Type::ipv4:
      case Type::ipv6: {
        std::uint8_t atype = 0;
        value = ip_to_bytes(a.value, atype);
        if (value.empty() || atype != static_cast<std::uint8_t>(a.type)) type = Type::error_permanent;
        break;
      }
      case Type::hostname:
        if (host_problem(a.value).empty()) value.assign(a.value.begin(), a.value.end());
        else type = Type::error_permanent;  // a PTR name we cannot pass on is as good as none
        break;
      case Type::error_transient:
      case Type::error_permanent: break;
      default: type = Type::error_permanent; break;
    }
    if (type == Type::error_permanent || type == Type::error_transient) value.clear();  // errors carry no value
    w.u8(static_cast<std::uint8_t>(type)).u8(static_cast<std::uint8_t>(value.size())).bytes(ByteView(value)).u32(a.ttl);
  }
  return out;
}

Result<ResolvedBody> parse_resolved(ByteView body) {
  using Type = ResolvedAnswer::Type;
  Reader r(body);
  ResolvedBody out;
  if (body.empty()) return Error{"RESOLVED: no answers"};
  while (!r.empty()) {
    std::string n = std::to_string(out.answers.size() + 1);
    std::uint8_t type = 0, len = 0;
    ByteView value;
    bool head = r.u8(type) && r.u8(len);
    if (!head) return Error{"RESOLVED: answer " + n + " truncated: 1 byte left, its type and length need 2"};
    ResolvedAnswer a;
    switch (type) {
      case 0x00:
      case 0x04:
      case 0x06:
      case 0xF0:
      case 0xF1: a.type = static_cast<Type>(type); break;
      default: return Error{"RESOLVED: answer " + n + " has type " + hex8(type) + " unknown"};
    }
    if (!r.take(len, value))
      return Error{"RESOLVED: answer " + n + " truncated: value length " + std::to_string(len) + " but only " +
                   std::to_string(r.remaining()) + " bytes left"};
    switch (a.type) {
      case Type::ipv4:
      case Type::ipv6: {
        std::size_t want = a.type == Type::ipv4 ? 4 : 16;
        if (len != want)
          return Error{"RESOLVED: answer " + n + " is an IPv" + (a.type == Type::ipv4 ? "4" : "6") +
                       " address of " + std::to_string(len) + " bytes (must be " + std::to_string(want) + ")"};
        a.value = ip_to_text(value);
        break;
      }
      case Type::hostname: {
        a.value = std::string(as_chars(value));
        if (auto why = host_problem(a.value); !why.empty()) return Error{"RESOLVED: answer " + n + ": " + why};
        break;
      }
      case Type::error_transient:
      case Type::error_permanent:
        if (len != 0)
          return Error{"RESOLVED: answer " + n + " is an error with " + std::to_string(len) +
                       " value bytes (must be 0)"};
        break;
    }
    if (!r.u32(a.ttl))
      return Error{"RESOLVED: answer " + n + " truncated: its TTL needs 4 bytes, " + std::to_string(r.remaining()) +
                   " left"};
    out.answers.push_back(std::move(a));
  }
  return out;
}

}  // namespace thor
