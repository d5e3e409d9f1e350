// The server side of the SOCKS handshake as a pure state machine (in the style of Arti's
// tor-socksproto): bytes from the client in; bytes to send, bytes consumed and either a finished
// request or an error out. No sockets, no clocks; the daemon moves the bytes and keeps the timeout.
//
// Accepted (see docs/socks.md for the full table):
//   SOCKS5 (RFC 1928), methods "no authentication" and username/password (RFC 1929, any
//   credentials; preferred when offered, since the credentials are the isolation key); commands
//   CONNECT, Tor's RESOLVE (0xF0) and RESOLVE_PTR (0xF1); IPv4, IPv6 and domain-name addresses.
//   SOCKS4 and SOCKS4a: CONNECT and Tor's RESOLVE (0xF0).
//
// Use: keep the bytes read from the client in a buffer and call advance() after every read.
//   auto a = hs.advance(buffer);
//   send a.reply; drop a.consumed bytes from the front of buffer;
//   if a.error: close once the reply is written.  if a.request: the handshake is done; whatever is
//   left in the buffer is the client's early data (to forward once the stream is open).
//   otherwise: read more and call again.
// Input that is only the start of a message is not consumed, so the caller's buffer stays bounded
// by the largest handshake message (kMaxMessageSize) plus one read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.hpp"
#include "common/cell/relay_msg.hpp"
#include "common/net_address.hpp"

namespace thor::socks {

enum class Version : std::uint8_t { v4 = 4, v5 = 5 };

enum class Command : std::uint8_t { connect, resolve, resolve_ptr };
const char* to_string(Command c);

// What the client put on the wire as the destination. A domain name may still be numeric text
// ("127.0.0.1"): the host string is passed on as the client wrote it.
enum class AddressType : std::uint8_t { ipv4, ipv6, hostname };

// SOCKS5 reply codes (RFC 1928 section 6).
enum class Reply : std::uint8_t {
  succeeded = 0x00,
  general_failure = 0x01,
  not_allowed = 0x02,  // "connection not allowed by ruleset": the exit policy refused it
  network_unreachable = 0x03,
  host_unreachable = 0x04,
  connection_refused = 0x05,
  ttl_expired = 0x06,  // Tor uses it for timeouts
  command_not_supported = 0x07,
  address_type_not_supported = 0x08,
};
const char* to_string(Reply r);

// SOCKS4 reply codes (the only two a SOCKS4 client understands).
constexpr std::uint8_t kSocks4Granted = 0x5A;
constexpr std::uint8_t kSocks4Rejected = 0x5B;

// The largest single handshake message: a SOCKS4a request with a 255-byte user id and a 255-byte
// hostname (8 + 256 + 256). SOCKS5 messages are smaller (auth: 513, request: 262).
constexpr std::size_t kMaxMessageSize = 520;

struct Request {
  Version version = Version::v5;
  Command command = Command::connect;
  AddressType address_type = AddressType::hostname;
  // host: a name, or an IPv4/IPv6 literal in text form ("::1", no brackets). port: 0 for RESOLVE
  // and RESOLVE_PTR when the client sent 0 (torsocks does).
  HostPort target;
  // RFC 1929 credentials or the SOCKS4 user id, as sent; isolation_key() of them (empty when none).
  std::string username;
  std::string password;
  std::string isolation_key;
};

struct Action {
  Bytes reply;                       // send to the client now (may be empty)
  std::size_t consumed = 0;          // bytes of the input this call used
  std::optional<Request> request;    // set once the handshake is complete
  std::optional<std::string> error;  // set when it failed: send `reply`, then close
};

class ServerHandshake {
 public:
  // Feed everything received and not yet consumed. Processes as many complete messages as the
  // input holds (a client may pipeline greeting, authentication and request).
  Action advance(ByteView input);

  bool finished() const { return state_ == State::done; }
  bool failed() const { return state_ == State::failed; }
  // The version the client chose (known after the first byte).
  std::optional<Version> version() const { return version_; }

 private:
  enum class State { start, v5_methods, v5_auth, v5_request, v4_request, done, failed };
  enum class Step { progress, need_more, stop };

  Step step(Reader& in, Action& out);
  Step socks5_methods(Reader& in, Action& out);
  Step socks5_auth(Reader& in, Action& out);
  Step socks5_request(Reader& in, Action& out);
  Step socks4_request(Reader& in, Action& out);
  Step fail(Action& out, std::string why, Bytes reply);

  State state_ = State::start;
  std::optional<Version> version_;
  std::string username_, password_;
};

// ---- replies -----------------------------------------------------------------------------------

// CONNECT succeeded. `bound` is the address the exit connected to (CONNECTED's address, IPv4 or
// IPv6 text); without one, or with one that is not an IP literal, 0.0.0.0:0 is sent. SOCKS4 replies
// carry IPv4 only.
Bytes reply_succeeded(Version v, const std::optional<HostPort>& bound = std::nullopt);
// Any request failed. SOCKS4 has one failure code (0x5B) whatever the reason.
Bytes reply_failed(Version v, Reply code);
// RESOLVE answered with an address (IPv4 or IPv6 text; SOCKS4 can carry only IPv4: an IPv6 answer
// becomes a failure there). An address that is not an IP literal is a general failure.
Bytes reply_resolved_address(Version v, std::string_view ip);
// RESOLVE_PTR answered with a hostname (SOCKS5 only; 1-255 bytes, else a general failure).
Bytes reply_resolved_hostname(std::string_view hostname);
// The reply for a RESOLVE or RESOLVE_PTR request from the exit's RESOLVED answers: the first answer
// of a type the request and version can carry; an error answer gives host unreachable (permanent)
// or TTL expired (transient, worth retrying), as Tor does; no usable answer gives host unreachable.
Bytes reply_for_resolved(const Request& request, const ResolvedBody& resolved);

// The SOCKS5 reply for a stream the exit ended (or that failed at the exit) with this reason.
Reply reply_for_end(EndReason reason);

}  // namespace thor::socks
