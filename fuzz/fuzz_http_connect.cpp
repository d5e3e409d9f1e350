// The HTTP CONNECT head parser. Runs the input through socks::HttpConnectParser twice, whole and in
// small reads, and aborts when the two disagree, when a call claims more bytes than it was given,
// when an error comes without a response, or when a finished parser takes more input.
//
// The first byte picks the read size and optionally a "CONNECT " prefix, so most inputs get past
// the method and exercise the target and header parsing.
#include <cstdint>
#include <optional>
#include <string>

#include "common/socks/http_connect.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::socks;
using thor::fuzz::require;

namespace {


struct Outcome {
  Bytes reply;
  std::optional<ConnectRequest> request;
  bool failed = false;
  Bytes leftover;
};

Outcome drive(ByteView input, std::size_t chunk) {
  HttpConnectParser p;
  Outcome out;
  Bytes buffer;
  std::size_t pos = 0;
  for (;;) {
    std::size_t n = std::min(chunk, input.size() - pos);
    buffer.insert(buffer.end(), input.begin() + static_cast<long>(pos), input.begin() + static_cast<long>(pos + n));
    pos += n;
    HttpConnectAction a = p.advance(buffer);
    require(a.consumed <= buffer.size(), "consumed more than it was given");
    require(!(a.request && a.error), "both a request and an error");
    require(!a.error || a.reply.size() > 12, "an error without a response");
    out.reply.insert(out.reply.end(), a.reply.begin(), a.reply.end());
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<long>(a.consumed));
    if (a.error) {
      out.failed = true;
      break;
    }
    if (a.request) {
      require(p.finished(), "request without a finished state");
      out.request = a.request;
      break;
    }
    require(buffer.empty(), "an incomplete head left unconsumed bytes");
    if (pos == input.size()) break;
  }
  buffer.insert(buffer.end(), input.begin() + static_cast<long>(pos), input.end());
  out.leftover = buffer;
  if (out.request || out.failed) {
    HttpConnectAction again = p.advance(buffer);
    require(again.consumed == 0 && !again.request, "a finished parser took more input");
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  Bytes input;
  if (control & 0x80) {
    std::string_view prefix = "CONNECT ";
    input.assign(prefix.begin(), prefix.end());
  }
  input.insert(input.end(), data + 1, data + size);
  fuzz::set_input("fuzz_http_connect", input);
  const std::size_t chunk = 1 + (control & 0x1F);
  Outcome whole = drive(input, input.size() + 1);
  Outcome parts = drive(input, chunk);
  require(whole.reply == parts.reply, "response depends on how the input was split");
  require(whole.failed == parts.failed, "error depends on how the input was split");
  require(whole.request.has_value() == parts.request.has_value(), "outcome depends on how the input was split");
  if (whole.request) {
    require(whole.request->target == parts.request->target, "target depends on how the input was split");
    require(whole.request->isolation_key == parts.request->isolation_key, "key depends on the split");
    require(whole.leftover == parts.leftover, "early data depends on how the input was split");
    require(!whole.request->target.host.empty() && whole.request->target.port != 0, "empty host or port 0");
  }
  require(input.size() - whole.leftover.size() <= kMaxConnectHeadSize || whole.failed, "head over the limit");
  return 0;
}
