// Path selection over a hand-built consensus: flags, distinctness, the /16 rule and its override,
// exit policies, exclusion, bandwidth weighting (checked statistically) and the error messages.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>

#include "proxy/path_selection.hpp"

using namespace thor;
using namespace thor::proxy;

namespace {

constexpr std::uint32_t kUsable = dir::kFlagRunning | dir::kFlagValid;

ExitPolicy policy(std::string_view text) {
  auto p = ExitPolicy::parse(text);
  REQUIRE_MESSAGE(p.ok(), p.error());
  return *p;
}

dir::ConsensusRelay relay(std::string name, std::string ip, std::uint64_t bandwidth,
                          ExitPolicy exit_policy = ExitPolicy::reject_all(), std::uint32_t flags = kUsable) {
  dir::ConsensusRelay r;
  r.fingerprint = "FP-" + name;
  r.flags = flags;
  r.descriptor.nickname = name;
  r.descriptor.address = HostPort{std::move(ip), 9001};
  r.descriptor.bandwidth = bandwidth;
  r.descriptor.exit_policy = std::move(exit_policy);
  return r;
}

dir::Consensus consensus(std::vector<dir::ConsensusRelay> relays) {
  dir::Consensus c;
  c.network = "test";
  c.relays = std::move(relays);
  return c;
}

Path must(const Result<Path>& p) {
  REQUIRE_MESSAGE(p.ok(), p.error());
  return *p;
}

void check_rules(const Path& p, bool same_subnet_allowed) {
  std::set<std::string> fps{p.entry.fingerprint, p.middle.fingerprint, p.exit.fingerprint};
  CHECK(fps.size() == 3);
  if (!same_subnet_allowed) {
    std::set<std::string> nets;
    for (auto* h : p.hops()) nets.insert(subnet_of(h->descriptor.address.host));
    CHECK(nets.size() == 3);
  }
}

}  // namespace

TEST_CASE("subnet_of groups IPv4 by /16 and IPv6 by /32") {
  CHECK(subnet_of("10.1.2.3") == subnet_of("10.1.200.7"));
  CHECK(subnet_of("10.1.2.3") != subnet_of("10.2.2.3"));
  CHECK(subnet_of("2001:db8:1::1") == subnet_of("2001:db8:ffff::2"));
  CHECK(subnet_of("2001:db8::1") != subnet_of("2001:db9::1"));
  CHECK(subnet_of("10.1.2.3") != subnet_of("::a01:203"));
  CHECK(subnet_of("relay.example") == "host:relay.example");
}

TEST_CASE("three distinct relays; only Running and Valid ones") {
  auto c = consensus({
      relay("a", "10.1.0.1", 100),
      relay("b", "10.2.0.1", 100),
      relay("x", "10.3.0.1", 100, ExitPolicy::default_exit()),
      relay("down", "10.4.0.1", 100000, ExitPolicy::default_exit(), dir::kFlagValid),
      relay("invalid", "10.5.0.1", 100000, ExitPolicy::default_exit(), dir::kFlagRunning | dir::kFlagExit),
  });
  crypto::DeterministicRng rng(1);
  for (int i = 0; i < 200; ++i) {
    Path p = must(select_path(c, HostPort{"example.com", 443}, {}, rng));
    check_rules(p, false);
    CHECK(p.exit.fingerprint == "FP-x");  // the only usable exit
    for (auto* h : p.hops()) {
      CHECK(h->fingerprint != "FP-down");
      CHECK(h->fingerprint != "FP-invalid");
    }
  }
}

TEST_CASE("no two relays in one /16 unless allowed") {
  auto c = consensus({
      relay("a1", "10.1.0.1", 100, ExitPolicy::default_exit()),
      relay("a2", "10.1.9.9", 100, ExitPolicy::default_exit()),
      relay("b", "10.2.0.1", 100, ExitPolicy::default_exit()),
      relay("c", "10.3.0.1", 100, ExitPolicy::default_exit()),
  });
  crypto::DeterministicRng rng(2);
  std::set<std::string> used;
  for (int i = 0; i < 300; ++i) {
    Path p = must(select_path(c, std::nullopt, {}, rng));
    check_rules(p, false);
    for (auto* h : p.hops()) used.insert(h->fingerprint);
  }
  CHECK(used.size() == 4);  // a1 and a2 both appear, never together

  SUBCASE("two subnets are not enough") {
    auto two = consensus({relay("a1", "10.1.0.1", 100, ExitPolicy::default_exit()),
                          relay("a2", "10.1.0.2", 100, ExitPolicy::default_exit()),
                          relay("b", "10.2.0.1", 100, ExitPolicy::default_exit())});
    auto r = select_path(two, std::nullopt, {}, rng);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().find("need 3 relays in distinct /16s") != std::string::npos);
    CHECK(r.error().find("consensus has 2") != std::string::npos);

    PathOptions loopback;
    loopback.allow_same_subnet = true;
    check_rules(must(select_path(two, std::nullopt, loopback, rng)), true);
  }
  SUBCASE("a loopback network: everything on 127.0.0.1") {
    auto lo = consensus({relay("r1", "127.0.0.1", 0, ExitPolicy::loopback_test_exit()),
                         relay("r2", "127.0.0.1", 0, ExitPolicy::loopback_test_exit()),
                         relay("r3", "127.0.0.1", 0, ExitPolicy::loopback_test_exit())});
    CHECK_FALSE(select_path(lo, HostPort{"127.0.0.1", 8080}, {}, rng).ok());
    PathOptions opt;
    opt.allow_same_subnet = true;
    Path p = must(select_path(lo, HostPort{"127.0.0.1", 8080}, opt, rng));
    check_rules(p, true);
    CHECK(must(select_path(lo, HostPort{"localhost", 8080}, opt, rng)).exit.descriptor.exit_policy.may_allow_port(8080));
  }
  SUBCASE("IPv6 relays are grouped by /32") {
    auto v6 = consensus({relay("a", "2001:db8:1::1", 100, ExitPolicy::default_exit()),
                         relay("b", "2001:db8:2::1", 100, ExitPolicy::default_exit()),
                         relay("c", "10.9.0.1", 100, ExitPolicy::default_exit())});
    auto r = select_path(v6, std::nullopt, {}, rng);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().find("consensus has 2") != std::string::npos);
  }
  SUBCASE("fewer than three relays even with the override") {
    PathOptions opt;
    opt.allow_same_subnet = true;
    auto r = select_path(consensus({relay("a", "127.0.0.1", 1, ExitPolicy::default_exit()),
                                    relay("b", "127.0.0.1", 1)}),
                         std::nullopt, opt, rng);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "need 3 distinct relays, consensus has 2 running and valid");
  }
}

TEST_CASE("exclude_exits keeps a refusing exit out of the exit position only") {
  // Three exits, as in `thor up --relays 3`: after one refuses, a path needs the other two exits as
  // the exit and the refusing one as an entry or middle.
  auto c = consensus({
      relay("a", "10.1.0.1", 100, ExitPolicy::default_exit()),
      relay("b", "10.2.0.1", 100, ExitPolicy::default_exit()),
      relay("c", "10.3.0.1", 100, ExitPolicy::default_exit()),
  });
  crypto::DeterministicRng rng(11);
  PathOptions refused;
  refused.exclude_exits = {"FP-a"};
  bool a_used_inside = false;
  for (int i = 0; i < 100; ++i) {
    Path p = must(select_path(c, HostPort{"example.com", 443}, refused, rng));
    CHECK(p.exit.fingerprint != "FP-a");
    check_rules(p, false);
    a_used_inside = a_used_inside || p.entry.fingerprint == "FP-a" || p.middle.fingerprint == "FP-a";
  }
  CHECK(a_used_inside);  // with three relays it must be: the path needs all of them

  PathOptions excluded;  // the same relay excluded entirely leaves too few relays
  excluded.exclude = {"FP-a"};
  auto r = select_path(c, HostPort{"example.com", 443}, excluded, rng);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("1 excluded after failures") != std::string::npos);

  PathOptions all_refused;
  all_refused.exclude_exits = {"FP-a", "FP-b", "FP-c"};
  auto none = select_path(c, HostPort{"example.com", 443}, all_refused, rng);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error() == "no exit allows port 443 (3 not usable as the exit: they refused it)");
}

TEST_CASE("the exit's policy must allow the target") {
  auto c = consensus({
      relay("web", "10.1.0.1", 100, policy("accept *:80, accept *:443, reject *:*")),
      relay("ssh", "10.2.0.1", 100, policy("accept *:22, reject *:*")),
      relay("mid1", "10.3.0.1", 100),
      relay("mid2", "10.4.0.1", 100),
  });
  crypto::DeterministicRng rng(3);
  for (int i = 0; i < 100; ++i) {
    CHECK(must(select_path(c, HostPort{"example.com", 443}, {}, rng)).exit.fingerprint == "FP-web");
    CHECK(must(select_path(c, HostPort{"example.com", 22}, {}, rng)).exit.fingerprint == "FP-ssh");
    CHECK(must(select_path(c, HostPort{"93.184.216.34", 80}, {}, rng)).exit.fingerprint == "FP-web");
  }
  auto smtp = select_path(c, HostPort{"mail.example", 25}, {}, rng);
  REQUIRE_FALSE(smtp.ok());
  CHECK(smtp.error() == "no exit allows port 25");

  SUBCASE("IP literals are checked against the whole policy, private ranges included") {
    auto d = consensus({relay("exit", "10.1.0.1", 100, ExitPolicy::default_exit()), relay("m1", "10.2.0.1", 100),
                        relay("m2", "10.3.0.1", 100)});
    auto priv = select_path(d, HostPort{"192.168.1.1", 80}, {}, rng);
    REQUIRE_FALSE(priv.ok());
    CHECK(priv.error() == "no exit allows this address on port 80");
    CHECK(must(select_path(d, HostPort{"2a00:1450:4001::80", 80}, {}, rng)).exit.fingerprint == "FP-exit");
  }
  SUBCASE("a hostname may go to an exit that accepts the port only for some addresses") {
    auto d = consensus({relay("lo", "10.1.0.1", 100, policy("accept 127.0.0.0/8:*, reject *:*")),
                        relay("m1", "10.2.0.1", 100), relay("m2", "10.3.0.1", 100)});
    CHECK(must(select_path(d, HostPort{"localhost", 8080}, {}, rng)).exit.fingerprint == "FP-lo");
    CHECK(exit_allows(d.relays[0], HostPort{"localhost", 8080}));
    CHECK(exit_allows(d.relays[0], HostPort{"127.0.0.1", 8080}));
    CHECK_FALSE(exit_allows(d.relays[0], HostPort{"8.8.8.8", 53}));
    CHECK_FALSE(exit_allows(d.relays[1], HostPort{"localhost", 8080}));
    // ... but an exit that may reach public addresses on that port is preferred.
    d.relays.push_back(relay("pub", "10.4.0.1", 100, ExitPolicy::default_exit()));
    for (int i = 0; i < 50; ++i)
      CHECK(must(select_path(d, HostPort{"localhost", 8080}, {}, rng)).exit.fingerprint == "FP-pub");
  }
}

TEST_CASE("circuits built ahead of time prefer exits for ports 80 and 443") {
  auto c = consensus({
      relay("ssh", "10.1.0.1", 1000000, policy("accept *:22, reject *:*")),
      relay("web", "10.2.0.1", 1, policy("accept *:443, reject *:*")),
      relay("m1", "10.3.0.1", 100),
      relay("m2", "10.4.0.1", 100),
  });
  crypto::DeterministicRng rng(4);
  for (int i = 0; i < 50; ++i) CHECK(must(select_path(c, std::nullopt, {}, rng)).exit.fingerprint == "FP-web");
  c.relays.erase(c.relays.begin() + 1);
  c.relays.push_back(relay("m3", "10.5.0.1", 100));
  for (int i = 0; i < 20; ++i) CHECK(must(select_path(c, std::nullopt, {}, rng)).exit.fingerprint == "FP-ssh");
  c.relays.erase(c.relays.begin());
  auto none = select_path(c, std::nullopt, {}, rng);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error() == "no relay in the consensus is an exit");
}

TEST_CASE("excluded relays are never chosen, and the error says so") {
  auto c = consensus({
      relay("x1", "10.1.0.1", 100, ExitPolicy::default_exit()),
      relay("x2", "10.2.0.1", 100, ExitPolicy::default_exit()),
      relay("m1", "10.3.0.1", 100),
      relay("m2", "10.4.0.1", 100),
      relay("m3", "10.5.0.1", 100),
  });
  crypto::DeterministicRng rng(5);
  PathOptions opt;
  opt.exclude = {"FP-x1", "FP-m1"};
  for (int i = 0; i < 100; ++i) {
    Path p = must(select_path(c, HostPort{"example.com", 443}, opt, rng));
    CHECK(p.exit.fingerprint == "FP-x2");
    for (auto* h : p.hops()) {
      CHECK(h->fingerprint != "FP-x1");
      CHECK(h->fingerprint != "FP-m1");
    }
  }
  opt.exclude = {"FP-x1", "FP-x2"};
  auto r = select_path(c, HostPort{"example.com", 443}, opt, rng);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == "no exit allows port 443 (2 excluded after failures)");
}

TEST_CASE("empty or unusable consensus") {
  crypto::DeterministicRng rng(6);
  auto empty = select_path(consensus({}), std::nullopt, {}, rng);
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error() == "consensus has no running and valid relays");
  auto down = select_path(consensus({relay("a", "10.1.0.1", 1, ExitPolicy::default_exit(), dir::kFlagValid)}),
                          std::nullopt, {}, rng);
  REQUIRE_FALSE(down.ok());
  CHECK(down.error() == "consensus has no running and valid relays");
}

TEST_CASE("a relay listed twice counts once") {
  auto c = consensus({relay("a", "10.1.0.1", 100, ExitPolicy::default_exit()),
                      relay("a", "10.2.0.1", 100, ExitPolicy::default_exit()),
                      relay("b", "10.3.0.1", 100, ExitPolicy::default_exit())});
  crypto::DeterministicRng rng(7);
  PathOptions opt;
  opt.allow_same_subnet = true;
  auto r = select_path(c, std::nullopt, opt, rng);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == "need 3 distinct relays, consensus has 2 running and valid");
}

TEST_CASE("hops are chosen in proportion to bandwidth, with a floor for zero") {
  // Four exits in distinct /16s with bandwidths 1:2:3:4, and one relay advertising nothing.
  // Floor = mean / 10 = (10000 / 5) / 10 = 200, so the weights are 1000:2000:3000:4000:200.
  auto c = consensus({
      relay("w1", "10.1.0.1", 1000, ExitPolicy::default_exit()),
      relay("w2", "10.2.0.1", 2000, ExitPolicy::default_exit()),
      relay("w3", "10.3.0.1", 3000, ExitPolicy::default_exit()),
      relay("w4", "10.4.0.1", 4000, ExitPolicy::default_exit()),
      relay("zero", "10.5.0.1", 0, ExitPolicy::default_exit()),
  });
  crypto::DeterministicRng rng(8);
  std::map<std::string, int> exits;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++exits[must(select_path(c, HostPort{"example.com", 443}, {}, rng)).exit.fingerprint];
  const double total = 10200;
  for (auto [name, weight] : std::map<std::string, double>{
           {"FP-w1", 1000}, {"FP-w2", 2000}, {"FP-w3", 3000}, {"FP-w4", 4000}, {"FP-zero", 200}}) {
    CAPTURE(name);
    double expected = weight / total;
    double seen = static_cast<double>(exits[name]) / n;
    CAPTURE(seen);
    CHECK(seen == doctest::Approx(expected).epsilon(0.1));  // within 10% of the expected share
  }
  CHECK(exits["FP-zero"] > 0);
  CHECK(exits["FP-w4"] > exits["FP-w3"]);
  CHECK(exits["FP-w3"] > exits["FP-w2"]);
  CHECK(exits["FP-w2"] > exits["FP-w1"]);
}

TEST_CASE("the same seed gives the same path") {
  auto c = consensus({relay("a", "10.1.0.1", 10, ExitPolicy::default_exit()),
                      relay("b", "10.2.0.1", 20, ExitPolicy::default_exit()),
                      relay("c", "10.3.0.1", 30, ExitPolicy::default_exit()),
                      relay("d", "10.4.0.1", 40, ExitPolicy::default_exit())});
  crypto::DeterministicRng r1(9), r2(9);
  for (int i = 0; i < 20; ++i) {
    Path a = must(select_path(c, std::nullopt, {}, r1));
    Path b = must(select_path(c, std::nullopt, {}, r2));
    CHECK(a.entry.fingerprint == b.entry.fingerprint);
    CHECK(a.middle.fingerprint == b.middle.fingerprint);
    CHECK(a.exit.fingerprint == b.exit.fingerprint);
  }
}
