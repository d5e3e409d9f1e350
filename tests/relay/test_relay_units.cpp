// The relay's small pure helpers: advertised address choice, END reasons, reverse names, onion keys.
#include <doctest/doctest.h>

#include "common/crypto/ntor.hpp"
#include "relay/advertise.hpp"
#include "relay/end_reasons.hpp"
#include "relay/onion_key_ring.hpp"
#include "relay/reverse_lookup.hpp"
#include "tests/relay/relay_test_support.hpp"

using namespace thor;
using namespace thor::relay;

TEST_CASE("advertised address: a public IPv4 first, then a private one, then loopback") {
  CHECK(pick_advertise_ip({"127.0.0.1", "::1", "10.0.0.5", "93.184.216.34", "fe80::1"}) == "93.184.216.34");
  CHECK(pick_advertise_ip({"127.0.0.1", "192.168.1.20", "10.0.0.5"}) == "192.168.1.20");
  CHECK(pick_advertise_ip({"127.0.0.1", "169.254.3.3"}) == "127.0.0.1");
  CHECK(pick_advertise_ip({}) == "127.0.0.1");
}

TEST_CASE("advertised address from the listen address and flags") {
  auto a = resolve_advertise({"127.0.0.1", 0}, 40123, {"", 0});
  REQUIRE(a);
  CHECK(*a == HostPort{"127.0.0.1", 40123});
  a = resolve_advertise({"0.0.0.0", 9001}, 9001, {"198.51.100.7", 0});
  REQUIRE(a);
  CHECK(*a == HostPort{"198.51.100.7", 9001});
  a = resolve_advertise({"0.0.0.0", 9001}, 9001, {"198.51.100.7", 443});
  REQUIRE(a);
  CHECK(a->port == 443);
  a = resolve_advertise({"0.0.0.0", 9001}, 9001, {"", 0});
  REQUIRE(a);
  CHECK(is_ipv4_literal(a->host));
  CHECK(a->host != "0.0.0.0");
  auto bad = resolve_advertise({"0.0.0.0", 9001}, 9001, {"relay.example", 0});
  REQUIRE(!bad);
  CHECK(bad.error().find("not a numeric") != std::string::npos);
}

TEST_CASE("END reasons from connect and close errors") {
  CHECK(end_reason_for_connect_error("connect failed: connection refused (ECONNREFUSED)") == EndReason::connect_refused);
  CHECK(end_reason_for_connect_error("connect failed: connection timed out (ETIMEDOUT)") == EndReason::timeout);
  CHECK(end_reason_for_connect_error("connect failed: host is unreachable (EHOSTUNREACH)") == EndReason::no_route);
  CHECK(end_reason_for_connect_error("connect failed: network is unreachable (ENETUNREACH)") == EndReason::no_route);
  CHECK(end_reason_for_connect_error("connect failed: something else (EIO)") == EndReason::misc);
  CHECK(end_reason_for_close("") == EndReason::done);
  CHECK(end_reason_for_close("connection reset by peer (ECONNRESET)") == EndReason::conn_reset);
  CHECK(end_reason_for_close("broken pipe (EPIPE)") == EndReason::conn_reset);
  CHECK(end_reason_for_close("i/o error (EIO)") == EndReason::misc);
}

TEST_CASE("reverse names to addresses") {
  CHECK(reverse_name_to_ip("4.3.2.1.in-addr.arpa") == std::optional<std::string>("1.2.3.4"));
  CHECK(reverse_name_to_ip("4.3.2.1.IN-ADDR.ARPA.") == std::optional<std::string>("1.2.3.4"));
  CHECK(!reverse_name_to_ip("3.2.1.in-addr.arpa"));
  CHECK(!reverse_name_to_ip("300.3.2.1.in-addr.arpa"));
  CHECK(!reverse_name_to_ip("example.com"));
  std::string v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
  auto ip = reverse_name_to_ip(v6);
  REQUIRE(ip);
  CHECK(*ip == "2001:0db8:0000:0000:0000:0000:0000:0001");
  CHECK(!reverse_name_to_ip("x.0.0.ip6.arpa"));
}

TEST_CASE("onion key ring: current and previous are usable, older ones are not") {
  crypto::DeterministicRng rng(42);
  auto id = crypto::IdentityKey::generate(rng);
  OnionKeyRing ring(rng);
  auto first = ring.current();
  CHECK(ring.usable().size() == 1);
  auto handshake_with = [&](const crypto::X25519Keypair& key) {
    auto client = crypto::NtorClient::start(id.public_key(), key.public_key, rng);
    auto keys = ring.usable();
    return crypto::ntor_server_handshake(id.public_key(),
                                         std::span<const crypto::X25519Keypair* const>(keys.data(), keys.size()),
                                         client.onion_skin(), rng)
        .ok();
  };
  CHECK(handshake_with(first));
  ring.rotate(rng);
  CHECK(ring.usable().size() == 2);
  CHECK(!(ring.current().public_key == first.public_key));
  CHECK(handshake_with(first));
  CHECK(handshake_with(ring.current()));
  ring.rotate(rng);
  CHECK(!handshake_with(first));
}

TEST_CASE("relay start fails with one clear message when the port is taken") {
  relay::test::TestLoop L;
  uv::TcpListener taken(L.get());
  REQUIRE(taken.listen({"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {}));
  auto cfg = relay::test::test_relay_config();
  cfg.listen = {"127.0.0.1", taken.bound_port()};
  RelayServer r(L.get(), cfg);
  auto st = r.start();
  REQUIRE(!st);
  CHECK(st.error().find("address already in use") != std::string::npos);
}
