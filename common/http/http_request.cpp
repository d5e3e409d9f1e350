#include "common/http/http_request.hpp"

#include <http_parser.h>

#include <algorithm>

namespace thor::http {

struct RequestParser::Impl {
  http_parser parser{};
  http_parser_settings settings{};
  RequestParser* owner = nullptr;

  static RequestParser& self(http_parser* p) { return *static_cast<Impl*>(p->data)->owner; }

  static int on_message_begin(http_parser* p) {
    self(p).started_ = true;
    return 0;
  }
  static int on_url(http_parser* p, const char* at, std::size_t len) {
    auto& s = self(p);
    s.started_ = true;
    if (!s.add_header_bytes(len)) return 1;
    s.request_.target.append(at, len);
    return 0;
  }
  static int on_header_field(http_parser* p, const char* at, std::size_t len) {
    auto& s = self(p);
    if (s.in_value_ && !s.commit_header()) return 1;
    s.in_value_ = false;
    if (!s.add_header_bytes(len)) return 1;
    s.field_.append(at, len);
    return 0;
  }
  static int on_header_value(http_parser* p, const char* at, std::size_t len) {
    auto& s = self(p);
    s.in_value_ = true;
    if (!s.add_header_bytes(len)) return 1;
    s.value_.append(at, len);
    return 0;
  }
  // Here 1 and 2 mean "no body"; any other non-zero value stops the parser with an error.
  static int on_headers_complete(http_parser* p) {
    auto& s = self(p);
    if (s.in_value_ && !s.commit_header()) return -1;
    s.in_value_ = false;
    Request& r = s.request_;
    r.method = http_method_str(static_cast<http_method>(p->method));
    r.version_major = p->http_major;
    r.version_minor = p->http_minor;
    r.keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
    if (r.version_major != 1) {
      s.fail(505, "HTTP version " + std::to_string(r.version_major) + "." + std::to_string(r.version_minor) +
                      " is not supported (use HTTP/1.1)");
      return -1;
    }
    if (!s.split_target()) return -1;
    if (r.version_minor >= 1 && !r.header("host")) {
      s.fail(400, "HTTP/1.1 request without a Host header");
      return -1;
    }
    // Content-Length is known here; a chunked body is checked as it arrives.
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > s.limits_.max_body_bytes) {
      s.fail(413, "request body of " + std::to_string(p->content_length) + " bytes is larger than the limit of " +
                      std::to_string(s.limits_.max_body_bytes));
      return -1;
    }
    return 0;
  }
  static int on_body(http_parser* p, const char* at, std::size_t len) {
    auto& s = self(p);
    if (s.request_.body.size() + len > s.limits_.max_body_bytes) {
      s.fail(413, "request body larger than the limit of " + std::to_string(s.limits_.max_body_bytes) + " bytes");
      return 1;
    }
    s.request_.body.append(at, len);
    return 0;
  }
  static int on_message_complete(http_parser* p) {
    auto& s = self(p);
    if (s.state_ == State::error) return 1;
    s.state_ = State::complete;
    // Stop here: pipelined bytes after this request belong to the next one.
    http_parser_pause(p, 1);
    return 0;
  }
};

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return std::string_view(v);
  return std::nullopt;
}

RequestParser::RequestParser(Limits limits) : limits_(limits), impl_(std::make_unique<Impl>()) {
  impl_->owner = this;
  http_parser_settings_init(&impl_->settings);
  impl_->settings.on_message_begin = &Impl::on_message_begin;
  impl_->settings.on_url = &Impl::on_url;
  impl_->settings.on_header_field = &Impl::on_header_field;
  impl_->settings.on_header_value = &Impl::on_header_value;
  impl_->settings.on_headers_complete = &Impl::on_headers_complete;
  impl_->settings.on_body = &Impl::on_body;
  impl_->settings.on_message_complete = &Impl::on_message_complete;
  reset();
}

RequestParser::~RequestParser() = default;

void RequestParser::reset() {
  http_parser_init(&impl_->parser, HTTP_REQUEST);
  impl_->parser.data = impl_.get();
  state_ = State::incomplete;
  request_ = Request{};
  error_status_ = 0;
  error_.clear();
  started_ = false;
  header_bytes_ = 0;
  field_.clear();
  value_.clear();
  in_value_ = false;
}

void RequestParser::fail(int status, std::string why) {
  if (state_ == State::error) return;
  state_ = State::error;
  error_status_ = status;
  error_ = std::move(why);
}

bool RequestParser::add_header_bytes(std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ > limits_.max_header_bytes) {
    fail(431, "request line and headers larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
    return false;
  }
  return true;
}

bool RequestParser::commit_header() {
  if (request_.headers.size() >= limits_.max_headers) {
    fail(431, "more than " + std::to_string(limits_.max_headers) + " header fields");
    return false;
  }
  // ": " and CRLF count toward the bound too, so many empty headers cannot slip under it.
  if (!add_header_bytes(4)) return false;
  std::string name = std::move(field_);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
  request_.headers.emplace_back(std::move(name), std::move(value_));
  field_.clear();
  value_.clear();
  return true;
}

bool RequestParser::split_target() {
  const std::string& t = request_.target;
  if (t == "*") {
    request_.path = "*";
    return true;
  }
  std::string_view path_and_query;
  if (!t.empty() && t.front() == '/') {
    path_and_query = t;
  } else {
    // Absolute form (RFC 9112 3.2.2): keep only path and query.
    http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(t.data(), t.size(), 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA))) {
      fail(400, "request target is neither a path nor an absolute URL");
      return false;
    }
    if (u.field_set & (1 << UF_PATH)) path_and_query = std::string_view(t).substr(u.field_data[UF_PATH].off);
    else path_and_query = "/";
  }
  auto hash = path_and_query.find('#');
  if (hash != std::string_view::npos) path_and_query = path_and_query.substr(0, hash);
  auto q = path_and_query.find('?');
  request_.path = std::string(path_and_query.substr(0, q));
  if (q != std::string_view::npos) request_.query = std::string(path_and_query.substr(q + 1));
  if (request_.path.empty()) request_.path = "/";
  return true;
}

std::size_t RequestParser::feed(ByteView data) {
  if (state_ != State::incomplete || data.empty()) return 0;
  auto& p = impl_->parser;
  std::size_t used = http_parser_execute(&p, &impl_->settings, reinterpret_cast<const char*>(data.data()), data.size());
  auto err = HTTP_PARSER_ERRNO(&p);
  if (state_ == State::complete) return used;  // paused after the request, or stopped by an upgrade
  if (state_ == State::error) return used;     // a callback refused
  if (err == HPE_HEADER_OVERFLOW) {
    fail(431, "request line and headers too large");
  } else if (err != HPE_OK) {
    fail(400, std::string("malformed request: ") + http_errno_description(err));
  } else if (p.upgrade) {
    fail(400, "protocol upgrade is not supported");
  }
  return used;
}

}  // namespace thor::http
