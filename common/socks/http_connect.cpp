#include "common/socks/http_connect.hpp"

#include <http_parser.h>

#include <algorithm>
#include <cctype>

#include "common/crypto/encoding.hpp"
#include "common/socks/isolation.hpp"

namespace thor::socks {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "Basic base64(user:password)" gives user and password; any other scheme, or Basic that does not
// decode, is used whole as the username, so different credentials still isolate differently.
std::string key_from_proxy_authorization(std::string_view value) {
  value = trim(value);
  auto space = value.find(' ');
  if (space != std::string_view::npos && iequals(value.substr(0, space), "basic")) {
    if (auto decoded = crypto::from_base64(trim(value.substr(space + 1)))) {
      std::string_view text = as_chars(*decoded);
      auto colon = text.find(':');
      if (colon == std::string_view::npos) return isolation_key(text, "");
      return isolation_key(text.substr(0, colon), text.substr(colon + 1));
    }
  }
  return isolation_key(value, "");
}

}  // namespace

struct HttpConnectParser::State {
  http_parser parser{};
  http_parser_settings settings{};
  std::size_t fed = 0;  // head bytes given to the parser so far
  std::string url;
  std::string field, value;
  bool in_value = false;
  bool wrong_method = false;
  bool headers_done = false;
  int proxy_auth_count = 0;
  std::string proxy_auth;
  std::string start;  // the first bytes of the request, to tell an unknown method from garbage

  // An unknown method ("BREW /pot") deserves 405; binary garbage, 400. Only the first byte after
  // any leading blank lines decides: the parser may stop at the second byte of a method, so
  // looking further would make the answer depend on how the input was split into reads.
  bool starts_with_method_token() const {
    std::string_view s = start;
    while (!s.empty() && (s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
    return !s.empty() && s.front() >= 'A' && s.front() <= 'Z';
  }

  void commit_header() {
    if (iequals(field, "proxy-authorization")) {
      ++proxy_auth_count;
      proxy_auth = value;
    }
    field.clear();
    value.clear();
    in_value = false;
  }

  static State& of(http_parser* p) { return *static_cast<State*>(p->data); }

  State() {
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = this;
    http_parser_settings_init(&settings);
    settings.on_url = [](http_parser* p, const char* at, std::size_t len) {
      // The method is known by the time the URL starts: refuse anything but CONNECT right away.
      if (p->method != HTTP_CONNECT) {
        of(p).wrong_method = true;
        return 1;
      }
      of(p).url.append(at, len);
      return 0;
    };
    settings.on_header_field = [](http_parser* p, const char* at, std::size_t len) {
      State& s = of(p);
      if (s.in_value) s.commit_header();
      s.field.append(at, len);
      return 0;
    };
    settings.on_header_value = [](http_parser* p, const char* at, std::size_t len) {
      State& s = of(p);
      s.in_value = true;
      s.value.append(at, len);
      return 0;
    };
    settings.on_headers_complete = [](http_parser* p) {
      State& s = of(p);
      if (s.in_value || !s.field.empty()) s.commit_header();
      s.headers_done = true;
      return 0;
    };
  }
};

HttpConnectParser::HttpConnectParser() : state_(std::make_unique<State>()) {}
HttpConnectParser::~HttpConnectParser() = default;

HttpConnectAction HttpConnectParser::fail(int status, std::string_view reason, std::string why) {
  failed_ = true;
  HttpConnectAction out;
  out.reply = http_connect_error(status, reason, why);
  out.error = std::move(why);
  return out;
}

HttpConnectAction HttpConnectParser::advance(ByteView input) {
  // An empty call must not reach the parser: to libhttp-parser, zero bytes means end of input.
  if (done_ || failed_ || input.empty()) return {};
  State& s = *state_;
  const std::size_t room = kMaxConnectHeadSize - s.fed;
  const std::size_t n = std::min(input.size(), room);
  if (s.start.size() < 32) s.start.append(as_chars(input.first(std::min(n, 32 - s.start.size()))));
  const std::size_t parsed =
      http_parser_execute(&s.parser, &s.settings, reinterpret_cast<const char*>(input.data()), n);
  s.fed += parsed;
  const auto err = HTTP_PARSER_ERRNO(&s.parser);
  if (s.wrong_method || (err == HPE_INVALID_METHOD && s.starts_with_method_token()))
    return fail(405, "Method Not Allowed",
                "this is a tunnelling proxy: only CONNECT host:port is accepted (plain-HTTP requests are not "
                "forwarded; use https:// or the SOCKS port)");
  if (err != HPE_OK) return fail(400, "Bad Request", std::string("malformed request: ") + http_errno_description(err));
  if (s.headers_done) return finish(parsed);
  if (s.fed >= kMaxConnectHeadSize)
    return fail(431, "Request Header Fields Too Large",
                "request head longer than " + std::to_string(kMaxConnectHeadSize) + " bytes");
  HttpConnectAction out;
  out.consumed = parsed;  // the parser keeps what it has read
  return out;
}

HttpConnectAction HttpConnectParser::finish(std::size_t consumed) {
  State& s = *state_;
  http_parser_url u;
  http_parser_url_init(&u);
  const unsigned need = (1u << UF_HOST) | (1u << UF_PORT);
  if (http_parser_parse_url(s.url.data(), s.url.size(), 1, &u) != 0 || (u.field_set & need) != need)
    return fail(400, "Bad Request", "CONNECT needs a target of the form host:port or [IPv6]:port");
  if (u.port == 0) return fail(400, "Bad Request", "CONNECT to port 0");
  std::string host = s.url.substr(u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
  if (host.empty() || host.size() > 255) return fail(400, "Bad Request", "CONNECT host must be 1-255 bytes");
  if (s.proxy_auth_count > 1) return fail(400, "Bad Request", "more than one Proxy-Authorization header");
  ConnectRequest req;
  req.target = HostPort{std::move(host), u.port};
  if (s.proxy_auth_count == 1) req.isolation_key = key_from_proxy_authorization(s.proxy_auth);
  done_ = true;
  HttpConnectAction out;
  out.consumed = consumed;
  out.request = std::move(req);
  return out;
}

// ---- responses ---------------------------------------------------------------------------------

Bytes http_connect_established() {
  std::string_view text = "HTTP/1.1 200 Connection established\r\n\r\n";
  return Bytes(text.begin(), text.end());
}

Bytes http_connect_error(int status, std::string_view reason, std::string_view message) {
  std::string body(message);
  body += '\n';
  std::string text = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  if (status == 405) text += "Allow: CONNECT\r\n";
  text += "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
          "\r\nConnection: close\r\n\r\n" + body;
  return Bytes(text.begin(), text.end());
}

HttpStatus http_status_for(EndReason reason) {
  switch (reason) {
    case EndReason::exit_policy:
      return {403, "Forbidden", "the exit relay's policy does not allow this destination"};
    case EndReason::timeout: return {504, "Gateway Timeout", "the connection timed out"};
    case EndReason::resolve_failed: return {502, "Bad Gateway", "the exit relay could not resolve the host"};
    case EndReason::connect_refused: return {502, "Bad Gateway", "the destination refused the connection"};
    case EndReason::no_route: return {502, "Bad Gateway", "the exit relay has no route to the destination"};
    case EndReason::hibernating:
    case EndReason::resource_limit:
      return {503, "Service Unavailable", "the exit relay is out of resources; try again"};
    default: return {502, "Bad Gateway", "the connection through the network failed"};
  }
}

Bytes http_connect_failed(EndReason reason) {
  HttpStatus s = http_status_for(reason);
  return http_connect_error(s.code, s.reason, s.message);
}

}  // namespace thor::socks
