// Relay messages. Decodes the input as a relay payload (zero-extended to 509 bytes) and as the body
// of every relay message, re-encodes whatever decodes and aborts when the round trip changes it.
// Encodings are canonical, so the bytes come back exactly, except where the format allows one
// thing to be said two ways: BEGIN without its optional flags, an empty END, and END / TRUNCATED
// reasons the parser does not know (read as misc / none).
//
// Random bytes rarely make a valid message, so the input is also read as edits to valid ones
// (a template chosen by the first byte, then xor-or-truncate edits).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/cell/relay_msg.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using thor::fuzz::require;

namespace {

bool same(const Bytes& a, ByteView b) { return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin()); }

// parse -> encode -> parse gives the same value, and encode gives back the input bytes when
// `canonical` says this input is the one encoding of its value.
template <class T, class Parse, class Encode, class Canonical>
void round_trip(ByteView in, Parse parse, Encode encode, Canonical canonical, const char* name) {
  auto require_that = [name](bool ok, const char* what) {
    if (!ok) require(false, (std::string(name) + " " + what).c_str());
  };
  Result<T> v = parse(in);
  if (!v.ok()) {
    require_that(!v.error().empty(), "error without a message");
    return;
  }
  Bytes again = encode(*v);
  require_that(canonical(again), "re-encodes to other bytes");
  Result<T> v2 = parse(ByteView(again));
  require_that(v2.ok() && *v2 == *v, "re-decodes differently");
}

void check(ByteView in) {
  CellPayload payload{};
  std::copy(in.begin(), in.begin() + static_cast<long>(std::min(in.size(), kCellPayloadSize)), payload.begin());
  if (auto m = decode_relay_payload(payload); m.ok()) {
    require(m->body.size() <= kRelayMaxData, "relay body too long");
    CellPayload again{};
    require(encode_relay_payload(*m, again).ok(), "a decoded relay message does not encode");
    // The encoder leaves the tag zero for the onion layer; the decoder does not read it.
    CellPayload expected = payload;
    std::fill(expected.begin() + kRelayTagOffset, expected.begin() + kRelayTagOffset + kRelayTagSize, 0);
    require(again == expected, "relay payload re-encodes to other bytes");
  } else {
    require(!m.error().empty(), "relay payload error without a message");
  }

  auto exact = [&](const Bytes& again) { return same(again, in); };
  const std::size_t n = in.size();
  round_trip<BeginBody>(in, parse_begin, encode_begin, [&](const Bytes& again) {
    Bytes with_flags(in.begin(), in.end());
    with_flags.insert(with_flags.end(), 4, 0);  // flags were left out: they read as 0
    return same(again, in) || same(again, ByteView(with_flags));
  }, "BEGIN");
  round_trip<ConnectedBody>(in, parse_connected, encode_connected, exact, "CONNECTED");
  round_trip<EndBody>(in, parse_end, encode_end, [&](const Bytes& again) {
    bool known = n == 1 && in[0] >= 1 && in[0] <= static_cast<std::uint8_t>(EndReason::not_directory);
    return known ? same(again, in) : again.size() == 1;
  }, "END");
  round_trip<ExtendBody>(in, parse_extend, encode_extend, exact, "EXTEND");
  round_trip<ExtendedBody>(in, parse_extended, encode_extended, exact, "EXTENDED");
  round_trip<TruncatedBody>(in, parse_truncated, encode_truncated, [&](const Bytes& again) {
    bool known = n == 1 && in[0] <= static_cast<std::uint8_t>(DestroyReason::no_such_service);
    return known ? same(again, in) : again == Bytes{0};
  }, "TRUNCATED");
  round_trip<ResolveBody>(in, parse_resolve, encode_resolve, exact, "RESOLVE");
  round_trip<ResolvedBody>(in, parse_resolved, encode_resolved, exact, "RESOLVED");
}

std::vector<Bytes> templates() {
  using T = ResolvedAnswer::Type;
  std::vector<Bytes> out;
  auto payload = [&](RelayCommand c, StreamId s, const Bytes& body) {
    CellPayload p{};
    require(encode_relay_payload({c, s, body}, p).ok(), "a template payload does not encode");
    out.emplace_back(p.begin(), p.end());
  };
  ExtendBody extend;
  extend.address = {"10.0.0.2", 9001};
  extend.identity.bytes.fill(0x33);
  extend.create.handshake = Bytes(96, 0x44);
  ExtendBody extend6 = extend;
  extend6.address = {"fd00::7", 443};
  ExtendedBody extended;
  extended.created.handshake = Bytes(64, 0x55);
  std::vector<Bytes> bodies = {
      encode_begin({{"example.com", 443}, 0}),
      encode_begin({{"2001:db8::1", 80}, 5}),
      encode_begin({{"10.1.2.3", 22}, 0}),
      encode_connected({"1.2.3.4", 60}),
      encode_connected({"::1", 60}),
      encode_end({EndReason::exit_policy}),
      encode_extend(extend),
      encode_extend(extend6),
      encode_extended(extended),
      encode_truncated({DestroyReason::timeout}),
      encode_resolve({"www.example.org"}),
      encode_resolved({{{T::ipv4, "9.9.9.9", 1}, {T::ipv6, "::2", 2}, {T::hostname, "a.example", 3},
                        {T::error_transient, "", 4}}}),
  };
  out.insert(out.end(), bodies.begin(), bodies.end());
  payload(RelayCommand::begin, 1, bodies[0]);
  payload(RelayCommand::data, 2, Bytes(486, 0x61));
  payload(RelayCommand::sendme, 0, {});
  payload(RelayCommand::extend, 0, bodies[6]);
  payload(RelayCommand::resolved, 3, bodies.back());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_relay_msg", ByteView(data, size));
  check(ByteView(data, size));

  if (size < 1) return 0;
  static const std::vector<Bytes> kTemplates = templates();
  Bytes t = kTemplates[data[0] % kTemplates.size()];
  // Up to three edits of 3 bytes: position u16, value; value 0 truncates there, anything else is
  // xored in. More edits would leave little of the template.
  for (std::size_t i = 1; i + 3 <= size && i < 10 && !t.empty(); i += 3) {
    std::size_t pos = static_cast<std::size_t>((data[i] << 8) | data[i + 1]) % t.size();
    if (data[i + 2] == 0) t.resize(pos);
    else t[pos] ^= data[i + 2];
  }
  check(ByteView(t));
  return 0;
}
