// The HTTP CONNECT head parser and its responses.
#include <doctest/doctest.h>

#include <string>

#include "common/crypto/encoding.hpp"
#include "common/socks/http_connect.hpp"
#include "common/socks/isolation.hpp"

using namespace thor;
using namespace thor::socks;

namespace {

struct Run {
  std::optional<ConnectRequest> request;
  std::optional<std::string> error;
  std::string reply;
  std::string leftover;
};

Run drive(std::string_view input, std::size_t chunk) {
  HttpConnectParser p;
  Run run;
  std::string buffer;
  std::size_t pos = 0;
  while (true) {
    std::size_t n = std::min(chunk, input.size() - pos);
    buffer.append(input.substr(pos, n));
    pos += n;
    HttpConnectAction a = p.advance(as_bytes(buffer));
    REQUIRE(a.consumed <= buffer.size());
    run.reply.append(as_chars(a.reply));
    buffer.erase(0, a.consumed);
    if (a.error) {
      CHECK(p.failed());
      run.error = a.error;
      break;
    }
    if (a.request) {
      CHECK(p.finished());
      CHECK(a.reply.empty());
      run.request = a.request;
      break;
    }
    if (pos == input.size()) break;
  }
  buffer.append(input.substr(pos));
  run.leftover = buffer;
  if (run.error || run.request) {
    HttpConnectAction again = p.advance(as_bytes(buffer));
    CHECK(again.consumed == 0);
    CHECK_FALSE(again.request);
  }
  return run;
}

Run run(std::string_view input) {
  Run whole = drive(input, input.size() + 1);
  Run bytewise = drive(input, 1);
  CHECK(whole.reply == bytewise.reply);
  CHECK(whole.error.has_value() == bytewise.error.has_value());
  REQUIRE(whole.request.has_value() == bytewise.request.has_value());
  if (whole.request) {
    CHECK(whole.request->target == bytewise.request->target);
    CHECK(whole.request->isolation_key == bytewise.request->isolation_key);
    CHECK(whole.leftover == bytewise.leftover);
  }
  return whole;
}

std::string status_line(const std::string& reply) { return reply.substr(0, reply.find("\r\n")); }

}  // namespace

TEST_CASE("CONNECT host:port with headers") {
  Run r = run("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/7.88.1\r\n\r\n");
  REQUIRE(r.request);
  CHECK(r.request->target == HostPort{"example.com", 443});
  CHECK(r.request->isolation_key.empty());
  CHECK(r.leftover.empty());
  CHECK(r.reply.empty());
}

TEST_CASE("CONNECT to IP literals, HTTP/1.0, bare LF") {
  Run v4 = run("CONNECT 10.0.0.1:8080 HTTP/1.0\r\n\r\n");
  REQUIRE(v4.request);
  CHECK(v4.request->target == HostPort{"10.0.0.1", 8080});
  Run v6 = run("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n");
  REQUIRE(v6.request);
  CHECK(v6.request->target == HostPort{"2001:db8::1", 443});
  Run lf = run("CONNECT a.example:22 HTTP/1.1\nHost: a.example:22\n\n");
  REQUIRE(lf.request);
  CHECK(lf.request->target == HostPort{"a.example", 22});
}

TEST_CASE("bytes after the head are early data, not consumed") {
  std::string hello = "\x16\x03\x01\x00\x05hello";
  Run r = run("CONNECT example.com:443 HTTP/1.1\r\n\r\n" + hello);
  REQUIRE(r.request);
  CHECK(r.leftover == hello);
  HttpConnectParser p;
  std::string head = "CONNECT example.com:443 HTTP/1.1\r\n\r\n";
  HttpConnectAction a = p.advance(as_bytes(head + "XYZ"));
  REQUIRE(a.request);
  CHECK(a.consumed == head.size());
}

TEST_CASE("Proxy-Authorization becomes the isolation key") {
  std::string b64 = crypto::to_base64(as_bytes("alice:s3cr:et"));
  Run r = run("CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic " + b64 + "\r\n\r\n");
  REQUIRE(r.request);
  CHECK(r.request->isolation_key == isolation_key("alice", "s3cr:et"));

  Run lower = run("CONNECT example.com:443 HTTP/1.1\r\nproxy-authorization:   basic " + b64 + "  \r\n\r\n");
  REQUIRE(lower.request);
  CHECK(lower.request->isolation_key == isolation_key("alice", "s3cr:et"));

  Run bearer = run("CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Bearer abc\r\n\r\n");
  REQUIRE(bearer.request);
  CHECK_FALSE(bearer.request->isolation_key.empty());
  CHECK(bearer.request->isolation_key != r.request->isolation_key);

  Run nocolon = run("CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic " +
                    crypto::to_base64(as_bytes("bob")) + "\r\n\r\n");
  REQUIRE(nocolon.request);
  CHECK(nocolon.request->isolation_key == isolation_key("bob", ""));

  Run two = run("CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic " + b64 +
                "\r\nProxy-Authorization: Basic " + b64 + "\r\n\r\n");
  REQUIRE(two.error);
  CHECK(status_line(two.reply) == "HTTP/1.1 400 Bad Request");
}

TEST_CASE("other methods get 405 with Allow: CONNECT, as soon as the method is known") {
  for (std::string req : std::initializer_list<std::string>{"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
                          "POST http://example.com/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                          "OPTIONS * HTTP/1.1\r\n\r\n", "BREW /pot HTTP/1.1\r\n\r\n"}) {
    CAPTURE(req);
    Run r = run(req);
    REQUIRE(r.error);
    CHECK(status_line(r.reply) == "HTTP/1.1 405 Method Not Allowed");
    CHECK(r.reply.find("\r\nAllow: CONNECT\r\n") != std::string::npos);
    CHECK(r.reply.find("Connection: close") != std::string::npos);
  }
  HttpConnectParser p;
  HttpConnectAction a = p.advance(as_bytes("GET /"));
  REQUIRE(a.error);
}

TEST_CASE("malformed CONNECT requests get 400") {
  for (std::string req : std::initializer_list<std::string>{"CONNECT example.com HTTP/1.1\r\n\r\n", "CONNECT example.com:0 HTTP/1.1\r\n\r\n",
                          "CONNECT example.com:99999 HTTP/1.1\r\n\r\n", "CONNECT /path HTTP/1.1\r\n\r\n",
                          "CONNECT example.com:443 XYZ/1.1\r\n\r\n",
                          "CONNECT example.com:443 HTTP/1.1\r\nBad Header\r\n\r\n",
                          std::string("\x00\x01\x02\x03", 4), "\r\n\r\n\x05"}) {
    CAPTURE(req);
    Run r = run(req);
    REQUIRE(r.error);
    CHECK(status_line(r.reply) == "HTTP/1.1 400 Bad Request");
  }
}

TEST_CASE("an oversized head gets 431; an incomplete one waits") {
  std::string big = "CONNECT example.com:443 HTTP/1.1\r\nX-Pad: " + std::string(kMaxConnectHeadSize, 'a') + "\r\n\r\n";
  Run r = run(big);
  REQUIRE(r.error);
  CHECK(status_line(r.reply) == "HTTP/1.1 431 Request Header Fields Too Large");

  // Just under the limit passes.
  std::string head = "CONNECT example.com:443 HTTP/1.1\r\nX-Pad: ";
  std::string fits = head + std::string(kMaxConnectHeadSize - head.size() - 4, 'a') + "\r\n\r\n";
  REQUIRE(fits.size() == kMaxConnectHeadSize);
  Run ok = run(fits);
  CHECK(ok.request);

  HttpConnectParser p;
  HttpConnectAction a = p.advance(as_bytes("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n"));
  CHECK_FALSE(a.error);
  HttpConnectAction nothing = p.advance({});  // an empty read is not the end of the input
  CHECK_FALSE(nothing.error);
  CHECK(nothing.consumed == 0);
  CHECK_FALSE(a.request);
  CHECK_FALSE(p.finished());
  HttpConnectAction b = p.advance(as_bytes("\r\n"));
  REQUIRE(b.request);
  CHECK(b.request->target == HostPort{"example.com", 443});
}

TEST_CASE("responses") {
  CHECK(std::string(as_chars(http_connect_established())) == "HTTP/1.1 200 Connection established\r\n\r\n");
  std::string e(as_chars(http_connect_error(503, "Service Unavailable", "no circuit")));
  CHECK(e == "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
             "Connection: close\r\n\r\nno circuit\n");
  CHECK(http_status_for(EndReason::exit_policy).code == 403);
  CHECK(http_status_for(EndReason::timeout).code == 504);
  CHECK(http_status_for(EndReason::resolve_failed).code == 502);
  CHECK(http_status_for(EndReason::connect_refused).code == 502);
  CHECK(http_status_for(EndReason::no_route).code == 502);
  CHECK(http_status_for(EndReason::resource_limit).code == 503);
  CHECK(http_status_for(EndReason::hibernating).code == 503);
  CHECK(http_status_for(EndReason::misc).code == 502);
  CHECK(http_status_for(EndReason::connect_refused).message != http_status_for(EndReason::resolve_failed).message);
  std::string f(as_chars(http_connect_failed(EndReason::exit_policy)));
  CHECK(f.rfind("HTTP/1.1 403 Forbidden\r\n", 0) == 0);
  CHECK(f.find("policy") != std::string::npos);
}
