// Relay messages: the relay payload header and every body, pinned byte by byte, round-tripped, and
// fed every truncation and malformation a peer could send.
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "common/cell/relay_msg.hpp"
#include "common/crypto/encoding.hpp"

using namespace thor;

namespace {

Bytes hex(std::string_view text) {
  std::string compact;
  for (char c : text)
    if (c != ' ') compact.push_back(c);
  auto b = crypto::from_hex(compact);
  REQUIRE(b.has_value());
  return *b;
}

Bytes str(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

CellPayload payload_of(const Bytes& prefix) {
  CellPayload p{};
  REQUIRE(prefix.size() <= p.size());
  std::copy(prefix.begin(), prefix.end(), p.begin());
  return p;
}

Bytes repeat(std::uint8_t b, std::size_t n) { return Bytes(n, b); }

crypto::Ed25519Public identity_of(std::uint8_t b) {
  crypto::Ed25519Public id;
  id.bytes.fill(b);
  return id;
}

template <class T>
std::string error_of(const Result<T>& r) {
  REQUIRE_FALSE(r.ok());
  return r.error();
}

// Every strict prefix of a valid body: the parser must not crash, and what it refuses it refuses
// with a message naming the message type.
template <class T>
void check_prefixes(const Bytes& body, const std::function<Result<T>(ByteView)>& parse, const std::string& name) {
  for (std::size_t n = 0; n < body.size(); ++n) {
    CAPTURE(n);
    auto r = parse(ByteView(body.data(), n));
    if (!r.ok()) CHECK(r.error().rfind(name + ": ", 0) == 0);
  }
}

}  // namespace

// ---- relay payload header ----------------------------------------------------------------------

TEST_CASE("relay payload: recognized u16 | tag[16] | cmd u8 | stream u16 | length u16 | data | zeros") {
  RelayMessage msg{RelayCommand::data, 0x0102, str("hi")};
  CellPayload p{};
  p.fill(0xee);  // the encoder overwrites everything
  REQUIRE(encode_relay_payload(msg, p).ok());
  Bytes expected = concat({hex("0000"), repeat(0, 16), hex("02 0102 0002 6869")});
  expected.resize(kCellPayloadSize, 0);
  CHECK(Bytes(p.begin(), p.end()) == expected);
  CHECK(kRelayTagOffset == 2);
  CHECK(kRelayCommandOffset == 18);
  CHECK(kRelayHeaderSize == 23);
  CHECK(kRelayMaxData == 486);

  auto d = decode_relay_payload(p);
  REQUIRE(d.ok());
  CHECK(*d == msg);
}

TEST_CASE("relay payload: the tag is not read by the decoder (the onion layer checks it)") {
  CellPayload p = payload_of(concat({hex("0000"), repeat(0x77, 16), hex("05 0000 0000")}));
  auto d = decode_relay_payload(p);
  REQUIRE(d.ok());
  CHECK(d->command == RelayCommand::sendme);
  CHECK(d->stream_id == 0);
}

TEST_CASE("relay payload: every command round-trips on a stream it may use") {
  for (int c = 1; c <= 12; ++c) {
    auto command = static_cast<RelayCommand>(c);
    CAPTURE(to_string(command));
    bool circuit_level = command == RelayCommand::extend || command == RelayCommand::extended ||
                         command == RelayCommand::truncate || command == RelayCommand::truncated ||
                         command == RelayCommand::drop;
    bool empty = command == RelayCommand::sendme || command == RelayCommand::truncate;
    RelayMessage msg{command, static_cast<StreamId>(circuit_level ? 0 : 0xbeef), empty ? Bytes{} : str("body")};
    CellPayload p{};
    REQUIRE(encode_relay_payload(msg, p).ok());
    CHECK(p[kRelayCommandOffset] == c);
    auto d = decode_relay_payload(p);
    REQUIRE(d.ok());
    CHECK(*d == msg);
  }
  // A full body and an empty one.
  for (std::size_t n : {std::size_t{0}, std::size_t{486}}) {
    RelayMessage msg{RelayCommand::data, 1, repeat(0x61, n)};
    CellPayload p{};
    REQUIRE(encode_relay_payload(msg, p).ok());
    auto d = decode_relay_payload(p);
    REQUIRE(d.ok());
    CHECK(*d == msg);
  }
  // SENDME on a stream and on the circuit.
  for (StreamId s : {StreamId{0}, StreamId{4}}) {
    RelayMessage msg{RelayCommand::sendme, s, {}};
    CellPayload p{};
    REQUIRE(encode_relay_payload(msg, p).ok());
    CHECK(decode_relay_payload(p).ok());
  }
}

TEST_CASE("relay payload: malformed headers") {
  auto header = [](std::string_view h) { return payload_of(concat({hex("0000"), repeat(0, 16), hex(h)})); };
  SUBCASE("recognized not zero") {
    auto p = payload_of(hex("0102"));
    CHECK(error_of(decode_relay_payload(p)) == "relay payload: recognized field is 0x0102, not 0 (not a cell for this hop)");
  }
  SUBCASE("unknown relay commands") {
    CHECK(error_of(decode_relay_payload(header("00 0001 0000"))) == "relay payload: relay command 0 unknown");
    CHECK(error_of(decode_relay_payload(header("0d 0001 0000"))) == "relay payload: relay command 13 unknown");
    CHECK(error_of(decode_relay_payload(header("ff 0001 0000"))) == "relay payload: relay command 255 unknown");
  }
  SUBCASE("length beyond the payload") {
    CHECK(error_of(decode_relay_payload(header("02 0001 01e7"))) == "relay payload: length 487 exceeds 486");
    CHECK(error_of(decode_relay_payload(header("02 0001 ffff"))) == "relay payload: length 65535 exceeds 486");
  }
  SUBCASE("stream messages need a stream, circuit messages must not name one") {
    CHECK(error_of(decode_relay_payload(header("01 0000 0000"))) == "relay payload: BEGIN on stream 0 (it needs a stream)");
    CHECK(error_of(decode_relay_payload(header("02 0000 0000"))) == "relay payload: DATA on stream 0 (it needs a stream)");
    CHECK(error_of(decode_relay_payload(header("06 0007 0000"))) ==
          "relay payload: EXTEND on stream 7 (a circuit message, stream must be 0)");
    CHECK(error_of(decode_relay_payload(header("0a 0001 0000"))) ==
          "relay payload: DROP on stream 1 (a circuit message, stream must be 0)");
  }
  SUBCASE("SENDME and TRUNCATE carry no body") {
    CHECK(error_of(decode_relay_payload(header("05 0000 0001 00"))) ==
          "relay payload: SENDME carries 1 body bytes (must be empty)");
    CHECK(error_of(decode_relay_payload(header("08 0000 0002 0000"))) ==
          "relay payload: TRUNCATE carries 2 body bytes (must be empty)");
  }
  SUBCASE("padding after the body must be zero") {
    CHECK(error_of(decode_relay_payload(header("02 0001 0001 61 00 01"))) ==
          "relay payload: byte 1 at payload offset 25 after the DATA body (padding must be zero)");
    CellPayload p = header("02 0001 0000");
    p[508] = 0x80;
    CHECK(error_of(decode_relay_payload(p)) ==
          "relay payload: byte 128 at payload offset 508 after the DATA body (padding must be zero)");
  }
}

TEST_CASE("relay payload: the encoder refuses what the decoder would") {
  CellPayload p{};
  CHECK(encode_relay_payload({RelayCommand::data, 1, repeat(0, 487)}, p).error() ==
        "relay payload: DATA body of 487 bytes exceeds 486");
  CHECK(encode_relay_payload({RelayCommand::begin, 0, str("x")}, p).error() ==
        "relay payload: BEGIN on stream 0 (it needs a stream)");
  CHECK(encode_relay_payload({RelayCommand::extended, 3, {}}, p).error() ==
        "relay payload: EXTENDED on stream 3 (a circuit message, stream must be 0)");
  CHECK(encode_relay_payload({RelayCommand::sendme, 0, str("v1")}, p).error() ==
        "relay payload: SENDME carries 2 body bytes (must be empty)");
  CHECK(encode_relay_payload({static_cast<RelayCommand>(40), 1, {}}, p).error() == "relay payload: relay command 40 unknown");
}

// ---- BEGIN -------------------------------------------------------------------------------------

TEST_CASE("BEGIN: \"host:port\" NUL | flags u32 — known answers and round trips") {
  BeginBody b{{"example.com", 443}, 0};
  Bytes expected = hex("6578616d706c652e636f6d 3a 343433 00 00000000");  // "example.com:443\0"
  CHECK(encode_begin(b) == expected);
  auto p = parse_begin(ByteView(expected));
  REQUIRE(p.ok());
  CHECK(*p == b);

  BeginBody v6{{"2001:db8::1", 80}, 1};
  CHECK(encode_begin(v6) == concat({str("[2001:db8::1]:80"), hex("00 00000001")}));
  auto p6 = parse_begin(ByteView(encode_begin(v6)));
  REQUIRE(p6.ok());
  CHECK(*p6 == v6);

  for (auto host : {"10.0.0.1", "::1", "_srv.example.com", "example.com.", "xn--bcher-kva.example", "localhost",
                    "a-b.c_d.e9", "1.2.3.4.in-addr.arpa"}) {
    CAPTURE(host);
    BeginBody x{{host, 65535}, 0xdeadbeef};
    auto r = parse_begin(ByteView(encode_begin(x)));
    REQUIRE(r.ok());
    CHECK(*r == x);
  }
}

TEST_CASE("BEGIN: flags are optional on the wire") {
  auto p = parse_begin(ByteView(concat({str("example.com:80"), hex("00")})));
  REQUIRE(p.ok());
  CHECK(p->target == HostPort{"example.com", 80});
  CHECK(p->flags == 0);
}

TEST_CASE("BEGIN: malformed bodies say what is wrong, never quoting the host") {
  auto err = [](std::string_view text) { return error_of(parse_begin(ByteView(concat({str(text), hex("00")})))); };
  CHECK(error_of(parse_begin(ByteView())) == "BEGIN: empty body (needs \"host:port\" and a NUL)");
  CHECK(error_of(parse_begin(ByteView(str("example.com:80")))) == "BEGIN: address is not NUL-terminated");
  CHECK(err("example.com") == "BEGIN: address has no ':port'");
  CHECK(err("") == "BEGIN: address has no ':port'");
  CHECK(err(":80") == "BEGIN: host is empty");
  CHECK(err("example.com:0") == "BEGIN: port 0 out of range (1-65535)");
  CHECK(err("example.com:65536") == "BEGIN: port 65536 out of range (1-65535)");
  CHECK(err("example.com:123456") == "BEGIN: port out of range (1-65535)");
  CHECK(err("example.com:") == "BEGIN: port is missing after ':'");
  CHECK(err("example.com:8a") == "BEGIN: port is not a decimal number");
  CHECK(err("example.com:+80") == "BEGIN: port is not a decimal number");
  CHECK(err("example.com:080") == "BEGIN: port has a leading zero");
  CHECK(err("[::1:80") == "BEGIN: '[' without a closing ']'");
  CHECK(err("[::1]80") == "BEGIN: expected ':' and a port after ']'");
  CHECK(err("[::1]") == "BEGIN: expected ':' and a port after ']'");
  CHECK(err("[1.2.3.4]:80") == "BEGIN: the host in brackets is not an IPv6 address");
  CHECK(err("[fe80::1%eth0]:80") == "BEGIN: the host in brackets is not an IPv6 address");
  CHECK(err("::1:80") == "BEGIN: an IPv6 address must be in brackets");
  CHECK(err("exa mple.com:80") == "BEGIN: host has character 0x20 at position 3 (names use letters, digits, '-', '.', '_')");
  CHECK(err("a/b:80") == "BEGIN: host has character 0x2f at position 1 (names use letters, digits, '-', '.', '_')");
  CHECK(err("\xc3\xa9.com:80") == "BEGIN: host has character 0xc3 at position 0 (names use letters, digits, '-', '.', '_')");
  CHECK(err("a..b:80") == "BEGIN: host has an empty label");
  CHECK(err(".a:80") == "BEGIN: host has an empty label");
  CHECK(err("a.b..:80") == "BEGIN: host has an empty label");
  CHECK(err(std::string(64, 'a') + ".com:80") == "BEGIN: host has a label of 64 bytes (at most 63)");
  CHECK(err(std::string(256, 'a') + ":80") == "BEGIN: host is 256 bytes long (at most 255)");
  CHECK(err("1.2.3:80") == "BEGIN: host ends in a numeric label but is not a dotted-quad IPv4 address");
  CHECK(err("2130706433:80") == "BEGIN: host ends in a numeric label but is not a dotted-quad IPv4 address");
  CHECK(err("0x7f.0x1:80") == "BEGIN: host ends in a numeric label but is not a dotted-quad IPv4 address");
  CHECK(err("1.2.3.256:80") == "BEGIN: host ends in a numeric label but is not a dotted-quad IPv4 address");
  CHECK(error_of(parse_begin(ByteView(concat({str("a.com:80"), hex("00 0000"), hex("")})))) ==
        "BEGIN: 2 bytes after the address (flags need 4)");
  CHECK(error_of(parse_begin(ByteView(concat({str("a.com:80"), hex("00 00000000 ff")})))) ==
        "BEGIN: 1 unexpected bytes after the flags");
  check_prefixes<BeginBody>(encode_begin({{"example.com", 443}, 7}), parse_begin, "BEGIN");
}

// ---- CONNECTED ---------------------------------------------------------------------------------

TEST_CASE("CONNECTED: empty, or atype u8 | address | ttl u32") {
  CHECK(encode_connected({}).empty());
  auto empty = parse_connected(ByteView());
  REQUIRE(empty.ok());
  CHECK(*empty == ConnectedBody{});

  ConnectedBody v4{"1.2.3.4", 300};
  Bytes e4 = hex("04 01020304 0000012c");
  CHECK(encode_connected(v4) == e4);
  auto p4 = parse_connected(ByteView(e4));
  REQUIRE(p4.ok());
  CHECK(*p4 == v4);

  ConnectedBody v6{"2001:db8::1", 0xffffffff};
  Bytes e6 = hex("06 20010db8000000000000000000000001 ffffffff");
  CHECK(encode_connected(v6) == e6);
  auto p6 = parse_connected(ByteView(e6));
  REQUIRE(p6.ok());
  CHECK(*p6 == v6);

  // Addresses come back in their canonical text form.
  auto canon = parse_connected(ByteView(encode_connected({"2001:0DB8:0:0::1", 1})));
  REQUIRE(canon.ok());
  CHECK(canon->address == "2001:db8::1");
}

TEST_CASE("CONNECTED: malformed bodies") {
  CHECK(error_of(parse_connected(ByteView(hex("05 01020304 00000000")))) == "CONNECTED: address type 5 unknown (4 or 6)");
  CHECK(error_of(parse_connected(ByteView(hex("04 0102")))) ==
        "CONNECTED: body ends before the IPv4 address (needs 4 bytes, 2 left)");
  CHECK(error_of(parse_connected(ByteView(hex("06 0102")))) ==
        "CONNECTED: body ends before the IPv6 address (needs 16 bytes, 2 left)");
  CHECK(error_of(parse_connected(ByteView(hex("04 01020304 000001")))) ==
        "CONNECTED: body ends before the TTL (needs 4 bytes, 3 left)");
  CHECK(error_of(parse_connected(ByteView(hex("04 01020304 00000001 00")))) ==
        "CONNECTED: 1 unexpected bytes after the TTL");
  check_prefixes<ConnectedBody>(encode_connected({"::1", 5}), parse_connected, "CONNECTED");
}

// ---- END ---------------------------------------------------------------------------------------

TEST_CASE("END: reason u8; empty means misc; unknown reasons read as misc") {
  for (int r = 1; r <= 14; ++r) {
    EndBody b{static_cast<EndReason>(r)};
    CAPTURE(to_string(b.reason));
    CHECK(encode_end(b) == Bytes{static_cast<std::uint8_t>(r)});
    auto p = parse_end(ByteView(encode_end(b)));
    REQUIRE(p.ok());
    CHECK(*p == b);
    CHECK(std::string(to_string(b.reason)) != "unknown");
  }
  CHECK(encode_end({EndReason::exit_policy}) == hex("04"));
  CHECK(parse_end(ByteView())->reason == EndReason::misc);
  CHECK(parse_end(ByteView(hex("00")))->reason == EndReason::misc);
  CHECK(parse_end(ByteView(hex("0f")))->reason == EndReason::misc);
  CHECK(parse_end(ByteView(hex("ff")))->reason == EndReason::misc);
  CHECK(error_of(parse_end(ByteView(hex("04 01020304")))) == "END: 4 unexpected bytes after the reason");
}

// ---- EXTEND / EXTENDED -------------------------------------------------------------------------

TEST_CASE("EXTEND: atype | addr | port u16 | identity[32] | htype u16 | hlen u16 | hdata") {
  ExtendBody b;
  b.address = {"127.0.0.1", 9001};
  b.identity = identity_of(0x11);
  b.create.handshake = repeat(0xab, 96);
  Bytes expected = concat({hex("04 7f000001 2329"), repeat(0x11, 32), hex("0002 0060"), repeat(0xab, 96)});
  CHECK(encode_extend(b) == expected);
  auto p = parse_extend(ByteView(expected));
  REQUIRE(p.ok());
  CHECK(*p == b);

  ExtendBody b6 = b;
  b6.address = {"fd00::2", 443};
  b6.create.handshake = {};
  Bytes e6 = concat({hex("06 fd000000000000000000000000000002 01bb"), repeat(0x11, 32), hex("0002 0000")});
  CHECK(encode_extend(b6) == e6);
  auto p6 = parse_extend(ByteView(e6));
  REQUIRE(p6.ok());
  CHECK(*p6 == b6);

  // The largest handshake that fits a relay body with an IPv6 address: 486 - 55.
  ExtendBody big = b6;
  big.create.handshake = repeat(1, 431);
  CellPayload payload{};
  REQUIRE(encode_relay_payload({RelayCommand::extend, 0, encode_extend(big)}, payload).ok());
  auto msg = decode_relay_payload(payload);
  REQUIRE(msg.ok());
  auto pb = parse_extend(ByteView(msg->body));
  REQUIRE(pb.ok());
  CHECK(*pb == big);
}

TEST_CASE("EXTEND: malformed bodies") {
  Bytes id = repeat(0x22, 32);
  CHECK(error_of(parse_extend(ByteView())) == "EXTEND: empty body");
  CHECK(error_of(parse_extend(ByteView(hex("09 01020304")))) == "EXTEND: address type 9 unknown (4 or 6)");
  CHECK(error_of(parse_extend(ByteView(hex("04 7f00")))) == "EXTEND: body ends before the IPv4 address (needs 4 bytes, 2 left)");
  CHECK(error_of(parse_extend(ByteView(hex("04 7f000001 23")))) == "EXTEND: body ends before the port (needs 2 bytes, 1 left)");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 0000"), id, hex("0002 0000")})))) ==
        "EXTEND: port 0 out of range (1-65535)");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 2329"), repeat(0x22, 31)})))) ==
        "EXTEND: body ends before the identity key (needs 32 bytes, 31 left)");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 2329"), repeat(0, 32), hex("0002 0000")})))) ==
        "EXTEND: identity key is all zeros");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 2329"), id})))) ==
        "EXTEND: body ends before the handshake type (needs 2 bytes, 0 left)");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 2329"), id, hex("0001 0000")})))) ==
        "EXTEND: handshake type 0x0001 unknown (expected 0x0002, thor-ntor-v1)");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 2329"), id, hex("0002 00")})))) ==
        "EXTEND: body ends before the handshake length (needs 2 bytes, 1 left)");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 2329"), id, hex("0002 0060 abab")})))) ==
        "EXTEND: handshake length 96 but only 2 bytes follow");
  CHECK(error_of(parse_extend(ByteView(concat({hex("04 7f000001 2329"), id, hex("0002 0001 ab cd")})))) ==
        "EXTEND: 1 unexpected bytes after the handshake");
  ExtendBody b;
  b.address = {"10.1.2.3", 5000};
  b.identity = identity_of(3);
  b.create.handshake = repeat(7, 96);
  check_prefixes<ExtendBody>(encode_extend(b), parse_extend, "EXTEND");
}

TEST_CASE("EXTENDED: hlen u16 | hdata") {
  ExtendedBody b;
  b.created.handshake = repeat(0xcd, 64);
  Bytes expected = concat({hex("0040"), repeat(0xcd, 64)});
  CHECK(encode_extended(b) == expected);
  auto p = parse_extended(ByteView(expected));
  REQUIRE(p.ok());
  CHECK(*p == b);
  CHECK(error_of(parse_extended(ByteView())) == "EXTENDED: body ends before the handshake length (needs 2 bytes, 0 left)");
  CHECK(error_of(parse_extended(ByteView(hex("0040 cdcd")))) == "EXTENDED: handshake length 64 but only 2 bytes follow");
  CHECK(error_of(parse_extended(ByteView(hex("0001 cd 00")))) == "EXTENDED: 1 unexpected bytes after the handshake");
  check_prefixes<ExtendedBody>(expected, parse_extended, "EXTENDED");
}

// ---- TRUNCATED ---------------------------------------------------------------------------------

TEST_CASE("TRUNCATED: reason u8; unknown reasons read as none") {
  for (int r = 0; r <= 12; ++r) {
    TruncatedBody b{static_cast<DestroyReason>(r)};
    CHECK(encode_truncated(b) == Bytes{static_cast<std::uint8_t>(r)});
    auto p = parse_truncated(ByteView(encode_truncated(b)));
    REQUIRE(p.ok());
    CHECK(*p == b);
  }
  CHECK(encode_truncated({DestroyReason::connect_failed}) == hex("06"));
  CHECK(parse_truncated(ByteView(hex("63")))->reason == DestroyReason::none);
  CHECK(error_of(parse_truncated(ByteView())) == "TRUNCATED: body ends before the reason (needs 1 bytes, 0 left)");
  CHECK(error_of(parse_truncated(ByteView(hex("06 00")))) == "TRUNCATED: 1 unexpected bytes after the reason");
}

// ---- RESOLVE / RESOLVED ------------------------------------------------------------------------

TEST_CASE("RESOLVE: hostname NUL") {
  ResolveBody b{"example.com"};
  Bytes expected = hex("6578616d706c652e636f6d 00");
  CHECK(encode_resolve(b) == expected);
  auto p = parse_resolve(ByteView(expected));
  REQUIRE(p.ok());
  CHECK(*p == b);
  auto rev = parse_resolve(ByteView(encode_resolve({"4.3.2.1.in-addr.arpa"})));
  REQUIRE(rev.ok());
  CHECK(rev->hostname == "4.3.2.1.in-addr.arpa");

  CHECK(error_of(parse_resolve(ByteView())) == "RESOLVE: empty body (needs a hostname and a NUL)");
  CHECK(error_of(parse_resolve(ByteView(str("example.com")))) == "RESOLVE: hostname is not NUL-terminated");
  CHECK(error_of(parse_resolve(ByteView(hex("00")))) == "RESOLVE: host is empty");
  CHECK(error_of(parse_resolve(ByteView(concat({str("exa\nmple"), hex("00")})))) ==
        "RESOLVE: host has character 0x0a at position 3 (names use letters, digits, '-', '.', '_')");
  CHECK(error_of(parse_resolve(ByteView(concat({str("example.com"), hex("00 00")})))) ==
        "RESOLVE: 1 unexpected bytes after the NUL");
  check_prefixes<ResolveBody>(expected, parse_resolve, "RESOLVE");
}

TEST_CASE("RESOLVED: (type u8 | len u8 | value | ttl u32)+") {
  using T = ResolvedAnswer::Type;
  ResolvedBody b{{{T::ipv4, "93.184.216.34", 60},
                  {T::ipv6, "2606:2800:220:1:248:1893:25c8:1946", 120},
                  {T::hostname, "example.com", 5},
                  {T::error_transient, "", 0},
                  {T::error_permanent, "", 7}}};
  Bytes expected = concat({hex("04 04 5db8d822 0000003c"),
                           hex("06 10 26062800022000010248189325c81946 00000078"),
                           hex("00 0b 6578616d706c652e636f6d 00000005"),
                           hex("f0 00 00000000"),
                           hex("f1 00 00000007")});
  CHECK(encode_resolved(b) == expected);
  auto p = parse_resolved(ByteView(expected));
  REQUIRE(p.ok());
  CHECK(*p == b);
  check_prefixes<ResolvedBody>(expected, parse_resolved, "RESOLVED");
}

TEST_CASE("RESOLVED: malformed bodies") {
  CHECK(error_of(parse_resolved(ByteView())) == "RESOLVED: no answers");
  CHECK(error_of(parse_resolved(ByteView(hex("04")))) == "RESOLVED: answer 1 truncated: 1 byte left, its type and length need 2");
  CHECK(error_of(parse_resolved(ByteView(hex("07 00 00000000")))) == "RESOLVED: answer 1 has type 0x07 unknown");
  CHECK(error_of(parse_resolved(ByteView(hex("04 05 0102030405 00000000")))) ==
        "RESOLVED: answer 1 is an IPv4 address of 5 bytes (must be 4)");
  CHECK(error_of(parse_resolved(ByteView(hex("06 04 01020304 00000000")))) ==
        "RESOLVED: answer 1 is an IPv6 address of 4 bytes (must be 16)");
  CHECK(error_of(parse_resolved(ByteView(hex("04 04 0102")))) ==
        "RESOLVED: answer 1 truncated: value length 4 but only 2 bytes left");
  CHECK(error_of(parse_resolved(ByteView(hex("04 04 01020304 00000001 04 04 01020304 0000")))) ==
        "RESOLVED: answer 2 truncated: its TTL needs 4 bytes, 2 left");
  CHECK(error_of(parse_resolved(ByteView(hex("f0 03 616263 00000000")))) ==
        "RESOLVED: answer 1 is an error with 3 value bytes (must be 0)");
  CHECK(error_of(parse_resolved(ByteView(hex("00 03 612062 00000000")))) ==
        "RESOLVED: answer 1: host has character 0x20 at position 1 (names use letters, digits, '-', '.', '_')");
  CHECK(error_of(parse_resolved(ByteView(hex("00 00 00000000")))) == "RESOLVED: answer 1: host is empty");
}

// ---- the whole path: body -> relay payload -> cell -> bytes and back ---------------------------

TEST_CASE("a BEGIN travels as a RELAY cell and comes back whole") {
  BeginBody begin{{"example.org", 80}, 0};
  RelayMessage msg{RelayCommand::begin, 1, encode_begin(begin)};
  Cell cell;
  cell.circ_id = 0x80000010;
  cell.command = CellCommand::relay;
  REQUIRE(encode_relay_payload(msg, cell.payload).ok());
  CellBytes wire = encode_cell(cell);

  auto d = decode_cell(ByteView(wire));
  REQUIRE(d.is_ok());
  auto m = decode_relay_payload(d.value->payload);
  REQUIRE(m.ok());
  CHECK(m->command == RelayCommand::begin);
  auto b = parse_begin(ByteView(m->body));
  REQUIRE(b.ok());
  CHECK(*b == begin);
}

TEST_CASE("flow control windows are four times Tor's (docs/protocol.md 8)") {
  // Both ends of a circuit must agree on these: a change is a protocol change.
  CHECK(kCircuitWindowStart == 4000);
  CHECK(kCircuitWindowIncrement == 400);
  CHECK(kStreamWindowStart == 2000);
  CHECK(kStreamWindowIncrement == 200);
}

TEST_CASE("names of relay commands and END reasons") {
  CHECK(std::string(to_string(RelayCommand::resolved)) == "RESOLVED");
  CHECK(std::string(to_string(static_cast<RelayCommand>(0))) == "unknown");
  CHECK(std::string(to_string(EndReason::exit_policy)) == "exit_policy");
  CHECK(std::string(to_string(static_cast<EndReason>(0))) == "unknown");
}

// ---- encoders given what the wire cannot carry -------------------------------------------------

TEST_CASE("check_target_host: the BEGIN / RESOLVE host rules, without quoting the host") {
  for (auto ok : {"example.com", "example.com.", "a", "_dmarc.example", "10.0.0.1", "::1", "2001:db8::8:800:200c:417a"}) {
    CAPTURE(ok);
    CHECK(check_target_host(ok).ok());
  }
  CHECK(check_target_host("").error() == "host is empty");
  CHECK(check_target_host("secret host").error() ==
        "host has character 0x20 at position 6 (names use letters, digits, '-', '.', '_')");
  CHECK(check_target_host("1:2").error() == "host contains ':' but is not an IPv6 address");
  CHECK(check_target_host("10.0.0").error() == "host ends in a numeric label but is not a dotted-quad IPv4 address");
  CHECK(check_target_host("010.0.0.1").error() == "host ends in a numeric label but is not a dotted-quad IPv4 address");
}

TEST_CASE("encoders never assert on bad content; the parser refuses what they could not say right") {
  // A SOCKS client's odd name goes out as given and the exit refuses it.
  CHECK_FALSE(parse_begin(ByteView(encode_begin({{"bad host", 80}, 0}))).ok());
  CHECK_FALSE(parse_resolve(ByteView(encode_resolve({"bad host"}))).ok());
  // A NUL in the name cannot smuggle another target: a host with ':' is bracketed, one without has
  // no port before its NUL, and ":port", NUL and flags always follow as bytes the exit refuses.
  for (std::string smuggle : {std::string("evil.example:25") + '\0' + "ABCD", std::string("evil.example") + '\0'}) {
    auto b = parse_begin(ByteView(encode_begin({{smuggle, 80}, 0})));
    CHECK_FALSE(b.ok());
  }
  CHECK(error_of(parse_begin(ByteView(encode_begin({{std::string("a.example") + '\0' + "ABCD", 80}, 0})))) ==
        "BEGIN: address has no ':port'");
  // Addresses that are not literals.
  CHECK(encode_connected({"not-an-ip", 30}).empty());
  ExtendBody e;
  e.address = {"relay.example", 9001};
  e.identity = identity_of(1);
  CHECK(encode_extend(e).empty());
  CHECK(error_of(parse_extend(ByteView(encode_extend(e)))) == "EXTEND: empty body");
}

TEST_CASE("RESOLVED: an answer the wire cannot carry goes out as error_permanent") {
  using T = ResolvedAnswer::Type;
  ResolvedBody b{{{T::hostname, "bad name", 9}, {T::ipv4, "::1", 8}, {T::ipv6, "1.2.3.4", 7},
                  {T::error_transient, "ignored", 6}, {T::ipv4, "5.6.7.8", 5}}};
  Bytes wire = encode_resolved(b);
  CHECK(wire == hex("f1 00 00000009  f1 00 00000008  f1 00 00000007  f0 00 00000006  04 04 05060708 00000005"));
  auto p = parse_resolved(ByteView(wire));
  REQUIRE(p.ok());
  REQUIRE(p->answers.size() == 5);
  CHECK(p->answers[0] == ResolvedAnswer{T::error_permanent, "", 9});
  CHECK(p->answers[4] == ResolvedAnswer{T::ipv4, "5.6.7.8", 5});
}
