// The proxy in a whole network: a directory, relays and the proxy in-process on one loop, driven by
// real clients (curl, python3) and by raw SOCKS bytes.
#include <doctest/doctest.h>

#include <fstream>
#include <set>

#include "common/dir/exit_policy.hpp"
#include "common/socks/isolation.hpp"
#include "tests/proxy/proxy_test_support.hpp"

using namespace thor;
using namespace thor::proxy;
using namespace thor::proxy::test;

namespace {

constexpr std::uint8_t kConnect = 0x01, kBind = 0x02, kUdp = 0x03, kResolve = 0xF0, kResolvePtr = 0xF1;

void write_file(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

Bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The length of a complete SOCKS5 reply at the start of b, or 0 when it is not all there.
std::size_t socks5_reply_length(const Bytes& b) {
  if (b.size() < 5) return 0;
  std::size_t n = 0;
  switch (b[3]) {
    case 0x01: n = 10; break;
    case 0x04: n = 22; break;
    case 0x03: n = 7 + static_cast<std::size_t>(b[4]); break;
    default: return b.size();  // malformed: let the caller look at it
  }
  return b.size() >= n ? n : 0;
}

NetworkOptions relays(int n, std::function<void(ProxyConfig&)> proxy = {},
                      std::function<void(int, relay::RelayConfig&)> relay = {}) {
  NetworkOptions o;
  o.relays = n;
  o.customize_proxy = std::move(proxy);
  o.customize_relay = std::move(relay);
  return o;
}

struct SocksOutcome {
  int reply = -1;        // the SOCKS5 reply code; -1 when the proxy closed before replying
  Bytes reply_bytes;     // the whole reply
};

// Greeting (with username/password when user is set), then the request, all sent at once (the
// proxy must cope with a pipelining client). Leaves what follows the reply in c.received().
SocksOutcome socks5(TestLoop& loop, RawClient& c, std::uint8_t cmd, const std::string& host, std::uint16_t port,
                    const std::optional<std::pair<std::string, std::string>>& auth = std::nullopt,
                    std::uint64_t limit_ms = 20'000) {
  Bytes out = auth ? socks5_greeting_userpass() : socks5_greeting_noauth();
  if (auth) {
    Bytes a = socks5_auth(auth->first, auth->second);
    out.insert(out.end(), a.begin(), a.end());
  }
  Bytes r = socks5_request(cmd, host, port);
  out.insert(out.end(), r.begin(), r.end());
  c.send(ByteView(out));
  const std::size_t pre = auth ? 4 : 2;
  SocksOutcome o;
  loop.run_until(
      [&] {
        if (c.received().size() > pre && socks5_reply_length(Bytes(c.received().begin() + pre, c.received().end())))
          return true;
        return c.closed();
      },
      limit_ms);
  if (c.received().size() <= pre) return o;
  Bytes rest(c.received().begin() + static_cast<std::ptrdiff_t>(pre), c.received().end());
  const std::size_t n = socks5_reply_length(rest);
  if (n == 0) return o;
  o.reply = rest[1];
  o.reply_bytes.assign(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(n));
  c.drop(pre + n);  // keep whatever came after the reply
  return o;
}

std::string http_get(const std::string& host, std::uint16_t port, const std::string& path = "/") {
  return "GET " + path + " HTTP/1.0\r\nHost: " + host + ":" + std::to_string(port) + "\r\n\r\n";
}

// The body of a complete HTTP/1.0 response, or nullopt.
std::optional<Bytes> http_body(const Bytes& response) {
  static const std::string sep = "\r\n\r\n";
  auto it = std::search(response.begin(), response.end(), sep.begin(), sep.end());
  if (it == response.end()) return std::nullopt;
  return Bytes(it + 4, response.end());
}

bool wait_ready(TestLoop& loop, Network& net, std::uint64_t limit_ms = 10'000) {
  return loop.run_until([&] { return net.proxy().ready(); }, limit_ms);
}

std::string curl_socks(const std::string& flag, std::uint16_t socks_port, const std::string& url,
                       const std::string& out_path, TestLoop& loop, const std::string& user = "") {
  std::vector<std::string> argv{"curl", "-sS", "--max-time", "30", "-o", out_path, "-w", "%{http_code}"};
  if (flag == "--proxy") {
    argv.push_back("--proxy");
    argv.push_back("socks5h://" + (user.empty() ? "" : user + "@") + "127.0.0.1:" + std::to_string(socks_port));
  } else {
    argv.push_back(flag);
    argv.push_back("127.0.0.1:" + std::to_string(socks_port));
  }
  argv.push_back(url);
  ChildResult r = run_child(loop, argv, 40'000);
  if (!r.exited || r.exit_code != 0) return "curl failed: exit " + std::to_string(r.exit_code) + " " + r.out;
  return r.out;
}

}  // namespace

TEST_CASE("curl through the proxy: hostname and IP targets, a few megabytes with their SHA-256") {
  if (!have_program("curl") || !have_program("sha256sum")) {
    MESSAGE("curl or sha256sum not installed: skipped");
    return;
  }
  TestLoop loop;
  Network net(loop, relays(4));
  const Bytes body = test_body(3 * 1024 * 1024 + 17, 1);
  FileServer files(loop.get(), body);
  const std::string expected_path = temp_path("expected");
  write_file(expected_path, body);
  const std::string expected = sha256_hex_of_file(expected_path);
  REQUIRE(expected.size() == 64);
  REQUIRE(wait_ready(loop, net));

  const std::string port = std::to_string(files.port());
  struct Case {
    const char* flag;
    std::string url;
  };
  const std::vector<Case> cases{
      {"--socks5-hostname", "http://localhost:" + port + "/file"},  // the exit resolves the name
      {"--socks5-hostname", "http://127.0.0.1:" + port + "/file"},  // an IPv4 target
      {"--socks5", "http://localhost:" + port + "/file"},           // curl resolves, sends the IP
      {"--proxy", "http://localhost:" + port + "/file"},            // socks5h:// URL form
  };
  for (const auto& c : cases) {
    CAPTURE(c.flag);
    CAPTURE(c.url);
    const std::string out_path = temp_path("out");
    std::remove(out_path.c_str());
    CHECK(curl_socks(c.flag, net.socks_port(), c.url, out_path, loop) == "200");
    CHECK(sha256_hex_of_file(out_path) == expected);
    std::remove(out_path.c_str());
  }
  std::remove(expected_path.c_str());
  CHECK(files.requests() == cases.size());
  const ProxyStats s = net.proxy().stats();
  CHECK(s.counters.requests_succeeded == cases.size());
  CHECK(s.counters.bytes_from_network >= cases.size() * body.size());
  // Requests without credentials share one isolation key, so they shared circuits.
  CHECK(s.circuits_per_isolation_key.size() == 1);
  CHECK(s.circuits_per_isolation_key.count("") == 1);
}

TEST_CASE("python's standard library drives a SOCKS5 handshake, with the HTTP request sent early") {
  if (!have_program("python3")) {
    MESSAGE("python3 not installed: skipped");
    return;
  }
  TestLoop loop;
  Network net(loop, relays(3));
  const Bytes body = test_body(1024 * 1024, 2);
  FileServer files(loop.get(), body);
  const std::string expected_path = temp_path("py-expected");
  write_file(expected_path, body);
  const std::string expected = sha256_hex_of_file(expected_path);
  std::remove(expected_path.c_str());
  REQUIRE(wait_ready(loop, net));

  // Greeting, CONNECT and the HTTP request in one write: the request is early data for the proxy.
  const std::string script = R"PY(
import hashlib, socket, struct, sys
proxy, target_port, expected = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", proxy), timeout=20)
host = b"localhost"
req = b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack(">H", target_port)
req += b"GET /file HTTP/1.0\r\nHost: localhost\r\n\r\n"
s.sendall(req)
def read_exact(n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            sys.exit("connection closed during the handshake")
        b += chunk
    return b
method = read_exact(2)
if method != b"\x05\x00":
    sys.exit("method reply %r" % method)
head = read_exact(4)
if head[1] != 0:
    sys.exit("SOCKS reply %d" % head[1])
read_exact({1: 4, 4: 16}[head[3]] + 2)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
body = data.split(b"\r\n\r\n", 1)[1]
digest = hashlib.sha256(body).hexdigest()
print(digest == expected and "ok" or "sha256 mismatch: " + digest)
)PY";
  ChildResult r = run_child(loop, {"python3", "-c", script, std::to_string(net.socks_port()),
                                   std::to_string(files.port()), expected});
  CHECK(r.exited);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "ok\n");
}

TEST_CASE("different credentials never share a circuit; the same credentials do") {
  TestLoop loop;
  Network net(loop, relays(4));
  EchoServer echo(loop.get());
  REQUIRE(wait_ready(loop, net));

  auto open = [&](const std::string& user, const std::string& pass) {
    auto c = std::make_unique<RawClient>(loop.get(), net.socks_port());
    auto o = socks5(loop, *c, kConnect, "127.0.0.1", echo.port(), std::make_pair(user, pass));
    REQUIRE(o.reply == 0);
    return c;
  };
  auto alice1 = open("alice", "pw");
  auto bob = open("bob", "pw");
  auto alice2 = open("alice", "pw");
  auto none = std::make_unique<RawClient>(loop.get(), net.socks_port());
  REQUIRE(socks5(loop, *none, kConnect, "127.0.0.1", echo.port()).reply == 0);

  // Each stream works.
  for (auto* c : {alice1.get(), bob.get(), alice2.get(), none.get()}) {
    c->send("ping");
    REQUIRE(loop.run_until([&] { return c->received_text() == "ping"; }));
  }

  const auto circuits = net.proxy().circuits();
  std::map<std::string, std::set<circuit::CircuitRef>> by_key;
  for (const auto& c : circuits)
    if (c.isolation_key && c.streams > 0) by_key[*c.isolation_key].insert(c.ref);
  REQUIRE(by_key.size() == 3);  // alice, bob, no credentials
  std::set<circuit::CircuitRef> all;
  std::size_t total = 0;
  for (const auto& [key, refs] : by_key) {
    total += refs.size();
    all.insert(refs.begin(), refs.end());
  }
  CHECK(all.size() == total);  // no circuit appears under two keys
  // Both of alice's streams went to her one circuit.
  const std::string alice_key = socks::isolation_key("alice", "pw");
  REQUIRE(by_key.count(alice_key) == 1);
  CHECK(by_key[alice_key].size() == 1);
  for (const auto& c : circuits)
    if (c.isolation_key == alice_key) CHECK(c.streams == 2);
  const ProxyStats s = net.proxy().stats();
  CHECK(s.circuits_per_isolation_key.size() == 3);
  CHECK(s.streams_open == 4);
}

TEST_CASE("SOCKS errors: refused port, unknown name, exit policy, BIND, UDP, garbage, a stalled client") {
  TestLoop loop;
  Network net(loop, relays(3, [](ProxyConfig& c) { c.handshake_timeout_ms = 500; }));
  FileServer files(loop.get(), test_body(1000, 3));
  REQUIRE(wait_ready(loop, net));

  // A port where nothing listens: bind one, note it, close it.
  std::uint16_t closed_port = 0;
  {
    uv::TcpListener l(loop.get());
    REQUIRE(l.listen({"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {}));
    closed_port = l.bound_port();
  }
  loop.run_for(10);

  SUBCASE("connection refused: 0x05") {
    RawClient c(loop.get(), net.socks_port());
    CHECK(socks5(loop, c, kConnect, "127.0.0.1", closed_port).reply == 0x05);
    CHECK(loop.run_until([&] { return c.closed(); }));
  }
  SUBCASE("a name that does not resolve: 0x04") {
    RawClient c(loop.get(), net.socks_port());
    CHECK(socks5(loop, c, kConnect, "nonexistent.invalid", 80).reply == 0x04);
  }
  SUBCASE("a destination no exit allows: 0x02, at once") {
    RawClient c(loop.get(), net.socks_port());
    CHECK(socks5(loop, c, kConnect, "10.1.2.3", 80, std::nullopt, 2000).reply == 0x02);
  }
  SUBCASE("BIND and UDP ASSOCIATE: 0x07") {
    RawClient c(loop.get(), net.socks_port());
    CHECK(socks5(loop, c, kBind, "127.0.0.1", 80).reply == 0x07);
    RawClient u(loop.get(), net.socks_port());
    CHECK(socks5(loop, u, kUdp, "127.0.0.1", 80).reply == 0x07);
  }
  SUBCASE("an unknown address type: 0x08") {
    RawClient c(loop.get(), net.socks_port());
    c.send(ByteView(Bytes{0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x07, 1, 2, 3, 4, 0, 80}));
    REQUIRE(loop.run_until([&] { return c.received().size() >= 12 || c.closed(); }));
    REQUIRE(c.received().size() >= 4);
    CHECK(c.received()[3] == 0x08);
    CHECK(loop.run_until([&] { return c.closed(); }));
  }
  SUBCASE("garbage is closed, HTTP on the SOCKS port gets an explanation; others are served meanwhile") {
    RawClient garbage(loop.get(), net.socks_port());
    garbage.send(ByteView(test_body(3000, 9)));
    RawClient http(loop.get(), net.socks_port());
    http.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    RawClient truncated(loop.get(), net.socks_port());
    // A SOCKS5 greeting that announces 255 methods and sends 3: the proxy waits for the rest.
    truncated.send(ByteView(Bytes{0x05, 0xFF, 0x00, 0x01, 0x02}));
    RawClient good(loop.get(), net.socks_port());
    CHECK(socks5(loop, good, kConnect, "127.0.0.1", files.port()).reply == 0);
    good.send(http_get("127.0.0.1", files.port()));
    CHECK(loop.run_until([&] { return good.closed(); }));
    CHECK(http_body(good.received()) == test_body(1000, 3));
    CHECK(loop.run_until([&] { return garbage.closed() && http.closed(); }));
    CHECK(http.received_text().rfind("HTTP/1.", 0) == 0);
    // The truncated greeting is closed after the handshake timeout.
    CHECK(loop.run_until([&] { return truncated.closed(); }, 3000));
  }
  SUBCASE("a client that stalls mid-handshake is closed after the timeout") {
    RawClient stall(loop.get(), net.socks_port());
    stall.send(ByteView(Bytes{0x05, 0x01}));
    RawClient silent(loop.get(), net.socks_port());
    loop.run_for(200);
    CHECK_FALSE(stall.closed());
    CHECK(loop.run_until([&] { return stall.closed() && silent.closed(); }, 3000));
    CHECK(net.proxy().stats().counters.handshake_timeouts == 2);
    CHECK(net.proxy().stats().clients == 0);
  }
}

TEST_CASE("RESOLVE, RESOLVE_PTR and SOCKS4a") {
  TestLoop loop;
  Network net(loop, relays(3));
  FileServer files(loop.get(), test_body(5000, 4));
  REQUIRE(wait_ready(loop, net));

  SUBCASE("RESOLVE localhost at the exit") {
    RawClient c(loop.get(), net.socks_port());
    auto o = socks5(loop, c, kResolve, "localhost", 0);
    REQUIRE(o.reply == 0);
    if (o.reply_bytes[3] == 0x01) {
      CHECK(o.reply_bytes[4] == 127);
    } else {
      CHECK(o.reply_bytes[3] == 0x04);  // ::1
      CHECK(o.reply_bytes[19] == 1);
    }
  }
  SUBCASE("RESOLVE of a name that does not exist: 0x04") {
    RawClient c(loop.get(), net.socks_port());
    CHECK(socks5(loop, c, kResolve, "nonexistent.invalid", 0).reply == 0x04);
  }
  SUBCASE("RESOLVE_PTR 127.0.0.1 gives a hostname") {
    RawClient c(loop.get(), net.socks_port());
    auto o = socks5(loop, c, kResolvePtr, "127.0.0.1", 0);
    REQUIRE(o.reply == 0);
    CHECK(o.reply_bytes[3] == 0x03);
  }
  SUBCASE("SOCKS4a CONNECT with a hostname") {
    RawClient c(loop.get(), net.socks_port());
    Bytes req{0x04, 0x01, static_cast<std::uint8_t>(files.port() >> 8), static_cast<std::uint8_t>(files.port()), 0, 0, 0, 1};
    req.insert(req.end(), {'u', 0});
    const std::string host = "localhost";
    req.insert(req.end(), host.begin(), host.end());
    req.push_back(0);
    c.send(ByteView(req));
    REQUIRE(loop.run_until([&] { return c.received().size() >= 8 || c.closed(); }));
    REQUIRE(c.received().size() >= 8);
    CHECK(c.received()[1] == 0x5A);
    c.drop(8);
    c.send(http_get("localhost", files.port()));
    REQUIRE(loop.run_until([&] { return c.closed(); }));
    CHECK(http_body(c.received()) == test_body(5000, 4));
  }
}

TEST_CASE("HTTP CONNECT port: 200 and the tunnel, error statuses from the exit's answer, curl -p") {
  TestLoop loop;
  Network net(loop, relays(3, [](ProxyConfig& c) { c.http_connect = HostPort{"127.0.0.1", 0}; }));
  const Bytes body = test_body(200'000, 5);
  FileServer files(loop.get(), body);
  REQUIRE(wait_ready(loop, net));
  const std::uint16_t port = net.proxy().http_connect_port();
  REQUIRE(port != 0);

  // The CONNECT head and the request behind it in one write (early data).
  RawClient c(loop.get(), port);
  c.send("CONNECT localhost:" + std::to_string(files.port()) + " HTTP/1.1\r\nHost: localhost\r\n\r\n" +
         http_get("localhost", files.port()));
  REQUIRE(loop.run_until([&] { return c.closed(); }, 20'000));
  const std::string text = c.received_text();
  REQUIRE(text.rfind("HTTP/1.1 200", 0) == 0);
  const std::size_t tunnel = text.find("\r\n\r\n") + 4;
  Bytes inner(c.received().begin() + static_cast<std::ptrdiff_t>(tunnel), c.received().end());
  CHECK(http_body(inner) == body);

  RawClient refused(loop.get(), port);
  refused.send("CONNECT 10.9.8.7:80 HTTP/1.1\r\n\r\n");
  REQUIRE(loop.run_until([&] { return refused.closed(); }));
  CHECK(refused.received_text().rfind("HTTP/1.1 403", 0) == 0);

  RawClient bad(loop.get(), port);
  bad.send("GET http://example.com/ HTTP/1.1\r\n\r\n");
  REQUIRE(loop.run_until([&] { return bad.closed(); }));
  CHECK(bad.received_text().rfind("HTTP/1.1 405", 0) == 0);

  if (have_program("curl")) {
    const std::string out = temp_path("http-connect-out");
    ChildResult r = run_child(loop, {"curl", "-sS", "--max-time", "30", "-p", "-x",
                                     "http://127.0.0.1:" + std::to_string(port), "-o", out, "-w", "%{http_code}",
                                     "http://localhost:" + std::to_string(files.port()) + "/"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "200");
    CHECK(read_file(out) == body);
    std::remove(out.c_str());
  }
}

TEST_CASE("a relay stopped mid-run: its streams are closed, new requests still succeed") {
  TestLoop loop;
  Network net(loop, relays(5));
  EchoServer echo(loop.get());
  FileServer files(loop.get(), test_body(100'000, 6));
  REQUIRE(wait_ready(loop, net));

  RawClient c(loop.get(), net.socks_port());
  REQUIRE(socks5(loop, c, kConnect, "127.0.0.1", echo.port()).reply == 0);
  c.send("hello");
  REQUIRE(loop.run_until([&] { return c.received_text() == "hello"; }));

  // Stop the middle relay of the stream's circuit.
  int victim = -1;
  for (const auto& info : net.proxy().circuits())
    if (info.streams == 1) victim = net.relay_index(info.fingerprints[1]);
  REQUIRE(victim >= 0);
  net.stop_relay(victim);
  CHECK(loop.run_until([&] { return c.closed(); }, 10'000));
  CHECK(net.proxy().stats().counters.streams_cut == 1);

  // New requests, right away (the stopped relay is still in the consensus for a while).
  for (int i = 0; i < 6; ++i) {
    CAPTURE(i);
    RawClient r(loop.get(), net.socks_port());
    // A different key each time, so that fresh circuits (and paths) are needed.
    auto o = socks5(loop, r, kConnect, "127.0.0.1", files.port(), std::make_pair("user" + std::to_string(i), "x"));
    REQUIRE(o.reply == 0);
    r.send(http_get("127.0.0.1", files.port()));
    REQUIRE(loop.run_until([&] { return r.closed(); }, 15'000));
    CHECK(http_body(r.received()) == test_body(100'000, 6));
  }
  // No open circuit goes through the stopped relay.
  const std::string gone = crypto::fingerprint(net.relay(victim).identity());
  for (const auto& info : net.proxy().circuits())
    if (info.open) CHECK(std::find(info.fingerprints.begin(), info.fingerprints.end(), gone) == info.fingerprints.end());
}

TEST_CASE("an exit that refuses by policy is replaced by another, and remembered") {
  TestLoop loop;
  // relay0 exits only to public addresses; relays 1 and 2 are not exits. The ready circuits all
  // exit through relay0, which refuses "localhost" once it resolves it to 127.0.0.1.
  Network net(loop, relays(3, {}, [](int i, relay::RelayConfig& c) {
                       c.exit_policy = i == 0 ? ExitPolicy::default_exit() : ExitPolicy::reject_all();
                     }));
  FileServer files(loop.get(), test_body(1000, 7));
  REQUIRE(wait_ready(loop, net));
  for (const auto& info : net.proxy().circuits()) CHECK(info.fingerprints[2] == crypto::fingerprint(net.relay(0).identity()));
  // Now a loopback exit joins; wait until the proxy knows it.
  net.add_relay([](relay::RelayConfig& c) { c.nickname = "loopexit"; });
  REQUIRE(net.wait_for_consensus(4));
  REQUIRE(loop.run_until([&] { return net.proxy().stats().consensus_relays == 4; }, 10'000));

  for (int i = 0; i < 2; ++i) {
    RawClient c(loop.get(), net.socks_port());
    REQUIRE(socks5(loop, c, kConnect, "localhost", files.port()).reply == 0);
    c.send(http_get("localhost", files.port()));
    REQUIRE(loop.run_until([&] { return c.closed(); }));
    CHECK(http_body(c.received()) == test_body(1000, 7));
  }
  // The first request was refused by relay0 and retried once; the second went straight to the
  // loopback exit.
  CHECK(net.proxy().stats().counters.exit_retries == 1);
}

TEST_CASE("in a three-relay network, an exit that refused can still be a middle hop for the retry") {
  TestLoop loop;
  // relay0 exits only to public addresses (it refuses "localhost" once resolved), relay1 exits to
  // loopback, relay2 is no exit. After relay0 refuses, the only path left puts it in the middle.
  // Its large bandwidth makes it the exit of nearly every ready circuit, so the first request
  // meets the refusal.
  Network net(loop, relays(3, {}, [](int i, relay::RelayConfig& c) {
                       c.bandwidth = i == 0 ? 1'000'000'000 : 1000;
                       if (i == 0) c.exit_policy = ExitPolicy::default_exit();
                       if (i == 1) c.exit_policy = *ExitPolicy::parse("accept 127.0.0.0/8:*, reject *:*");
                       if (i == 2) c.exit_policy = ExitPolicy::reject_all();
                     }));
  FileServer files(loop.get(), test_body(1000, 9));
  REQUIRE(wait_ready(loop, net));
  for (int i = 0; i < 6; ++i) {
    CAPTURE(i);
    RawClient c(loop.get(), net.socks_port());
    REQUIRE(socks5(loop, c, kConnect, "localhost", files.port()).reply == 0);
    c.send(http_get("localhost", files.port()));
    REQUIRE(loop.run_until([&] { return c.closed(); }));
    CHECK(http_body(c.received()) == test_body(1000, 9));
  }
  // At most the first request met relay0 as its exit; the refusal is remembered for the rest.
  CHECK(net.proxy().stats().counters.exit_retries <= 1);
}

TEST_CASE("dirty circuits take no new streams and are closed once idle") {
  TestLoop loop;
  Network net(loop, relays(3, [](ProxyConfig& c) { c.circuit_dirtiness_ms = 300; }));
  EchoServer echo(loop.get());
  REQUIRE(wait_ready(loop, net));

  RawClient a(loop.get(), net.socks_port());
  REQUIRE(socks5(loop, a, kConnect, "127.0.0.1", echo.port()).reply == 0);
  const circuit::CircuitRef first = [&] {
    for (const auto& i : net.proxy().circuits())
      if (i.streams == 1) return i.ref;
    return circuit::CircuitRef{0};
  }();
  REQUIRE(first != 0);
  loop.run_for(400);
  // Past its dirtiness: a new stream goes elsewhere while the old stream keeps working.
  RawClient b(loop.get(), net.socks_port());
  REQUIRE(socks5(loop, b, kConnect, "127.0.0.1", echo.port()).reply == 0);
  for (const auto& i : net.proxy().circuits()) {
    if (i.ref == first) {
      CHECK(i.dirty);
      CHECK(i.streams == 1);
    }
  }
  a.send("still here");
  REQUIRE(loop.run_until([&] { return a.received_text() == "still here"; }));
  // Once its stream ends, the dirty circuit is closed.
  a.close();
  CHECK(loop.run_until(
      [&] {
        for (const auto& i : net.proxy().circuits())
          if (i.ref == first) return false;
        return true;
      },
      5000));
  CHECK(net.proxy().stats().circuit_counters.retired >= 1);
}

TEST_CASE("back-pressure: a client that stops reading stops the exit; nothing is lost") {
  TestLoop loop;
  Network net(loop, relays(3));
  const std::size_t size = 24 * 1024 * 1024;
  const Bytes body = test_body(size, 8);
  FileServer files(loop.get(), body);
  EchoServer echo(loop.get());
  REQUIRE(wait_ready(loop, net));

  // Download into a client that reads nothing for a while.
  RawClient c(loop.get(), net.socks_port());
  REQUIRE(socks5(loop, c, kConnect, "127.0.0.1", files.port()).reply == 0);
  c.send(http_get("127.0.0.1", files.port()));
  loop.run_until([&] { return c.received().size() > 1024 * 1024; }, 20'000);
  c.pause();
  loop.run_for(1500);
  const std::uint64_t held = net.proxy().stats().counters.bytes_from_network;
  loop.run_for(500);
  // Stalled: nothing more comes from the network once the socket buffers, the proxy's bounded
  // queue and one stream window are full.
  CHECK(net.proxy().stats().counters.bytes_from_network == held);
  CHECK(held < size / 2);
  c.resume();
  REQUIRE(loop.run_until([&] { return c.closed(); }, 60'000));
  CHECK(http_body(c.received()) == body);

  // Upload and echo: 4 MB through the circuit and back.
  RawClient e(loop.get(), net.socks_port());
  REQUIRE(socks5(loop, e, kConnect, "127.0.0.1", echo.port()).reply == 0);
  const Bytes up = test_body(4 * 1024 * 1024, 9);
  e.send(ByteView(up));
  REQUIRE(loop.run_until([&] { return e.received().size() >= up.size(); }, 60'000));
  CHECK(e.received() == up);
}

TEST_CASE("many concurrent clients share a few circuits") {
  TestLoop loop;
  Network net(loop, relays(3, [](ProxyConfig& c) { c.max_streams_per_circuit = 100; }));
  EchoServer echo(loop.get());
  REQUIRE(wait_ready(loop, net));
  constexpr int kClients = 300;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<RawClient>(loop.get(), net.socks_port()));
    Bytes out = socks5_greeting_noauth();
    Bytes r = socks5_request(kConnect, "127.0.0.1", echo.port());
    out.insert(out.end(), r.begin(), r.end());
    const std::string msg = "message " + std::to_string(i);
    out.insert(out.end(), msg.begin(), msg.end());  // early data
    clients.back()->send(ByteView(out));
  }
  // 2 (method) + 10 (reply) + the echoed message.
  REQUIRE(loop.run_until(
      [&] {
        for (int i = 0; i < kClients; ++i)
          if (clients[i]->received().size() < 12 + 8 + std::to_string(i).size()) return false;
        return true;
      },
      30'000));
  for (int i = 0; i < kClients; ++i) {
    const std::string text = clients[i]->received_text();
    CHECK(text.substr(12) == "message " + std::to_string(i));
  }
  const ProxyStats s = net.proxy().stats();
  CHECK(s.streams_open == kClients);
  CHECK(s.circuits_per_isolation_key.at("") >= 3);  // at most 100 streams each
  CHECK(s.circuits_per_isolation_key.at("") <= 8);
  clients.clear();
  CHECK(loop.run_until([&] { return net.proxy().stats().clients == 0; }));
}

TEST_CASE("requests made before the relays joined wait for them; a wrong directory key is refused") {
  TestLoop loop;
  SUBCASE("waiting for relays") {
    Network net(loop, relays(0));
    FileServer files(loop.get(), test_body(2000, 10));
    RawClient c(loop.get(), net.socks_port());
    Bytes out = socks5_greeting_noauth();
    Bytes r = socks5_request(kConnect, "127.0.0.1", files.port());
    out.insert(out.end(), r.begin(), r.end());
    c.send(ByteView(out));
    loop.run_for(300);
    CHECK(c.received().size() == 2);  // the method choice, no reply yet
    for (int i = 0; i < 3; ++i) net.add_relay();
    REQUIRE(loop.run_until([&] { return c.received().size() >= 12; }, 15'000));
    CHECK(c.received()[3] == 0x00);
  }
  SUBCASE("a consensus signed by another key") {
    Network net(loop, relays(3, [](ProxyConfig& c) {
                         c.directory_key = crypto::IdentityKey::generate(crypto::system_rng()).public_key();
                         c.request_timeout_ms = 1000;
                       }));
    RawClient c(loop.get(), net.socks_port());
    CHECK(socks5(loop, c, kConnect, "127.0.0.1", 80).reply == 0x01);
    CHECK_FALSE(net.proxy().stats().have_consensus);
    CHECK(net.proxy().stats().counters.request_timeouts == 1);
  }
}
