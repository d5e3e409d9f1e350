#include "proxy/proxy_server.hpp"

#include <arpa/inet.h>

#include <unordered_map>

#include "common/crypto/random.hpp"
#include "common/log.hpp"
#include "common/uv/tcp.hpp"
#include "proxy/consensus_keeper.hpp"
#include "proxy/path_selection.hpp"

namespace thor::proxy {

bool is_loopback_address(const std::string& host) {
  std::uint8_t a[16];
  if (inet_pton(AF_INET, host.c_str(), a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, host.c_str(), a) == 1) {
    for (int i = 0; i < 15; ++i)
      if (a[i] != 0) return false;
    return a[15] == 1;
  }
  return false;
}

struct ProxyServer::Impl {
  Impl(uv_loop_t* loop, Config cfg)
      : loop(loop),
        config(std::move(cfg)),
        client(std::make_unique<circuit::CircuitClient>(loop, client_options(config))),
        pool(loop, *client, config, crypto::system_rng()),
        keeper(loop, ConsensusKeeper::Options{config.directory, config.directory_key, config.consensus_retry_min_ms,
                                              config.consensus_retry_max_ms}),
        reaper(loop) {
    ctx.loop = loop;
    ctx.config = &config;
    ctx.client = client.get();
    ctx.pool = &pool;
    ctx.counters = &counters;
    ctx.finished = [this](std::uint64_t id) { retire(id); };
  }

  static circuit::CircuitClientOptions client_options(const Config& c) {
    circuit::CircuitClientOptions o;
    o.build_timeout_ms = c.circuit_build_timeout_ms;
    o.link_handshake_timeout_ms = c.circuit_build_timeout_ms;
    return o;
  }

  uv_loop_t* loop;
  Config config;
  ProxyCounters counters;
  // Destroyed by stop(), after the pool: that closes the links, whose idle timers would otherwise
  // keep the loop alive.
  std::unique_ptr<circuit::CircuitClient> client;
  CircuitPool pool;
  ConsensusKeeper keeper;
  SessionContext ctx;
  std::unique_ptr<uv::TcpListener> socks_listener, http_listener;
  std::unordered_map<std::uint64_t, std::unique_ptr<ClientSession>> sessions;
  std::vector<std::unique_ptr<ClientSession>> graveyard;  // finished inside their own callbacks
  uv::Timer reaper;
  std::uint64_t next_id = 1;
  std::uint64_t last_refusal_log_ms = 0;
  bool running = false;

  Status listen(std::unique_ptr<uv::TcpListener>& listener, const HostPort& where, ClientSession::Protocol p) {
    listener = std::make_unique<uv::TcpListener>(loop);
    auto st = listener->listen(where, [this, p](std::unique_ptr<uv::TcpConnection> conn) { accept(std::move(conn), p); });
    if (!st) {
      listener.reset();
      return st;
    }
    if (!is_loopback_address(where.host))
      LOG_WARN("listening on " << where.to_string() << ", which is not a loopback address: anyone who can reach it "
                               << "can use this proxy and see which sites you visit through it");
    return {};
  }

  void accept(std::unique_ptr<uv::TcpConnection> conn, ClientSession::Protocol p) {
    if (!running) return;
    if (sessions.size() >= config.max_clients) {
      ++counters.clients_refused;
      uv_update_time(loop);
      const std::uint64_t now = uv_now(loop);
      if (last_refusal_log_ms == 0 || now - last_refusal_log_ms > 10'000) {
        LOG_WARN("refusing client connections: " << config.max_clients << " are open (max_clients)");
        last_refusal_log_ms = now;
      }
      conn->close();
      return;
    }
    ++counters.clients_accepted;
    const std::uint64_t id = next_id++;
    auto session = std::make_unique<ClientSession>(ctx, id, p, std::move(conn));
    ClientSession* s = session.get();
    sessions.emplace(id, std::move(session));
    s->start();
  }

  void retire(std::uint64_t id) {
    auto it = sessions.find(id);
    if (it == sessions.end()) return;
    graveyard.push_back(std::move(it->second));
    sessions.erase(it);
    if (!reaper.active()) reaper.start(0, 0, [this] { graveyard.clear(); });
  }

  // Why this consensus cannot give a circuit now (nullopt: it can).
  std::optional<std::string> consensus_problem(const dir::Consensus& c) {
    PathOptions options;
    options.allow_same_subnet = config.allow_same_subnet;
    auto path = select_path(c, std::nullopt, options, crypto::system_rng());
    if (path) return std::nullopt;
    return path.error();
  }
};

ProxyServer::ProxyServer(uv_loop_t* loop, Config config) : impl_(std::make_unique<Impl>(loop, std::move(config))) {}

ProxyServer::~ProxyServer() { stop(); }

Status ProxyServer::start() {
  Impl& m = *impl_;
  if (!m.client) return Error{"the proxy was stopped; make a new one"};
  if (auto st = m.listen(m.socks_listener, m.config.socks, ClientSession::Protocol::socks); !st) return st;
  if (m.config.http_connect) {
    if (auto st = m.listen(m.http_listener, *m.config.http_connect, ClientSession::Protocol::http_connect); !st) {
      m.socks_listener.reset();
      return st;
    }
  }
  m.running = true;
  m.pool.on_path_trouble([&m] { m.keeper.refetch_soon(); });
  m.pool.start();
  m.keeper.start([&m] { m.pool.set_consensus(m.keeper.current()); },
                 [&m](const dir::Consensus& c) { return m.consensus_problem(c); });
  LOG_NOTICE("SOCKS proxy on " << m.config.socks.host << ":" << socks_port()
                               << (m.http_listener ? ", HTTP CONNECT proxy on " + m.config.http_connect->host + ":" +
                                                         std::to_string(http_connect_port())
                                                   : std::string()));
  return {};
}

void ProxyServer::stop() {
  Impl& m = *impl_;
  m.running = false;
  m.socks_listener.reset();
  m.http_listener.reset();
  // Sessions first: they close their streams and cancel their waits.
  std::vector<ClientSession*> open;
  for (auto& [id, s] : m.sessions) open.push_back(s.get());
  for (ClientSession* s : open) s->abort();
  m.graveyard.clear();
  m.sessions.clear();
  m.reaper.stop();
  m.keeper.stop();
  m.pool.stop();
  m.client.reset();
}

std::uint16_t ProxyServer::socks_port() const {
  return impl_->socks_listener ? impl_->socks_listener->bound_port() : 0;
}

std::uint16_t ProxyServer::http_connect_port() const {
  return impl_->http_listener ? impl_->http_listener->bound_port() : 0;
}

bool ProxyServer::ready() const {
  if (!impl_->pool.has_consensus()) return false;
  for (const auto& c : impl_->pool.circuits())
    if (c.open) return true;
  return false;
}

ProxyStats ProxyServer::stats() const {
  const Impl& m = *impl_;
  ProxyStats s;
  auto consensus = m.keeper.current();
  s.have_consensus = consensus != nullptr;
  s.consensus_relays = consensus ? consensus->relays.size() : 0;
  s.clients = m.sessions.size();
  for (const auto& [id, session] : m.sessions) {
    switch (session->state()) {
      case ClientSession::State::open: ++s.streams_open; break;
      case ClientSession::State::waiting_circuit:
      case ClientSession::State::connecting:
      case ClientSession::State::resolving: ++s.requests_pending; break;
      default: break;
    }
  }
  for (const auto& c : m.pool.circuits()) {
    if (!c.open) {
      ++s.circuits_building;
      continue;
    }
    ++s.circuits_open;
    if (!c.isolation_key) {
      ++s.circuits_ready;
    } else {
      ++s.circuits_per_isolation_key[*c.isolation_key];
    }
  }
  s.counters = m.counters;
  s.circuit_counters = m.pool.counters();
  return s;
}

std::vector<PoolCircuitInfo> ProxyServer::circuits() const { return impl_->pool.circuits(); }

const ProxyServer::Config& ProxyServer::config() const { return impl_->config; }

}  // namespace thor::proxy
