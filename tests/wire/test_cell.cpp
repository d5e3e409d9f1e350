// Cells and control cell bodies: round trips, the wire format pinned byte by byte, and every way a
// peer can get them wrong.
#include <doctest/doctest.h>

#include <string>

#include "common/cell/cell.hpp"
#include "common/crypto/encoding.hpp"

using namespace thor;

namespace {

// Hex with optional spaces, for byte vectors written out literally.
Bytes hex(std::string_view text) {
  std::string compact;
  for (char c : text)
    if (c != ' ') compact.push_back(c);
  auto b = crypto::from_hex(compact);
  REQUIRE(b.has_value());
  return *b;
}

Bytes repeat(std::uint8_t b, std::size_t n) { return Bytes(n, b); }

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// The 514 bytes of a cell: the given prefix, then zeros.
Bytes cell_bytes(const Bytes& prefix) {
  Bytes out = prefix;
  out.resize(kCellSize, 0);
  return out;
}

Bytes to_vec(const CellBytes& c) { return Bytes(c.begin(), c.end()); }

CellPayload payload_of(const Bytes& prefix) {
  CellPayload p{};
  REQUIRE(prefix.size() <= p.size());
  std::copy(prefix.begin(), prefix.end(), p.begin());
  return p;
}

}  // namespace

TEST_CASE("a cell is circ_id u32 | command u8 | payload[509], 514 bytes, big-endian") {
  Cell cell;
  cell.circ_id = 0x80000001;
  cell.command = CellCommand::relay;
  for (std::size_t i = 0; i < kCellPayloadSize; ++i) cell.payload[i] = static_cast<std::uint8_t>(i);
  CellBytes bytes = encode_cell(cell);
  CHECK(bytes.size() == 514);
  CHECK(Bytes(bytes.begin(), bytes.begin() + 7) == hex("80000001 03 0001"));
  CHECK(bytes[513] == static_cast<std::uint8_t>(508 & 0xff));

  auto d = decode_cell(ByteView(bytes));
  REQUIRE(d.is_ok());
  CHECK(d.consumed == kCellSize);
  CHECK(*d.value == cell);

  // The span form writes the same bytes.
  Bytes out(kCellSize, 0xee);
  encode_cell(cell, MutableByteView(out));
  CHECK(out == to_vec(bytes));
}

TEST_CASE("decode_cell: every length short of 514 is incomplete, never an error") {
  Bytes good = to_vec(encode_cell(make_destroy_cell(7, DestroyReason::requested)));
  for (std::size_t n = 0; n < kCellSize; ++n) {
    CAPTURE(n);
    auto d = decode_cell(ByteView(good.data(), n));
    CHECK(d.is_incomplete());
    CHECK(d.consumed == 0);
  }
  // Even a prefix whose command byte is garbage is only incomplete: the cell is not whole yet.
  Bytes junk(100, 0xff);
  CHECK(decode_cell(ByteView(junk)).is_incomplete());
}

TEST_CASE("decode_cell reads one cell from a longer buffer") {
  Bytes two = concat({to_vec(encode_cell(make_destroy_cell(1, DestroyReason::finished))),
                      to_vec(encode_cell(make_destroy_cell(2, DestroyReason::timeout)))});
  auto d = decode_cell(ByteView(two));
  REQUIRE(d.is_ok());
  CHECK(d.consumed == 514);
  CHECK(d.value->circ_id == 1);
  auto d2 = decode_cell(ByteView(two).subspan(d.consumed));
  REQUIRE(d2.is_ok());
  CHECK(d2.value->circ_id == 2);
}

TEST_CASE("decode_cell refuses unknown commands with the command in the message") {
  for (int command : {5, 6, 7, 128, 255}) {
    CAPTURE(command);
    Bytes b = cell_bytes(hex("00000009"));
    b[4] = static_cast<std::uint8_t>(command);
    auto d = decode_cell(ByteView(b));
    REQUIRE(d.is_invalid());
    CHECK(d.error == "cell: command " + std::to_string(command) + " unknown (on circuit 0x00000009)");
  }
}

TEST_CASE("decode_cell: circuit id 0 only for padding") {
  auto pad = decode_cell(ByteView(cell_bytes(hex("00000000 00 ffff"))));
  REQUIRE(pad.is_ok());
  CHECK(pad.value->command == CellCommand::padding);
  CHECK(pad.value->payload[0] == 0xff);  // padding content is not looked at
  for (std::uint8_t command : {1, 2, 3, 4}) {
    Bytes b = cell_bytes(hex("00000000"));
    b[4] = command;
    auto d = decode_cell(ByteView(b));
    REQUIRE(d.is_invalid());
    CHECK(d.error == std::string("cell: ") + to_string(static_cast<CellCommand>(command)) +
                         " on circuit id 0 (reserved for padding)");
  }
  // Padding on a circuit is fine too (ignored by the receiver).
  CHECK(decode_cell(ByteView(cell_bytes(hex("00000005 00")))).is_ok());
}

TEST_CASE("CREATE: htype u16 | hlen u16 | hdata | zeros — known answer and round trip") {
  CreateBody body;
  body.handshake = repeat(0xab, 96);
  Cell cell = make_create_cell(0x80000002, body);
  Bytes expected = cell_bytes(concat({hex("80000002 01 0002 0060"), repeat(0xab, 96)}));
  CHECK(to_vec(encode_cell(cell)) == expected);

  auto d = decode_cell(ByteView(expected));
  REQUIRE(d.is_ok());
  REQUIRE(d.value->command == CellCommand::create);
  auto parsed = parse_create(d.value->payload);
  REQUIRE(parsed.ok());
  CHECK(*parsed == body);

  // Empty and largest handshakes round-trip too (length checks are the handshake's business).
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{505}}) {
    CreateBody b;
    b.handshake = repeat(0x5a, n);
    auto p = parse_create(make_create_cell(3, b).payload);
    REQUIRE(p.ok());
    CHECK(*p == b);
  }
}

TEST_CASE("CREATE: malformed bodies") {
  SUBCASE("unknown handshake type") {
    auto r = parse_create(payload_of(hex("0001 0060")));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "CREATE: handshake type 0x0001 unknown (expected 0x0002, thor-ntor-v1)");
  }
  SUBCASE("handshake longer than the payload can hold") {
    auto r = parse_create(payload_of(hex("0002 0258")));  // 600
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "CREATE: handshake length 600 exceeds 505");
    auto r2 = parse_create(payload_of(hex("0002 01fa")));  // 506
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error() == "CREATE: handshake length 506 exceeds 505");
  }
  SUBCASE("bytes after the handshake") {
    auto r = parse_create(payload_of(hex("0002 0002 aaaa 00 07")));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "CREATE: byte 7 at payload offset 7 after the body (padding must be zero)");
    CellPayload p = payload_of(hex("0002 0000"));
    p[508] = 1;
    auto r2 = parse_create(p);
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error() == "CREATE: byte 1 at payload offset 508 after the body (padding must be zero)");
  }
}

TEST_CASE("CREATED: hlen u16 | hdata | zeros — known answer, round trip, malformed") {
  CreatedBody body;
  body.handshake = repeat(0xcd, 64);
  Cell cell = make_created_cell(0x00000003, body);
  CHECK(to_vec(encode_cell(cell)) == cell_bytes(concat({hex("00000003 02 0040"), repeat(0xcd, 64)})));
  auto parsed = parse_created(cell.payload);
  REQUIRE(parsed.ok());
  CHECK(*parsed == body);

  CreatedBody big;
  big.handshake = repeat(1, 507);
  auto p = parse_created(make_created_cell(3, big).payload);
  REQUIRE(p.ok());
  CHECK(*p == big);

  auto r = parse_created(payload_of(hex("01fc")));  // 508
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == "CREATED: handshake length 508 exceeds 507");
  auto r2 = parse_created(payload_of(hex("0001 aa bb")));
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error() == "CREATED: byte 187 at payload offset 3 after the body (padding must be zero)");
}

TEST_CASE("DESTROY: reason u8 | zeros — every reason round-trips; unknown reasons read as none") {
  for (int r = 0; r <= 12; ++r) {
    auto reason = static_cast<DestroyReason>(r);
    CAPTURE(to_string(reason));
    Cell cell = make_destroy_cell(0x1234, reason);
    Bytes expected = cell_bytes(hex("00001234 04"));
    expected[5] = static_cast<std::uint8_t>(r);
    CHECK(to_vec(encode_cell(cell)) == expected);
    auto parsed = parse_destroy(cell.payload);
    REQUIRE(parsed.ok());
    CHECK(parsed->reason == reason);
    CHECK(std::string(to_string(reason)) != "unknown");
  }
  CHECK(to_vec(encode_cell(make_destroy_cell(0x80000001, DestroyReason::protocol))) ==
        cell_bytes(hex("80000001 04 01")));

  for (int r : {13, 99, 255}) {
    auto parsed = parse_destroy(payload_of(Bytes{static_cast<std::uint8_t>(r)}));
    REQUIRE(parsed.ok());
    CHECK(parsed->reason == DestroyReason::none);
  }
  auto bad = parse_destroy(payload_of(hex("03 00 00 09")));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error() == "DESTROY: byte 9 at payload offset 3 after the body (padding must be zero)");
}

TEST_CASE("every single-byte change to a control payload is either refused or decodes differently") {
  // The encodings are canonical: no byte of a cell is ignored by the parser.
  CreateBody body;
  body.handshake = repeat(0x42, 96);
  Cell cell = make_create_cell(9, body);
  for (std::size_t i = 0; i < kCellPayloadSize; ++i) {
    CellPayload p = cell.payload;
    p[i] ^= 0x01;
    auto r = parse_create(p);
    if (r.ok()) CHECK_FALSE(*r == body);
  }
}

TEST_CASE("names of commands and reasons") {
  CHECK(std::string(to_string(CellCommand::create)) == "CREATE");
  CHECK(std::string(to_string(CellCommand::destroy)) == "DESTROY");
  CHECK(std::string(to_string(static_cast<CellCommand>(77))) == "unknown");
  CHECK(std::string(to_string(DestroyReason::or_identity)) == "or_identity");
  CHECK(std::string(to_string(static_cast<DestroyReason>(77))) == "unknown");
}
