#include <doctest/doctest.h>

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "common/dir/exit_policy.hpp"

using namespace thor;

TEST_CASE("exit policy: first matching rule decides; unmatched is rejected") {
  auto p = ExitPolicy::parse("accept 1.2.3.0/24:80, reject 1.2.3.4:*, accept *:443");
  REQUIRE(p);
  CHECK(p->allows("1.2.3.4", 80));       // the /24 accept comes first
  CHECK_FALSE(p->allows("1.2.3.4", 22)); // the host reject
  CHECK(p->allows("1.2.3.4", 443) == false);  // reject 1.2.3.4:* comes before accept *:443
  CHECK(p->allows("8.8.8.8", 443));
  CHECK_FALSE(p->allows("8.8.8.8", 80));  // nothing matches: closed
  CHECK_FALSE(p->allows("not-an-ip", 443));
  CHECK_FALSE(p->allows("8.8.8.8", 0));
}

TEST_CASE("exit policy: reject private:* is put first unless the operator spoke about private addresses") {
  auto p = ExitPolicy::parse("accept *:*");
  REQUIRE(p);
  CHECK(p->to_string() == "reject private:*, accept *:*");
  for (const char* ip : {"127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.1.1", "100.64.0.1",
                         "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                         "64:ff9b::a00:1", "2002:7f00:1::1", "::"})
    CHECK_MESSAGE(!p->allows(ip, 80), ip);
  for (const char* ip : {"8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:808:808::1"})
    CHECK_MESSAGE(p->allows(ip, 80), ip);

  auto lo = ExitPolicy::parse("accept 127.0.0.0/8:*, reject *:*");
  REQUIRE(lo);
  CHECK(lo->to_string() == "accept 127.0.0.0/8:*, reject *:*");
  CHECK(lo->allows("127.0.0.1", 8080));
  CHECK_FALSE(lo->allows("8.8.8.8", 80));
  // A wide prefix that contains private ranges counts as speaking about them.
  auto wide = ExitPolicy::parse("accept 0.0.0.0/1:*");
  REQUIRE(wide);
  CHECK(wide->rules().size() == 1);
  // Only rejects: nothing to protect, nothing added.
  CHECK(ExitPolicy::parse("reject *:*")->to_string() == "reject *:*");
}

TEST_CASE("exit policy: IPv6 rules, *4 and *6, accept6") {
  auto p = ExitPolicy::parse("accept [2001:db8::]/32:443, accept *6:80, reject *4:80, accept6 *:22");
  REQUIRE(p);
  // Documentation space is private, so the operator's accept of it stands (no implicit reject).
  CHECK(p->allows("2001:db8::5", 443));
  CHECK_FALSE(p->allows("2001:db9::5", 443));
  CHECK(p->allows("2606:4700::1", 80));
  CHECK_FALSE(p->allows("8.8.8.8", 80));
  CHECK(p->allows("2606:4700::1", 22));
  CHECK_FALSE(p->allows("8.8.8.8", 22));
  CHECK(p->to_string() == "accept [2001:db8::]/32:443, accept *6:80, reject *4:80, accept *6:22");
}

TEST_CASE("exit policy: to_string round-trips through parse; host bits are cleared") {
  for (const char* text :
       {"reject private:*, accept *:*", "accept 10.0.0.0/8:1-1024, reject *:*", "accept [::1]:*, reject *:*",
        "reject 1.2.3.4:25, accept *4:*, reject *6:*", "accept [2001:db8::]/48:80-81, reject *:*"}) {
    auto p = ExitPolicy::parse(text);
    REQUIRE_MESSAGE(p, text);
    auto again = ExitPolicy::parse(p->to_string());
    REQUIRE(again);
    CHECK(again->to_string() == p->to_string());
  }
  CHECK(ExitPolicy::parse("accept 10.1.2.3/8:*")->to_string() == "accept 10.0.0.0/8:*");
  CHECK(ExitPolicy::parse("accept *:1-65535")->to_string() == "reject private:*, accept *:*");
  // Newlines, comments and blank entries are allowed (policies in config files).
  auto multi = ExitPolicy::parse("# web only\naccept *:80\n\naccept *:443 # tls\nreject *:*\n");
  REQUIRE(multi);
  CHECK(multi->to_string() == "reject private:*, accept *:80, accept *:443, reject *:*");
}

TEST_CASE("exit policy: errors say what is wrong") {
  struct Case {
    const char* text;
    const char* says;
  };
  for (auto c : {Case{"", "empty"}, Case{"allow *:80", "must start with 'accept' or 'reject'"},
                 Case{"accept", "expected"}, Case{"accept *", "ADDRESS:PORTS"}, Case{"accept *:0", "bad port"},
                 Case{"accept *:65536", "bad port"}, Case{"accept *:90-80", "backwards"},
                 Case{"accept 1.2.3.4/33:*", "prefix length"}, Case{"accept 1.2.3:*", "not an address"},
                 Case{"accept ::1:80", "brackets"}, Case{"accept [::1:80", "missing ']'"},
                 Case{"accept [zz::1]:80", "not an IPv6 address"}, Case{"accept [::1]/129:80", "prefix length"},
                 Case{"accept6 1.2.3.4:80", "IPv6"}, Case{"accept *:80,, bogus", "must start"},
                 Case{"accept host.example:80", "not an address"}, Case{"accept *:a-b", "bad port"}}) {
    auto p = ExitPolicy::parse(c.text);
    REQUIRE_MESSAGE(!p, c.text);
    CHECK_MESSAGE(p.error().find(c.says) != std::string::npos, c.text, " -> ", p.error());
  }
}

namespace {
// The one rule of a policy of rejects (no implicit rule is added in front of those).
ExitRule only_rule(const char* text) {
  auto p = ExitPolicy::parse(text);
  REQUIRE_MESSAGE(p, text, " -> ", p ? std::string() : p.error());
  REQUIRE(p->rules().size() == 1);
  return p->rules()[0];
}
std::vector<std::uint8_t> addr_bytes(const ExitRule& r) { return {std::begin(r.addr), std::end(r.addr)}; }
}  // namespace

TEST_CASE("exit policy: address prefixes byte for byte (no prefix, 0, max, host bits, both families)") {
  struct Case {
    const char* text;
    ExitRule::Kind kind;
    int bits;
    std::vector<std::uint8_t> addr;  // all 16 bytes: an IPv4 prefix leaves the last 12 zero
    const char* canonical;
  };
  using K = ExitRule::Kind;
  const std::vector<std::uint8_t> zero(16, 0);
  const std::vector<std::uint8_t> v4_host{1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (const auto& c : std::vector<Case>{
           {"reject 1.2.3.4:*", K::prefix4, 32, v4_host, "reject 1.2.3.4:*"},
           {"reject 1.2.3.4/32:*", K::prefix4, 32, v4_host, "reject 1.2.3.4:*"},
           {"reject 1.2.3.4/0:*", K::prefix4, 0, zero, "reject 0.0.0.0/0:*"},
           {"reject 172.31.255.255/12:80", K::prefix4, 12, {172, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
            "reject 172.16.0.0/12:80"},
           {"reject 255.255.255.255/31:*", K::prefix4, 31, {255, 255, 255, 254, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
            "reject 255.255.255.254/31:*"},
           {"reject [::1]:*", K::prefix6, 128, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "reject [::1]:*"},
           {"reject [::1]/128:*", K::prefix6, 128, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "reject [::1]:*"},
           {"reject [::1]/0:*", K::prefix6, 0, zero, "reject [::]/0:*"},
           {"reject [2001:db8:abcd:1234::1]/36:443", K::prefix6, 36,
            {0x20, 0x01, 0x0d, 0xb8, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "reject [2001:db8:a000::]/36:443"},
           {"reject [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/127:*", K::prefix6, 127,
            {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe},
            "reject [ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]/127:*"},
           {"reject6 [fe80::1]/10:*", K::prefix6, 10, {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
            "reject [fe80::]/10:*"},
       }) {
    INFO(c.text);
    ExitRule r = only_rule(c.text);
    CHECK(r.kind == c.kind);
    CHECK(r.bits == c.bits);
    CHECK(addr_bytes(r) == c.addr);
    auto p = ExitPolicy::parse(c.text);
    REQUIRE(p);
    CHECK(p->to_string() == c.canonical);
  }

  // Prefix 0 covers its whole family and nothing of the other.
  auto all4 = ExitPolicy::parse("accept 9.9.9.9/0:*, reject *:*");
  REQUIRE(all4);
  CHECK(all4->allows("8.8.8.8", 80));
  CHECK(all4->allows("255.255.255.255", 80));
  CHECK_FALSE(all4->allows("2606:4700::1", 80));
  CHECK(all4->may_allow_port(80));  // /0 counts as every IPv4 address
  auto all6 = ExitPolicy::parse("accept [2606::]/0:443, reject *:*");
  REQUIRE(all6);
  CHECK(all6->allows("2606:4700::1", 443));
  CHECK(all6->allows("::1", 443));
  CHECK_FALSE(all6->allows("8.8.8.8", 443));
  CHECK(all6->may_allow_port(443));
  // The maximum prefix is one host; one bit less is two.
  auto host = ExitPolicy::parse("accept [2606:4700::7]/128:*, accept 8.8.8.8/31:*, reject *:*");
  REQUIRE(host);
  CHECK(host->allows("2606:4700::7", 1));
  CHECK_FALSE(host->allows("2606:4700::6", 1));
  CHECK(host->allows("8.8.8.9", 1));
  CHECK_FALSE(host->allows("8.8.8.10", 1));
  CHECK_FALSE(host->may_allow_port(1));
}

TEST_CASE("exit policy: malformed prefixes are refused with the reason") {
  struct Case {
    const char* text;
    const char* says;
  };
  for (auto c : {Case{"accept 1.2.3.4/:*", "empty prefix length"}, Case{"accept [::1]/:*", "empty prefix length"},
                 Case{"accept 1.2.3.4/33:*", "expected 0-32"}, Case{"accept [::1]/129:*", "expected 0-128"},
                 Case{"accept 1.2.3.4/4294967328:*", "expected 0-32"}, Case{"accept 1.2.3.4/-1:*", "prefix length"},
                 Case{"accept 1.2.3.4/+8:*", "prefix length"}, Case{"accept 1.2.3.4/8x:*", "prefix length"},
                 Case{"accept 1.2.3.4/ 8:*", "prefix length"}, Case{"accept 1.2.3.4/8/8:*", "prefix length"},
                 Case{"accept [::1]/12a:*", "prefix length"}, Case{"accept [::1]x:*", "junk after ']'"},
                 Case{"accept [::1]8:*", "junk after ']'"}, Case{"accept []:*", "'' is not an IPv6 address"},
                 Case{"accept [1.2.3.4]:*", "not an IPv6 address"}, Case{"accept 1.2.3.4.5/8:*", "not an address"},
                 Case{"accept /8:*", "not an address"}, Case{"accept ::/0:*", "brackets"},
                 Case{"accept6 10.0.0.0/8:*", "accept6/reject6 take IPv6 addresses"},
                 Case{"accept6 *4:*", "accept6/reject6 take IPv6 addresses"}}) {
    auto p = ExitPolicy::parse(c.text);
    REQUIRE_MESSAGE(!p, c.text);
    CHECK_MESSAGE(p.error().find(c.says) != std::string::npos, c.text, " -> ", p.error());
  }
}

TEST_CASE("exit policy: may_allow_port, is_exit and summary") {
  auto web = ExitPolicy::parse("accept *:80, accept *:443, reject *:*");
  REQUIRE(web);
  CHECK(web->may_allow_port(80));
  CHECK(web->may_allow_port(443));
  CHECK_FALSE(web->may_allow_port(22));
  CHECK(web->is_exit());
  CHECK(web->summary() == "accept 80,443");

  auto most = ExitPolicy::parse("reject *:25, reject *:6660-6670, accept *:*");
  REQUIRE(most);
  CHECK(most->summary() == "reject 25,6660-6670");
  CHECK_FALSE(most->may_allow_port(25));
  CHECK(most->may_allow_port(26));

  CHECK_FALSE(ExitPolicy::reject_all().is_exit());
  CHECK(ExitPolicy::reject_all().summary() == "reject 1-65535");
  CHECK(ExitPolicy::default_exit().summary() == "accept 1-65535");
  CHECK(ExitPolicy::default_exit().to_string() == "reject private:*, accept *:*");

  // Exits to one host or to private addresses only are not general exits.
  auto one_host = ExitPolicy::parse("accept 93.184.216.34:80, reject *:*");
  REQUIRE(one_host);
  CHECK_FALSE(one_host->is_exit());
  CHECK_FALSE(one_host->may_allow_port(80));
  CHECK(one_host->accepts_any_destination());
  auto lo_only = ExitPolicy::parse("accept 127.0.0.0/8:*, reject *:*");
  REQUIRE(lo_only);
  CHECK_FALSE(lo_only->is_exit());
  CHECK(lo_only->accepts_any_destination());
  CHECK_FALSE(ExitPolicy::reject_all().accepts_any_destination());
  auto v6 = ExitPolicy::parse("reject *4:*, accept *6:443");
  REQUIRE(v6);
  CHECK(v6->may_allow_port(443));
  CHECK(v6->summary() == "accept 443");
}

TEST_CASE("exit policy: the loopback test exit") {
  auto p = ExitPolicy::loopback_test_exit();
  CHECK(p.allows("127.0.0.1", 8080));
  CHECK(p.allows("127.255.0.9", 1));
  CHECK(p.allows("::1", 65535));
  CHECK(p.allows("::ffff:127.0.0.1", 80));
  CHECK_FALSE(p.allows("10.0.0.1", 80));
  CHECK_FALSE(p.allows("192.168.1.1", 80));
  CHECK_FALSE(p.allows("fd00::1", 80));
  CHECK(p.allows("8.8.8.8", 80));
  CHECK(p.is_exit());
  auto again = ExitPolicy::parse(p.to_string());
  REQUIRE(again);
  CHECK(again->to_string() == p.to_string());
  CHECK(p.to_string() == "accept 127.0.0.0/8:*, accept [::1]:*, reject private:*, accept *:*");
}

TEST_CASE("is_private_address") {
  CHECK(is_private_address("127.0.0.1"));
  CHECK(is_private_address("10.255.255.255"));
  CHECK(is_private_address("172.31.0.1"));
  CHECK_FALSE(is_private_address("172.32.0.1"));
  CHECK(is_private_address("100.127.255.255"));
  CHECK_FALSE(is_private_address("100.128.0.0"));
  CHECK(is_private_address("255.255.255.255"));
  CHECK(is_private_address("fe80::1"));
  CHECK(is_private_address("fc00::1"));
  CHECK(is_private_address("ff02::1"));
  CHECK(is_private_address("::ffff:192.168.0.1"));
  CHECK_FALSE(is_private_address("2606:4700::1111"));
  CHECK_FALSE(is_private_address("8.8.4.4"));
  CHECK_FALSE(is_private_address("example.com"));
}
