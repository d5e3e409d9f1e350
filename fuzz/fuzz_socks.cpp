// The SOCKS server handshake. Runs the input through socks::ServerHandshake twice, whole and in
// small reads (the way the daemon feeds it), and aborts when the two disagree, when a call claims
// more bytes than it was given, or when a finished machine takes more input. Whatever request comes
// out is then answered with every reply builder.
//
// The first byte picks the read size and optionally a valid greeting to put in front, so most inputs
// reach the request parser instead of dying on the version byte.
#include <cstdint>
#include <optional>
#include <string>

#include "common/socks/socks_server.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::socks;
using thor::fuzz::require;

namespace {


struct Outcome {
  Bytes replies;
  std::optional<Request> request;
  std::optional<std::string> error;
  Bytes leftover;
};

Outcome drive(ByteView input, std::size_t chunk) {
  ServerHandshake hs;
  Outcome out;
  Bytes buffer;
  std::size_t pos = 0;
  for (;;) {
    std::size_t n = std::min(chunk, input.size() - pos);
    buffer.insert(buffer.end(), input.begin() + static_cast<long>(pos), input.begin() + static_cast<long>(pos + n));
    pos += n;
    Action a = hs.advance(buffer);
    require(a.consumed <= buffer.size(), "consumed more than it was given");
    require(!(a.request && a.error), "both a request and an error");
    require(buffer.size() - a.consumed <= kMaxMessageSize + chunk, "unconsumed input grows without bound");
    out.replies.insert(out.replies.end(), a.reply.begin(), a.reply.end());
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<long>(a.consumed));
    if (a.error) {
      require(hs.failed() && !a.error->empty(), "error without a failed state or a message");
      out.error = a.error;
      break;
    }
    if (a.request) {
      require(hs.finished(), "request without a finished state");
      out.request = a.request;
      break;
    }
    if (pos == input.size()) break;
  }
  buffer.insert(buffer.end(), input.begin() + static_cast<long>(pos), input.end());
  out.leftover = buffer;
  if (out.request || out.error) {
    Action again = hs.advance(buffer);
    require(again.consumed == 0 && again.reply.empty() && !again.request, "a finished handshake took more input");
  }
  return out;
}

void answer(const Request& r) {
  require(!r.target.host.empty() && r.target.host.size() <= 255, "request host empty or longer than 255");
  require(r.command != Command::connect || r.target.port != 0, "CONNECT to port 0 accepted");
  require(r.username.size() <= 255 && r.password.size() <= 255, "credentials longer than 255");
  require(r.isolation_key.empty() == (r.username.empty() && r.password.empty()), "isolation key mismatch");
  (void)reply_succeeded(r.version, r.target);
  (void)reply_failed(r.version, Reply::host_unreachable);
  (void)reply_resolved_address(r.version, r.target.host);
  if (r.version == Version::v5) {
    Bytes b = reply_resolved_hostname(r.target.host);
    require(b.size() >= 8, "short RESOLVE_PTR reply");  // 7 + a 1-byte name, or a 10-byte failure
  }
  ResolvedBody body;
  body.answers.push_back({ResolvedAnswer::Type::hostname, r.target.host, 0});
  body.answers.push_back({ResolvedAnswer::Type::ipv4, r.target.host, 0});
  body.answers.push_back({ResolvedAnswer::Type::error_transient, "", 0});
  Bytes reply = reply_for_resolved(r, body);
  require(reply.size() >= 8, "short RESOLVED reply");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  Bytes input;
  switch (control >> 6) {
    case 1: input = {0x05, 0x01, 0x00}; break;                   // no-auth greeting
    case 2: input = {0x05, 0x01, 0x02, 0x01, 1, 'u', 1, 'p'}; break;  // greeting and credentials
    default: break;
  }
  input.insert(input.end(), data + 1, data + size);
  fuzz::set_input("fuzz_socks", input);
  const std::size_t chunk = 1 + (control & 0x0F);
  Outcome whole = drive(input, input.size() + 1);
  Outcome parts = drive(input, chunk);
  require(whole.replies == parts.replies, "replies depend on how the input was split");
  require(whole.request.has_value() == parts.request.has_value(), "outcome depends on how the input was split");
  require(whole.error.has_value() == parts.error.has_value(), "error depends on how the input was split");
  if (whole.request) {
    require(whole.request->target == parts.request->target, "target depends on how the input was split");
    require(whole.request->isolation_key == parts.request->isolation_key, "key depends on the split");
    require(whole.leftover == parts.leftover, "early data depends on how the input was split");
    answer(*whole.request);
  }
  return 0;
}
