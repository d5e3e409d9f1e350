#include "common/socks/socks_server.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstdio>

#include "common/socks/isolation.hpp"

namespace thor::socks {

namespace {

constexpr std::uint8_t kMethodNoAuth = 0x00;
constexpr std::uint8_t kMethodUserPass = 0x02;
constexpr std::uint8_t kMethodNoneAcceptable = 0xFF;
constexpr std::uint8_t kAuthVersion = 0x01;

constexpr std::uint8_t kCmdConnect = 0x01;
constexpr std::uint8_t kCmdBind = 0x02;
constexpr std::uint8_t kCmdUdpAssociate = 0x03;
constexpr std::uint8_t kCmdResolve = 0xF0;
constexpr std::uint8_t kCmdResolvePtr = 0xF1;

constexpr std::uint8_t kAtypIpv4 = 0x01;
constexpr std::uint8_t kAtypDomain = 0x03;
constexpr std::uint8_t kAtypIpv6 = 0x04;

constexpr std::size_t kMaxSocks4Field = 255;  // user id and hostname, without the NUL

std::string hex_byte(std::uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", b);
  return buf;
}

std::string ipv4_text(const std::array<std::uint8_t, 4>& a) {
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, a.data(), buf, sizeof buf);
  return buf;
}

std::string ipv6_text(const std::array<std::uint8_t, 16>& a) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, a.data(), buf, sizeof buf);
  return buf;
}

// A destination name must be printable ASCII with no spaces: anything else cannot be a DNS name and
// would only confuse the exit's resolver (or a log line).
std::optional<std::string> check_hostname(std::string_view name) {
  if (name.empty()) return "empty hostname";
  for (unsigned char c : name)
    if (c <= 0x20 || c >= 0x7F) return "hostname contains byte " + hex_byte(c) + " (not printable ASCII)";
  return std::nullopt;
}

// "[::1]" sent as a domain name is an IPv6 literal; the brackets are URL syntax, not part of it.
std::string strip_brackets(std::string name) {
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') {
    std::string inner = name.substr(1, name.size() - 2);
    if (is_ipv6_literal(inner)) return inner;
  }
  return name;
}

Bytes socks5_reply(Reply code) {
  Bytes out;
  Writer(out).u8(5).u8(static_cast<std::uint8_t>(code)).u8(0).u8(kAtypIpv4).u32(0).u16(0);
  return out;
}

Bytes socks4_reply(std::uint8_t code, std::uint16_t port = 0, std::uint32_t ipv4 = 0) {
  Bytes out;
  Writer(out).u8(0).u8(code).u16(port).u32(ipv4);
  return out;
}

Bytes http_not_socks_reply() {
  // What a browser pointed at the SOCKS port as if it were an HTTP proxy shows its user.
  static constexpr std::string_view body =
      "This is a SOCKS proxy, not an HTTP proxy. Configure your application to use SOCKS5 "
      "(\"socks5h://\"), or use the proxy's HTTP CONNECT port.\n";
  std::string text = "HTTP/1.0 501 Thor is not an HTTP Proxy\r\nContent-Type: text/plain\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + std::string(body);
  return Bytes(text.begin(), text.end());
}

}  // namespace

const char* to_string(Command c) {
  switch (c) {
    case Command::connect: return "CONNECT";
    case Command::resolve: return "RESOLVE";
    case Command::resolve_ptr: return "RESOLVE_PTR";
  }
  return "?";
}

const char* to_string(Reply r) {
  switch (r) {
    case Reply::succeeded: return "succeeded";
    case Reply::general_failure: return "general SOCKS server failure";
    case Reply::not_allowed: return "connection not allowed by ruleset";
    case Reply::network_unreachable: return "network unreachable";
    case Reply::host_unreachable: return "host unreachable";
    case Reply::connection_refused: return "connection refused";
    case Reply::ttl_expired: return "TTL expired";
    case Reply::command_not_supported: return "command not supported";
    case Reply::address_type_not_supported: return "address type not supported";
  }
  return "unknown reply";
}

Action ServerHandshake::advance(ByteView input) {
  Action out;
  std::size_t used = 0;
  while (state_ != State::done && state_ != State::failed) {
    Reader in(input.subspan(used));
    Step s = step(in, out);
    if (s == Step::need_more) break;  // a message is consumed whole or not at all
    used += in.consumed();
    if (s == Step::stop) break;
  }
  out.consumed = used;
  return out;
}

ServerHandshake::Step ServerHandshake::fail(Action& out, std::string why, Bytes reply) {
  state_ = State::failed;
  out.error = std::move(why);
  out.reply.insert(out.reply.end(), reply.begin(), reply.end());
  return Step::stop;
}

ServerHandshake::Step ServerHandshake::step(Reader& in, Action& out) {
  switch (state_) {
    case State::start: {
      if (in.empty()) return Step::need_more;
      std::uint8_t v = in.rest()[0];
      if (v == 5) {
        version_ = Version::v5;
        state_ = State::v5_methods;
        return Step::progress;
      }
      if (v == 4) {
        version_ = Version::v4;
        state_ = State::v4_request;
        return Step::progress;
      }
      if (v >= 'A' && v <= 'Z')
        return fail(out, "not a SOCKS request: the client spoke HTTP to the SOCKS port", http_not_socks_reply());
      return fail(out, "not a SOCKS request: first byte " + hex_byte(v) + ", expected 0x04 or 0x05", {});
    }
    case State::v5_methods: return socks5_methods(in, out);
    case State::v5_auth: return socks5_auth(in, out);
    case State::v5_request: return socks5_request(in, out);
    case State::v4_request: return socks4_request(in, out);
    case State::done:
    case State::failed: return Step::stop;
  }
  return Step::stop;
}

// VER=5 | NMETHODS | METHODS[NMETHODS]
ServerHandshake::Step ServerHandshake::socks5_methods(Reader& in, Action& out) {
  std::uint8_t ver, n;
  ByteView methods;
  if (!in.u8(ver) || !in.u8(n) || !in.take(n, methods)) return Step::need_more;
  bool no_auth = false, user_pass = false;
  for (auto m : methods) {
    no_auth |= m == kMethodNoAuth;
    user_pass |= m == kMethodUserPass;
  }
  // Username/password wins when offered: the credentials are what isolates this client's streams.
  if (user_pass) {
    Writer(out.reply).u8(5).u8(kMethodUserPass);
    state_ = State::v5_auth;
    return Step::progress;
  }
  if (no_auth) {
    Writer(out.reply).u8(5).u8(kMethodNoAuth);
    state_ = State::v5_request;
    return Step::progress;
  }
  std::string offered;
  for (auto m : methods) offered += (offered.empty() ? "" : " ") + hex_byte(m);
  return fail(out,
              n == 0 ? "SOCKS5 greeting offers no authentication methods"
                     : "SOCKS5 greeting offers no acceptable authentication method (offered " + offered +
                           "; accepted 0x00 none, 0x02 username/password)",
              Bytes{5, kMethodNoneAcceptable});
}

// RFC 1929: VER=1 | ULEN | UNAME | PLEN | PASSWD. Any credentials are accepted. Empty fields are
// accepted too although the RFC says 1-255: curl sends PLEN=0 for "socks5h://user@host".
ServerHandshake::Step ServerHandshake::socks5_auth(Reader& in, Action& out) {
  std::uint8_t ver;
  if (!in.u8(ver)) return Step::need_more;
  if (ver != kAuthVersion)
    return fail(out, "SOCKS5 username/password negotiation has version " + hex_byte(ver) + ", expected 0x01",
                Bytes{kAuthVersion, 0x01});
  std::uint8_t ulen, plen;
  ByteView user, pass;
  if (!in.u8(ulen) || !in.take(ulen, user) || !in.u8(plen) || !in.take(plen, pass)) return Step::need_more;
  username_.assign(as_chars(user));
  password_.assign(as_chars(pass));
  Writer(out.reply).u8(kAuthVersion).u8(0x00);
  state_ = State::v5_request;
  return Step::progress;
}

// VER=5 | CMD | RSV | ATYP | DST.ADDR | DST.PORT
ServerHandshake::Step ServerHandshake::socks5_request(Reader& in, Action& out) {
  std::uint8_t ver, cmd, rsv, atyp;
  if (!in.u8(ver)) return Step::need_more;
  if (ver != 5)
    return fail(out, "SOCKS5 request has version " + hex_byte(ver) + ", expected 0x05",
                socks5_reply(Reply::general_failure));
  if (!in.u8(cmd)) return Step::need_more;
  Request req;
  req.version = Version::v5;
  switch (cmd) {
    case kCmdConnect: req.command = Command::connect; break;
    case kCmdResolve: req.command = Command::resolve; break;
    case kCmdResolvePtr: req.command = Command::resolve_ptr; break;
    case kCmdBind:
      return fail(out, "SOCKS5 BIND is not supported", socks5_reply(Reply::command_not_supported));
    case kCmdUdpAssociate:
      return fail(out, "SOCKS5 UDP ASSOCIATE is not supported", socks5_reply(Reply::command_not_supported));
    default:
      return fail(out, "SOCKS5 command " + hex_byte(cmd) + " is not supported",
                  socks5_reply(Reply::command_not_supported));
  }
  // RSV is ignored, as in Tor: some clients send garbage there.
  if (!in.u8(rsv) || !in.u8(atyp)) return Step::need_more;
  switch (atyp) {
    case kAtypIpv4: {
      std::array<std::uint8_t, 4> a;
      if (!in.array(a)) return Step::need_more;
      req.address_type = AddressType::ipv4;
      req.target.host = ipv4_text(a);
      break;
    }
    case kAtypIpv6: {
      std::array<std::uint8_t, 16> a;
      if (!in.array(a)) return Step::need_more;
      req.address_type = AddressType::ipv6;
      req.target.host = ipv6_text(a);
      break;
    }
    case kAtypDomain: {
      std::uint8_t len;
      ByteView name;
      if (!in.u8(len) || !in.take(len, name)) return Step::need_more;
      if (auto bad = check_hostname(as_chars(name)))
        return fail(out, "SOCKS5 request: " + *bad, socks5_reply(Reply::general_failure));
      req.address_type = AddressType::hostname;
      req.target.host = strip_brackets(std::string(as_chars(name)));
      break;
    }
    default:
      return fail(out, "SOCKS5 address type " + hex_byte(atyp) + " is not supported (1 IPv4, 3 name, 4 IPv6)",
                  socks5_reply(Reply::address_type_not_supported));
  }
  if (!in.u16(req.target.port)) return Step::need_more;
  if (req.command == Command::connect && req.target.port == 0)
    return fail(out, "SOCKS5 CONNECT to port 0", socks5_reply(Reply::general_failure));
  if (req.command == Command::resolve_ptr && !is_ipv4_literal(req.target.host) && !is_ipv6_literal(req.target.host))
    return fail(out, "SOCKS5 RESOLVE_PTR needs an IP address, not a hostname",
                socks5_reply(Reply::address_type_not_supported));
  req.username = std::move(username_);
  req.password = std::move(password_);
  req.isolation_key = isolation_key(req.username, req.password);
  out.request = std::move(req);
  state_ = State::done;
  return Step::stop;
}

// VN=4 | CD | DSTPORT | DSTIP | USERID NUL [| HOSTNAME NUL when DSTIP is 0.0.0.x, x != 0 (SOCKS4a)]
ServerHandshake::Step ServerHandshake::socks4_request(Reader& in, Action& out) {
  std::uint8_t vn, cd;
  std::uint16_t port;
  std::array<std::uint8_t, 4> ip;
  if (!in.u8(vn) || !in.u8(cd)) return Step::need_more;
  Request req;
  req.version = Version::v4;
  switch (cd) {
    case kCmdConnect: req.command = Command::connect; break;
    case kCmdResolve: req.command = Command::resolve; break;
    case kCmdBind: return fail(out, "SOCKS4 BIND is not supported", socks4_reply(kSocks4Rejected));
    default:
      return fail(out, "SOCKS4 command " + hex_byte(cd) + " is not supported", socks4_reply(kSocks4Rejected));
  }
  if (!in.u16(port) || !in.array(ip)) return Step::need_more;
  // Reads a NUL-terminated field of at most 255 bytes. False with an empty error means "need more".
  auto field = [&](const char* what, std::string& value, std::string& error) -> bool {
    ByteView rest = in.rest();
    for (std::size_t i = 0; i < rest.size(); ++i) {
      if (rest[i] == 0) {
        ByteView f;
        in.take(i, f);
        in.skip(1);
        value.assign(as_chars(f));
        return true;
      }
      if (i == kMaxSocks4Field) {
        error = std::string("SOCKS4 ") + what + " longer than 255 bytes";
        return false;
      }
    }
    return false;
  };
  std::string user, host, error;
  if (!field("user id", user, error)) {
    if (!error.empty()) return fail(out, error, socks4_reply(kSocks4Rejected));
    return Step::need_more;
  }
  const bool socks4a = ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0;
  if (socks4a) {
    if (!field("hostname", host, error)) {
      if (!error.empty()) return fail(out, error, socks4_reply(kSocks4Rejected));
      return Step::need_more;
    }
    if (auto bad = check_hostname(host)) return fail(out, "SOCKS4a request: " + *bad, socks4_reply(kSocks4Rejected));
    req.address_type = AddressType::hostname;
    req.target.host = strip_brackets(std::move(host));
  } else {
    req.address_type = AddressType::ipv4;
    req.target.host = ipv4_text(ip);
  }
  req.target.port = port;
  if (req.command == Command::connect && port == 0)
    return fail(out, "SOCKS4 CONNECT to port 0", socks4_reply(kSocks4Rejected));
  req.username = std::move(user);
  req.isolation_key = isolation_key(req.username, req.password);
  out.request = std::move(req);
  state_ = State::done;
  return Step::stop;
}

// ---- replies -----------------------------------------------------------------------------------

Bytes reply_succeeded(Version v, const std::optional<HostPort>& bound) {
  std::array<std::uint8_t, 4> a4{};
  std::array<std::uint8_t, 16> a6{};
  bool is4 = false, is6 = false;
  std::uint16_t port = 0;
  if (bound) {
    is4 = inet_pton(AF_INET, bound->host.c_str(), a4.data()) == 1;
    if (!is4) is6 = inet_pton(AF_INET6, bound->host.c_str(), a6.data()) == 1;
    if (is4 || is6) port = bound->port;
  }
  Bytes out;
  Writer w(out);
  if (v == Version::v4) {
    w.u8(0).u8(kSocks4Granted).u16(is4 ? port : 0).bytes(is4 ? ByteView(a4) : ByteView(std::array<std::uint8_t, 4>{}));
    return out;
  }
  w.u8(5).u8(0).u8(0);
  if (is6) w.u8(kAtypIpv6).bytes(ByteView(a6));
  else w.u8(kAtypIpv4).bytes(ByteView(a4));  // zeros when there is no address
  w.u16(port);
  return out;
}

Bytes reply_failed(Version v, Reply code) {
  if (v == Version::v4) return socks4_reply(kSocks4Rejected);
  return socks5_reply(code == Reply::succeeded ? Reply::general_failure : code);
}

Bytes reply_resolved_address(Version v, std::string_view ip) {
  std::string text(ip);
  std::array<std::uint8_t, 4> a4{};
  std::array<std::uint8_t, 16> a6{};
  Bytes out;
  Writer w(out);
  if (inet_pton(AF_INET, text.c_str(), a4.data()) == 1) {
    if (v == Version::v4) w.u8(0).u8(kSocks4Granted).u16(0).bytes(ByteView(a4));
    else w.u8(5).u8(0).u8(0).u8(kAtypIpv4).bytes(ByteView(a4)).u16(0);
    return out;
  }
  if (inet_pton(AF_INET6, text.c_str(), a6.data()) == 1) {
    if (v == Version::v4) return socks4_reply(kSocks4Rejected);
    w.u8(5).u8(0).u8(0).u8(kAtypIpv6).bytes(ByteView(a6)).u16(0);
    return out;
  }
  return reply_failed(v, Reply::general_failure);
}

Bytes reply_resolved_hostname(std::string_view hostname) {
  if (hostname.empty() || hostname.size() > 255) return socks5_reply(Reply::general_failure);
  Bytes out;
  Writer(out).u8(5).u8(0).u8(0).u8(kAtypDomain).u8(static_cast<std::uint8_t>(hostname.size())).bytes(hostname).u16(0);
  return out;
}

Bytes reply_for_resolved(const Request& request, const ResolvedBody& resolved) {
  using Type = ResolvedAnswer::Type;
  std::optional<Reply> error;
  for (const auto& a : resolved.answers) {
    switch (a.type) {
      case Type::ipv4:
        if (request.command == Command::resolve) return reply_resolved_address(request.version, a.value);
        break;
      case Type::ipv6:
        if (request.command == Command::resolve && request.version == Version::v5)
          return reply_resolved_address(request.version, a.value);
        break;
      case Type::hostname:
        if (request.command == Command::resolve_ptr && request.version == Version::v5)
          return reply_resolved_hostname(a.value);
        break;
      case Type::error_transient:
        if (!error) error = Reply::ttl_expired;
        break;
      case Type::error_permanent:
        if (!error) error = Reply::host_unreachable;
        break;
    }
  }
  return reply_failed(request.version, error.value_or(Reply::host_unreachable));
}

Reply reply_for_end(EndReason reason) {
  switch (reason) {
    case EndReason::exit_policy: return Reply::not_allowed;
    case EndReason::no_route: return Reply::network_unreachable;
    case EndReason::resolve_failed: return Reply::host_unreachable;
    case EndReason::connect_refused: return Reply::connection_refused;
    case EndReason::timeout: return Reply::ttl_expired;
    default: return Reply::general_failure;
  }
}

}  // namespace thor::socks
