// The proxy's small sans-IO parts: which relays to avoid after failures, reverse lookup names,
// loopback addresses.
#include <doctest/doctest.h>

#include "proxy/proxy_server.hpp"
#include "proxy/relay_health.hpp"
#include "proxy/reverse_name.hpp"

using namespace thor;
using namespace thor::proxy;

TEST_CASE("relay health: a failed build excludes its relays, a success clears them, counts expire") {
  RelayHealth h(1000);
  CHECK(h.exclusion_tiers(0) == std::vector<std::vector<std::string>>{{}});
  h.build_failed({"A", "B", "C"}, false, 100);
  CHECK(h.suspects(100) == std::map<std::string, int>{{"A", 1}, {"B", 1}, {"C", 1}});
  h.build_failed({"A", "D", "E"}, false, 200);
  // Strictest first: everyone who failed, then one fewer each time, the least suspect first
  // dropped (fewest failures, then the oldest failure): A (2), D, E (1, at 200), B, C (1, at 100).
  auto tiers = h.exclusion_tiers(200);
  REQUIRE(tiers.size() == 6);
  CHECK(tiers[0] == std::vector<std::string>{"A", "D", "E", "B", "C"});
  CHECK(tiers[1] == std::vector<std::string>{"A", "D", "E", "B"});
  CHECK(tiers[3] == std::vector<std::string>{"A", "D"});
  CHECK(tiers[4] == std::vector<std::string>{"A"});
  CHECK(tiers[5].empty());
  // A circuit through B and C was built: they are fine after all.
  h.build_succeeded({"B", "C", "X"});
  CHECK(h.suspects(300) == std::map<std::string, int>{{"A", 2}, {"D", 1}, {"E", 1}});
  // D and E failed at 200, A last at 200 too: all expire at 1200.
  CHECK(h.suspects(1199).size() == 3);
  CHECK(h.suspects(1200).empty());
  CHECK(h.exclusion_tiers(1200) == std::vector<std::vector<std::string>>{{}});
}

TEST_CASE("relay health: a failed link to the first relay blames that relay alone") {
  RelayHealth h(60'000);
  h.build_failed({"A", "B", "C"}, true, 10);
  CHECK(h.suspects(10) == std::map<std::string, int>{{"A", 1}});
}

TEST_CASE("reverse lookup names for RESOLVE_PTR") {
  CHECK(reverse_lookup_name("1.2.3.4") == "4.3.2.1.in-addr.arpa");
  CHECK(reverse_lookup_name("127.0.0.1") == "1.0.0.127.in-addr.arpa");
  CHECK(reverse_lookup_name("::1") ==
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa");
  CHECK(reverse_lookup_name("2001:db8::567:89ab") ==
        "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  CHECK_FALSE(reverse_lookup_name("example.com").has_value());
  CHECK_FALSE(reverse_lookup_name("1.2.3").has_value());
  CHECK_FALSE(reverse_lookup_name("").has_value());
}

TEST_CASE("loopback listen addresses") {
  CHECK(is_loopback_address("127.0.0.1"));
  CHECK(is_loopback_address("127.1.2.3"));
  CHECK(is_loopback_address("::1"));
  CHECK_FALSE(is_loopback_address("0.0.0.0"));
  CHECK_FALSE(is_loopback_address("::"));
  CHECK_FALSE(is_loopback_address("192.168.1.10"));
  CHECK_FALSE(is_loopback_address("localhost"));
}
