#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "common/http/http_request.hpp"
#include "common/http/http_response.hpp"

using namespace thor;
using namespace thor::http;
using State = RequestParser::State;

namespace {
std::size_t feed_all(RequestParser& p, std::string_view s) { return p.feed(as_bytes(s)); }
}  // namespace

TEST_CASE("http parser: a good GET, whole or byte at a time") {
  const std::string req =
      "GET /status?pretty=1 HTTP/1.1\r\nHost: 127.0.0.1:50052\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n";
  RequestParser whole;
  CHECK(feed_all(whole, req) == req.size());
  REQUIRE(whole.state() == State::complete);
  CHECK(whole.request().method == "GET");
  CHECK(whole.request().path == "/status");
  CHECK(whole.request().query == "pretty=1");
  CHECK(whole.request().target == "/status?pretty=1");
  CHECK(whole.request().keep_alive);
  CHECK(*whole.request().header("user-agent") == "test");
  CHECK(!whole.request().header("cookie"));

  RequestParser bytewise;
  for (std::size_t i = 0; i < req.size(); ++i) {
    CHECK(bytewise.state() == State::incomplete);
    CHECK(feed_all(bytewise, req.substr(i, 1)) == 1);
  }
  REQUIRE(bytewise.state() == State::complete);
  CHECK(bytewise.request().path == "/status");
  CHECK(bytewise.request().headers.size() == 3);
}

TEST_CASE("http parser: pipelined requests stop at the first; reset reads the next") {
  const std::string one = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string two = "HEAD /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string both = one + two;
  RequestParser p;
  std::size_t used = feed_all(p, both);
  CHECK(used == one.size());
  REQUIRE(p.state() == State::complete);
  CHECK(p.request().path == "/a");
  p.reset();
  CHECK(feed_all(p, std::string_view(both).substr(used)) == two.size());
  REQUIRE(p.state() == State::complete);
  CHECK(p.request().method == "HEAD");
  CHECK_FALSE(p.request().keep_alive);
}

TEST_CASE("http parser: HTTP/1.0, absolute form, bodies") {
  RequestParser p10;
  feed_all(p10, "GET /status HTTP/1.0\r\n\r\n");  // no Host needed in 1.0
  REQUIRE(p10.state() == State::complete);
  CHECK_FALSE(p10.request().keep_alive);

  RequestParser abs;
  feed_all(abs, "GET http://dir.example:50052/relays?x HTTP/1.1\r\nHost: dir.example\r\n\r\n");
  REQUIRE(abs.state() == State::complete);
  CHECK(abs.request().path == "/relays");
  CHECK(abs.request().query == "x");

  RequestParser body;
  feed_all(body, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  REQUIRE(body.state() == State::complete);
  CHECK(body.request().body == "hello");

  RequestParser chunked;
  feed_all(chunked, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  REQUIRE(chunked.state() == State::complete);
  CHECK(chunked.request().body == "abc");
}

TEST_CASE("http parser: malformed requests are 400, with a reason") {
  for (const char* bad : {"GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                          "GET / HTTP/1.1\r\n\r\n",  // no Host
                          "GET / HTTP/1.x\r\nHost: x\r\n\r\n", "GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                          "\x01\x02\x03\x04"}) {
    RequestParser p;
    feed_all(p, bad);
    CHECK_MESSAGE(p.state() == State::error, std::string(bad));
    CHECK_MESSAGE(p.error_status() == 400, std::string(bad));
    CHECK(!p.error().empty());
    // Once failed, it stays failed and takes nothing more.
    CHECK(feed_all(p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
  }
  // An Upgrade is ignored (the server answers in HTTP/1.1) and the connection is not kept.
  RequestParser up;
  feed_all(up, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  CHECK(up.state() == State::complete);
  CHECK_FALSE(up.request().keep_alive);
  RequestParser v2;
  feed_all(v2, "GET / HTTP/2.0\r\nHost: x\r\n\r\n");
  CHECK(v2.state() == State::error);
  CHECK(v2.error_status() == 505);
}

TEST_CASE("http parser: oversized headers are 431, oversized bodies 413") {
  Limits small;
  small.max_header_bytes = 1024;
  small.max_body_bytes = 10;
  std::string big = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  RequestParser p(small);
  feed_all(p, big);
  CHECK(p.state() == State::error);
  CHECK(p.error_status() == 431);

  RequestParser longurl(small);
  feed_all(longurl, "GET /" + std::string(2000, 'a'));  // never finishes its line
  CHECK(longurl.state() == State::error);
  CHECK(longurl.error_status() == 431);

  RequestParser many(small);
  std::string lots = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 300; ++i) lots += "A:\r\n";
  feed_all(many, lots);
  CHECK(many.state() == State::error);
  CHECK(many.error_status() == 431);

  RequestParser body(small);
  feed_all(body, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
  CHECK(body.state() == State::error);
  CHECK(body.error_status() == 413);

  RequestParser chunks(small);
  feed_all(chunks, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n");
  CHECK(chunks.state() == State::error);
  CHECK(chunks.error_status() == 413);

  // The default bound is 16 KiB.
  RequestParser def;
  feed_all(def, "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(17 * 1024, 'a') + "\r\n\r\n");
  CHECK(def.error_status() == 431);
  RequestParser fits;
  feed_all(fits, "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(15 * 1024, 'a') + "\r\n\r\n");
  CHECK(fits.state() == State::complete);
}

TEST_CASE("http responses") {
  Response r;
  r.body = "{}";
  CHECK(serialize(r, true) ==
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nCache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n\r\n{}");
  auto head = serialize(r, false, true);
  CHECK(head.find("Connection: close\r\n") != std::string::npos);
  CHECK(head.find("Content-Length: 2\r\n") != std::string::npos);
  CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
  auto e = error_response(431, "too big");
  CHECK(e.status == 431);
  auto j = nlohmann::json::parse(e.body);
  CHECK(j["error"] == "too big");
  CHECK(j["status"] == 431);
  CHECK(reason_phrase(431) == "Request Header Fields Too Large");
}
