#include <doctest/doctest.h>

#include "common/bytes.hpp"
#include "common/net_address.hpp"

using namespace thor;

TEST_CASE("Reader reads big-endian values and refuses to run past the end") {
  const std::uint8_t data[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
  Reader r{ByteView(data)};
  std::uint8_t a;
  std::uint16_t b;
  std::uint32_t c;
  REQUIRE(r.u8(a));
  REQUIRE(r.u16(b));
  CHECK(a == 0x01);
  CHECK(b == 0x0203);
  REQUIRE(r.u32(c));
  CHECK(c == 0x04050607);
  CHECK(r.empty());
  CHECK_FALSE(r.u8(a));
  Reader r2{ByteView(data, 3)};
  CHECK_FALSE(r2.u32(c));
  CHECK(r2.consumed() == 0);  // a failed read consumes nothing
}

TEST_CASE("Writer and SpanWriter write big-endian values") {
  Bytes out;
  Writer(out).u8(1).u16(0x0203).u32(0x04050607).u64(0x08090a0b0c0d0e0f).bytes("hi");
  CHECK(out == Bytes{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 'h', 'i'});
  std::uint8_t buf[4];
  SpanWriter w{MutableByteView(buf)};
  w.u16(0xabcd).u16(0x1234);
  CHECK(w.ok());
  w.u8(9);
  CHECK_FALSE(w.ok());
  CHECK(buf[0] == 0xab);
  CHECK(buf[3] == 0x34);
}

TEST_CASE("parse_host_port") {
  auto a = parse_host_port("127.0.0.1:9050");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 9050);
  auto b = parse_host_port("[::1]:80");
  REQUIRE(b);
  CHECK(b->host == "::1");
  CHECK(b->to_string() == "[::1]:80");
  CHECK(parse_host_port("example.com:443")->host == "example.com");
  CHECK_FALSE(parse_host_port("example.com"));
  CHECK_FALSE(parse_host_port("example.com:0"));
  CHECK(parse_host_port("127.0.0.1:0", true));
  CHECK_FALSE(parse_host_port("example.com:65536"));
  CHECK_FALSE(parse_host_port("::1:80"));
  CHECK_FALSE(parse_host_port(":80"));
  CHECK(parse_host_port("host:x").error().find("bad port") != std::string::npos);
}
