// The SOCKS server handshake, byte for byte: every version, method, command, address type and reply
// code, fed whole and one byte at a time (both must agree).
#include <doctest/doctest.h>

#include <random>
#include <string>

#include "common/crypto/encoding.hpp"
#include "common/socks/isolation.hpp"
#include "common/socks/socks_server.hpp"

using namespace thor;
using namespace thor::socks;

namespace {

std::string hex(ByteView b) { return crypto::to_hex(b); }
Bytes unhex(std::string_view h) { return *crypto::from_hex(h); }
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes str(std::string_view s) { return Bytes(s.begin(), s.end()); }

struct Run {
  Bytes replies;
  std::optional<Request> request;
  std::optional<std::string> error;
  Bytes leftover;  // input not consumed when the handshake ended (early data)
};

// Drives the handshake the way the daemon does: a buffer of unconsumed bytes, advance() after each
// read, `chunk` bytes per read.
Run drive(const Bytes& input, std::size_t chunk) {
  ServerHandshake hs;
  Run run;
  Bytes buffer;
  std::size_t pos = 0;
  while (true) {
    std::size_t n = std::min(chunk, input.size() - pos);
    buffer.insert(buffer.end(), input.begin() + static_cast<long>(pos), input.begin() + static_cast<long>(pos + n));
    pos += n;
    Action a = hs.advance(buffer);
    REQUIRE(a.consumed <= buffer.size());
    run.replies.insert(run.replies.end(), a.reply.begin(), a.reply.end());
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<long>(a.consumed));
    if (a.error) {
      CHECK(hs.failed());
      CHECK_FALSE(a.request);
      run.error = a.error;
      break;
    }
    if (a.request) {
      CHECK(hs.finished());
      run.request = a.request;
      break;
    }
    if (pos == input.size()) break;
  }
  buffer.insert(buffer.end(), input.begin() + static_cast<long>(pos), input.end());
  run.leftover = buffer;
  // Once finished or failed, the machine takes nothing more.
  if (run.request || run.error) {
    Action again = hs.advance(buffer);
    CHECK(again.consumed == 0);
    CHECK(again.reply.empty());
    CHECK_FALSE(again.request);
  }
  return run;
}

// Runs the input whole and one byte at a time; both must give the same outcome.
Run run(const Bytes& input) {
  Run whole = drive(input, input.size() + 1);
  Run bytewise = drive(input, 1);
  CHECK(hex(whole.replies) == hex(bytewise.replies));
  CHECK(whole.error.has_value() == bytewise.error.has_value());
  CHECK(whole.request.has_value() == bytewise.request.has_value());
  if (whole.request && bytewise.request) {
    CHECK(whole.request->target == bytewise.request->target);
    CHECK(whole.request->isolation_key == bytewise.request->isolation_key);
    CHECK(whole.request->command == bytewise.request->command);
  }
  if (whole.request) CHECK(hex(whole.leftover) == hex(bytewise.leftover));
  return whole;
}

const Bytes kGreetNoAuth = {0x05, 0x01, 0x00};
const Bytes kFailReplyTail = {0x00, 0x01, 0, 0, 0, 0, 0, 0};  // RSV, ATYP=IPv4, 0.0.0.0, port 0

Bytes socks5_fail(std::uint8_t code) { return cat({{0x05, code}, kFailReplyTail}); }

}  // namespace

TEST_CASE("SOCKS5 CONNECT to an IPv4 address without authentication") {
  Run r = run(cat({kGreetNoAuth, unhex("050100017f0000010050")}));
  REQUIRE(r.request);
  CHECK(hex(r.replies) == "0500");
  CHECK(r.request->version == Version::v5);
  CHECK(r.request->command == Command::connect);
  CHECK(r.request->address_type == AddressType::ipv4);
  CHECK(r.request->target == HostPort{"127.0.0.1", 80});
  CHECK(r.request->isolation_key.empty());
  CHECK(r.request->username.empty());
  CHECK(r.leftover.empty());
}

TEST_CASE("SOCKS5 CONNECT to IPv6 addresses") {
  Run r = run(cat({kGreetNoAuth, unhex("05010004"), unhex("00000000000000000000000000000001"), unhex("01bb")}));
  REQUIRE(r.request);
  CHECK(r.request->address_type == AddressType::ipv6);
  CHECK(r.request->target == HostPort{"::1", 443});

  Run r2 = run(cat({kGreetNoAuth, unhex("05010004"), unhex("20010db8000000000000000000000001"), unhex("1f90")}));
  REQUIRE(r2.request);
  CHECK(r2.request->target == HostPort{"2001:db8::1", 8080});
}

TEST_CASE("SOCKS5 CONNECT to a domain name: sent on as text, never resolved here") {
  Run r = run(cat({kGreetNoAuth, unhex("05010003"), {11}, str("example.com"), unhex("01bb")}));
  REQUIRE(r.request);
  CHECK(r.request->address_type == AddressType::hostname);
  CHECK(r.request->target == HostPort{"example.com", 443});

  SUBCASE("numeric text in a domain field stays a hostname-typed request") {
    Run n = run(cat({kGreetNoAuth, unhex("05010003"), {9}, str("127.0.0.1"), unhex("0050")}));
    REQUIRE(n.request);
    CHECK(n.request->address_type == AddressType::hostname);
    CHECK(n.request->target.host == "127.0.0.1");
  }
  SUBCASE("a bracketed IPv6 literal loses its brackets") {
    Run b = run(cat({kGreetNoAuth, unhex("05010003"), {5}, str("[::1]"), unhex("0050")}));
    REQUIRE(b.request);
    CHECK(b.request->target.host == "::1");
  }
  SUBCASE("a 255-byte name is accepted") {
    std::string name(255, 'a');
    Run l = run(cat({kGreetNoAuth, unhex("05010003"), {255}, str(name), unhex("0050")}));
    REQUIRE(l.request);
    CHECK(l.request->target.host == name);
  }
}

TEST_CASE("SOCKS5 username/password: any credentials, returned as the isolation key") {
  Bytes greet = {0x05, 0x02, 0x00, 0x02};
  Bytes auth = cat({{0x01, 5}, str("alice"), {6}, str("secret")});
  Bytes req = cat({unhex("05010003"), {7}, str("a.local"), unhex("0050")});
  Run r = run(cat({greet, auth, req}));
  REQUIRE(r.request);
  CHECK(hex(r.replies) == "0502" "0100");  // method 0x02 chosen, then auth success
  CHECK(r.request->username == "alice");
  CHECK(r.request->password == "secret");
  CHECK(r.request->isolation_key == isolation_key("alice", "secret"));
  CHECK_FALSE(r.request->isolation_key.empty());

  SUBCASE("username/password is preferred wherever it is in the method list") {
    Run p = run(cat({{0x05, 0x03, 0x02, 0x01, 0x00}, auth, req}));
    REQUIRE(p.request);
    CHECK(hex(p.replies) == "05020100");
  }
  SUBCASE("an empty password (curl's socks5h://user@host) and empty username are accepted") {
    Run e = run(cat({greet, {0x01, 3}, str("bob"), {0}, req}));
    REQUIRE(e.request);
    CHECK(e.request->isolation_key == isolation_key("bob", ""));
    Run z = run(cat({greet, {0x01, 0, 0}, req}));
    REQUIRE(z.request);
    CHECK(z.request->isolation_key.empty());  // no credentials at all: the shared default
  }
  SUBCASE("255-byte username and password") {
    std::string u(255, 'u'), pw(255, 'p');
    Run m = run(cat({greet, {0x01, 255}, str(u), {255}, str(pw), req}));
    REQUIRE(m.request);
    CHECK(m.request->username == u);
    CHECK(m.request->password == pw);
  }
  SUBCASE("a wrong subnegotiation version fails with status 0x01") {
    Run f = run(cat({greet, {0x05, 5}, str("alice"), {6}, str("secret"), req}));
    REQUIRE(f.error);
    CHECK(hex(f.replies) == "0502" "0101");
    CHECK(f.error->find("version 0x05") != std::string::npos);
  }
}

TEST_CASE("isolation keys differ whenever the credentials differ") {
  CHECK(isolation_key("", "").empty());
  CHECK(isolation_key("a:b", "c") != isolation_key("a", "b:c"));
  CHECK(isolation_key("ab", "") != isolation_key("a", "b"));
  CHECK(isolation_key("a", "b") == isolation_key("a", "b"));
  CHECK(isolation_key("", "x") != isolation_key("x", ""));
}

TEST_CASE("SOCKS5 method negotiation failures reply 0xFF") {
  Run gss = run({0x05, 0x01, 0x01});
  REQUIRE(gss.error);
  CHECK(hex(gss.replies) == "05ff");
  CHECK(gss.error->find("0x01") != std::string::npos);
  Run none = run({0x05, 0x00});
  REQUIRE(none.error);
  CHECK(hex(none.replies) == "05ff");
  Run many = run({0x05, 0x03, 0x01, 0x03, 0x80});
  REQUIRE(many.error);
  CHECK(hex(many.replies) == "05ff");
}

TEST_CASE("Tor's RESOLVE and RESOLVE_PTR") {
  Run r = run(cat({kGreetNoAuth, unhex("05f00003"), {11}, str("example.com"), unhex("0000")}));
  REQUIRE(r.request);
  CHECK(r.request->command == Command::resolve);
  CHECK(r.request->target == HostPort{"example.com", 0});

  Run p = run(cat({kGreetNoAuth, unhex("05f10001"), unhex("01020304"), unhex("0000")}));
  REQUIRE(p.request);
  CHECK(p.request->command == Command::resolve_ptr);
  CHECK(p.request->target.host == "1.2.3.4");

  Run p6 = run(cat({kGreetNoAuth, unhex("05f10004"), unhex("20010db8000000000000000000000002"), unhex("0000")}));
  REQUIRE(p6.request);
  CHECK(p6.request->target.host == "2001:db8::2");

  Run ptext = run(cat({kGreetNoAuth, unhex("05f10003"), {7}, str("1.2.3.4"), unhex("0000")}));
  REQUIRE(ptext.request);
  CHECK(ptext.request->command == Command::resolve_ptr);

  Run bad = run(cat({kGreetNoAuth, unhex("05f10003"), {11}, str("example.com"), unhex("0000")}));
  REQUIRE(bad.error);
  CHECK(hex(bad.replies) == "0500" + hex(socks5_fail(0x08)));
}

TEST_CASE("SOCKS5 unsupported commands reply 0x07") {
  for (std::uint8_t cmd : {0x02, 0x03, 0x00, 0x04, 0x09, 0xF2, 0xFF}) {
    CAPTURE(int(cmd));
    Run r = run(cat({kGreetNoAuth, {0x05, cmd, 0x00, 0x01}, unhex("7f0000010050")}));
    REQUIRE(r.error);
    CHECK(hex(r.replies) == "0500" + hex(socks5_fail(0x07)));
  }
  // The reply comes as soon as the command byte is known.
  ServerHandshake hs;
  Action a = hs.advance(cat({kGreetNoAuth, {0x05, 0x02}}));
  REQUIRE(a.error);
  CHECK(hex(a.reply) == "0500" + hex(socks5_fail(0x07)));
  CHECK(a.error->find("BIND") != std::string::npos);
}

TEST_CASE("SOCKS5 unknown address types reply 0x08") {
  for (std::uint8_t atyp : {0x00, 0x02, 0x05, 0xFF}) {
    CAPTURE(int(atyp));
    Run r = run(cat({kGreetNoAuth, {0x05, 0x01, 0x00, atyp}, unhex("7f0000010050")}));
    REQUIRE(r.error);
    CHECK(hex(r.replies) == "0500" + hex(socks5_fail(0x08)));
  }
}

TEST_CASE("malformed SOCKS5 requests get a general failure (0x01) and a reason") {
  auto failing = [](const Bytes& request, std::string_view why) {
    Run r = run(cat({kGreetNoAuth, request}));
    REQUIRE(r.error);
    CHECK(hex(r.replies) == "0500" + hex(socks5_fail(0x01)));
    CHECK_MESSAGE(r.error->find(why) != std::string::npos, *r.error);
  };
  failing(cat({unhex("05010003"), {0}, unhex("0050")}), "empty hostname");
  failing(cat({unhex("05010003"), {4}, str("a b."), unhex("0050")}), "0x20");
  failing(cat({unhex("05010003"), {4}, {'a', 0, 'b', 'c'}, unhex("0050")}), "0x00");
  failing(cat({unhex("05010003"), {3}, {'a', 0xC3, 0xA9}, unhex("0050")}), "0xC3");
  failing(unhex("050100017f0000010000"), "port 0");
  failing(unhex("040100017f0000010050"), "version 0x04");
}

TEST_CASE("SOCKS5 with a reserved byte that is not zero is still accepted (as Tor does)") {
  Run r = run(cat({kGreetNoAuth, unhex("050177017f0000010050")}));
  REQUIRE(r.request);
}

TEST_CASE("the client's early data is left unconsumed for the daemon to forward") {
  Bytes early = str("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  Run r = run(cat({kGreetNoAuth, unhex("050100017f0000010050"), early}));
  REQUIRE(r.request);
  CHECK(hex(r.replies) == "0500");
  CHECK(hex(r.leftover) == hex(early));

  Bytes greet = {0x05, 0x01, 0x02};
  Run a = run(cat({greet, {0x01, 1, 'u', 1, 'p'}, unhex("05010003"), {1}, str("h"), unhex("0050"), early}));
  REQUIRE(a.request);
  CHECK(hex(a.replies) == "05020100");
  CHECK(hex(a.leftover) == hex(early));

  Run four = run(cat({unhex("040100507f000001"), str("id"), {0}, early}));
  REQUIRE(four.request);
  CHECK(hex(four.leftover) == hex(early));

  // The exact consumed count on a single call.
  ServerHandshake hs;
  Bytes all = cat({kGreetNoAuth, unhex("050100017f0000010050"), {0xAA, 0xBB}});
  Action act = hs.advance(all);
  REQUIRE(act.request);
  CHECK(act.consumed == all.size() - 2);
}

TEST_CASE("every prefix of a handshake is incomplete, never an error") {
  const Bytes full = cat({{0x05, 0x02, 0x00, 0x02}, {0x01, 2, 'u', 'u', 2, 'p', 'p'}, unhex("05010003"), {3},
                          str("a.b"), unhex("0050")});
  for (std::size_t n = 0; n < full.size(); ++n) {
    CAPTURE(n);
    ServerHandshake hs;
    Action a = hs.advance(ByteView(full.data(), n));
    CHECK_FALSE(a.error);
    CHECK_FALSE(a.request);
    CHECK_FALSE(hs.failed());
  }
  const Bytes four = cat({unhex("04f0000000000001"), str("user"), {0}, str("example.com"), {0}});
  for (std::size_t n = 0; n < four.size(); ++n) {
    CAPTURE(n);
    ServerHandshake hs;
    Action a = hs.advance(ByteView(four.data(), n));
    CHECK_FALSE(a.error);
    CHECK_FALSE(a.request);
    CHECK(a.consumed == 0);
  }
}

TEST_CASE("a message is consumed whole or not at all") {
  ServerHandshake hs;
  Bytes in = cat({kGreetNoAuth, {0x05, 0x01, 0x00}});
  Action a = hs.advance(in);
  CHECK(hex(a.reply) == "0500");
  CHECK(a.consumed == 3);  // the greeting; the partial request stays with the caller
  Bytes rest = cat({{0x05, 0x01, 0x00}, unhex("017f0000010050")});
  Action b = hs.advance(rest);
  REQUIRE(b.request);
  CHECK(b.reply.empty());
  CHECK(b.consumed == rest.size());
}

TEST_CASE("not SOCKS at all") {
  Run zero = run({0x00, 0x01, 0x02});
  REQUIRE(zero.error);
  CHECK(zero.replies.empty());
  CHECK(zero.error->find("first byte 0x00") != std::string::npos);

  Run http = run(str("GET http://example.com/ HTTP/1.1\r\n\r\n"));
  REQUIRE(http.error);
  std::string text(http.replies.begin(), http.replies.end());
  CHECK(text.rfind("HTTP/1.0 501 ", 0) == 0);
  CHECK(text.find("SOCKS") != std::string::npos);
  CHECK(http.error->find("HTTP") != std::string::npos);

  Run connect = run(str("CONNECT example.com:443 HTTP/1.1\r\n\r\n"));
  REQUIRE(connect.error);
  CHECK_FALSE(connect.replies.empty());

  ServerHandshake hs;
  CHECK_FALSE(hs.version());
  Action empty = hs.advance({});
  CHECK(empty.consumed == 0);
  CHECK_FALSE(empty.error);
}

TEST_CASE("SOCKS4 CONNECT with a user id") {
  Run r = run(cat({unhex("04010050c0a80001"), str("bob"), {0}}));
  REQUIRE(r.request);
  CHECK(r.replies.empty());  // SOCKS4 has no negotiation: the reply comes with the result
  CHECK(r.request->version == Version::v4);
  CHECK(r.request->command == Command::connect);
  CHECK(r.request->address_type == AddressType::ipv4);
  CHECK(r.request->target == HostPort{"192.168.0.1", 80});
  CHECK(r.request->username == "bob");
  CHECK(r.request->isolation_key == isolation_key("bob", ""));

  Run anon = run(cat({unhex("04010050c0a80001"), {0}}));
  REQUIRE(anon.request);
  CHECK(anon.request->isolation_key.empty());
}

TEST_CASE("SOCKS4a CONNECT and RESOLVE with a hostname") {
  Run r = run(cat({unhex("040101bb000000ff"), {0}, str("example.com"), {0}}));
  REQUIRE(r.request);
  CHECK(r.request->address_type == AddressType::hostname);
  CHECK(r.request->target == HostPort{"example.com", 443});

  Run res = run(cat({unhex("04f0000000000001"), str("me"), {0}, str("example.org"), {0}}));
  REQUIRE(res.request);
  CHECK(res.request->command == Command::resolve);
  CHECK(res.request->target == HostPort{"example.org", 0});
  CHECK(res.request->username == "me");

  std::string longest(255, 'h');
  Run l = run(cat({unhex("0401005000000001"), {0}, str(longest), {0}}));
  REQUIRE(l.request);
  CHECK(l.request->target.host == longest);
}

TEST_CASE("SOCKS4 failures reply 0x5B") {
  const std::string rejected = "005b000000000000";
  auto failing = [&](const Bytes& in, std::string_view why) {
    Run r = run(in);
    REQUIRE(r.error);
    CHECK(hex(r.replies) == rejected);
    CHECK_MESSAGE(r.error->find(why) != std::string::npos, *r.error);
  };
  failing(cat({unhex("04020050c0a80001"), {0}}), "BIND");
  failing(cat({unhex("04f10050c0a80001"), {0}}), "0xF1");  // RESOLVE_PTR exists in SOCKS5 only
  failing(cat({unhex("04030050c0a80001"), {0}}), "0x03");
  failing(cat({unhex("04010000c0a80001"), {0}}), "port 0");
  failing(cat({unhex("0401005000000001"), {0}, {0}}), "empty hostname");
  failing(cat({unhex("0401005000000001"), {0}, str("a b"), {0}}), "0x20");
  failing(cat({unhex("04010050c0a80001"), Bytes(256, 'u')}), "user id longer than 255");
  failing(cat({unhex("0401005000000001"), {0}, Bytes(256, 'h')}), "hostname longer than 255");
  // 255 bytes and no NUL yet is still only incomplete.
  ServerHandshake hs;
  Action a = hs.advance(cat({unhex("04010050c0a80001"), Bytes(255, 'u')}));
  CHECK_FALSE(a.error);
  CHECK_FALSE(a.request);
}

TEST_CASE("reply builders: success with the bound address") {
  CHECK(hex(reply_succeeded(Version::v5)) == "05000001000000000000");
  CHECK(hex(reply_succeeded(Version::v5, HostPort{"10.1.2.3", 0x1234})) == "050000010a0102031234");
  CHECK(hex(reply_succeeded(Version::v5, HostPort{"2001:db8::1", 443})) ==
        "05000004" "20010db8000000000000000000000001" "01bb");
  CHECK(hex(reply_succeeded(Version::v5, HostPort{"not-an-ip", 80})) == "05000001000000000000");
  CHECK(hex(reply_succeeded(Version::v4)) == "005a000000000000");
  CHECK(hex(reply_succeeded(Version::v4, HostPort{"10.1.2.3", 80})) == "005a00500a010203");
  CHECK(hex(reply_succeeded(Version::v4, HostPort{"::1", 80})) == "005a000000000000");
}

TEST_CASE("reply builders: every failure code") {
  const Reply codes[] = {Reply::general_failure,    Reply::not_allowed,       Reply::network_unreachable,
                         Reply::host_unreachable,   Reply::connection_refused, Reply::ttl_expired,
                         Reply::command_not_supported, Reply::address_type_not_supported};
  std::uint8_t expected = 0x01;
  for (Reply c : codes) {
    CAPTURE(int(expected));
    CHECK(hex(reply_failed(Version::v5, c)) == hex(socks5_fail(expected)));
    CHECK(hex(reply_failed(Version::v4, c)) == "005b000000000000");
    CHECK(std::string(to_string(c)) != to_string(Reply::succeeded));
    ++expected;
  }
  CHECK(expected == 0x09);
  // A "failure" with the success code would tell the client it worked: it becomes 0x01.
  CHECK(hex(reply_failed(Version::v5, Reply::succeeded)) == hex(socks5_fail(0x01)));
}

TEST_CASE("reply builders: RESOLVE answers") {
  CHECK(hex(reply_resolved_address(Version::v5, "93.184.216.34")) == "050000015db8d8220000");
  CHECK(hex(reply_resolved_address(Version::v5, "::1")) == "05000004" "00000000000000000000000000000001" "0000");
  CHECK(hex(reply_resolved_address(Version::v4, "93.184.216.34")) == "005a00005db8d822");
  CHECK(hex(reply_resolved_address(Version::v4, "::1")) == "005b000000000000");
  CHECK(hex(reply_resolved_address(Version::v5, "example.com")) == hex(socks5_fail(0x01)));
  CHECK(hex(reply_resolved_hostname("a.io")) == "0500000304" + hex(str("a.io")) + "0000");
  CHECK(hex(reply_resolved_hostname("")) == hex(socks5_fail(0x01)));
  CHECK(hex(reply_resolved_hostname(std::string(256, 'x'))) == hex(socks5_fail(0x01)));
}

TEST_CASE("reply_for_resolved picks an answer the request can carry") {
  using T = ResolvedAnswer::Type;
  Request resolve5{Version::v5, Command::resolve, AddressType::hostname, {"example.com", 0}, "", "", ""};
  Request resolve4 = resolve5;
  resolve4.version = Version::v4;
  Request ptr5 = resolve5;
  ptr5.command = Command::resolve_ptr;

  ResolvedBody both{{{T::ipv6, "2001:db8::5", 60}, {T::ipv4, "192.0.2.7", 60}}};
  CHECK(hex(reply_for_resolved(resolve5, both)) == hex(reply_resolved_address(Version::v5, "2001:db8::5")));
  CHECK(hex(reply_for_resolved(resolve4, both)) == hex(reply_resolved_address(Version::v4, "192.0.2.7")));

  ResolvedBody name{{{T::ipv4, "192.0.2.7", 60}, {T::hostname, "host.example", 60}}};
  CHECK(hex(reply_for_resolved(ptr5, name)) == hex(reply_resolved_hostname("host.example")));

  CHECK(hex(reply_for_resolved(resolve5, ResolvedBody{{{T::error_transient, "", 0}}})) == hex(socks5_fail(0x06)));
  CHECK(hex(reply_for_resolved(resolve5, ResolvedBody{{{T::error_permanent, "", 0}}})) == hex(socks5_fail(0x04)));
  CHECK(hex(reply_for_resolved(resolve5, ResolvedBody{})) == hex(socks5_fail(0x04)));
  CHECK(hex(reply_for_resolved(ptr5, both)) == hex(socks5_fail(0x04)));  // no hostname answer
  CHECK(hex(reply_for_resolved(resolve4, ResolvedBody{{{T::ipv6, "::1", 0}}})) == "005b000000000000");
}

TEST_CASE("END reasons map to SOCKS5 reply codes") {
  CHECK(reply_for_end(EndReason::exit_policy) == Reply::not_allowed);
  CHECK(reply_for_end(EndReason::no_route) == Reply::network_unreachable);
  CHECK(reply_for_end(EndReason::resolve_failed) == Reply::host_unreachable);
  CHECK(reply_for_end(EndReason::connect_refused) == Reply::connection_refused);
  CHECK(reply_for_end(EndReason::timeout) == Reply::ttl_expired);
  for (EndReason r : {EndReason::misc, EndReason::destroy, EndReason::done, EndReason::hibernating,
                      EndReason::internal, EndReason::resource_limit, EndReason::conn_reset, EndReason::protocol,
                      EndReason::not_directory}) {
    CAPTURE(int(r));
    CHECK(reply_for_end(r) == Reply::general_failure);
  }
  CHECK(hex(reply_failed(Version::v5, reply_for_end(EndReason::connect_refused))) == hex(socks5_fail(0x05)));
}

TEST_CASE("random and mutated input never crashes and never over-consumes") {
  std::mt19937 rng(7);
  const Bytes seeds[] = {
      cat({kGreetNoAuth, unhex("050100017f0000010050")}),
      cat({{0x05, 0x01, 0x02}, {0x01, 1, 'u', 1, 'p'}, unhex("05010003"), {1}, str("h"), unhex("0050")}),
      cat({unhex("0401005000000001"), str("id"), {0}, str("host"), {0}}),
  };
  for (int i = 0; i < 3000; ++i) {
    Bytes in = seeds[i % 3];
    for (int e = 0; e < 1 + i % 4 && !in.empty(); ++e) in[rng() % in.size()] = static_cast<std::uint8_t>(rng());
    if (i % 5 == 0) in.resize(rng() % (in.size() + 1));
    ServerHandshake hs;
    Bytes buffer = in;
    for (int round = 0; round < 8; ++round) {
      Action a = hs.advance(buffer);
      REQUIRE(a.consumed <= buffer.size());
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<long>(a.consumed));
      if (a.error || a.request || a.consumed == 0) break;
    }
    CHECK_FALSE((hs.finished() && hs.failed()));
  }
}
