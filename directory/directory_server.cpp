#include "directory/directory_server.hpp"

#include <algorithm>
#include <chrono>

#include "common/crypto/random.hpp"
#include "common/log.hpp"
#include "directory/http_server.hpp"

namespace thor::directory {

using nlohmann::json;

namespace {
constexpr std::size_t kMaxQueuedBytes = 4 << 20;  // stop reading a peer that does not read
}

struct DirectoryServer::Conn {
  Conn(uv_loop_t* loop, std::uint64_t id, std::unique_ptr<uv::TcpConnection> tcp, dir::DirectorySession::Env env)
      : id(id), tcp(std::move(tcp)), session(env, id), idle(loop) {}
  std::uint64_t id;
  std::unique_ptr<uv::TcpConnection> tcp;
  dir::FrameReader reader;
  dir::DirectorySession session;
  uv::Timer idle;  // for connections that have not joined
  bool closing = false;
};

DirectoryServer::DirectoryServer(uv_loop_t* loop, Config config)
    : loop_(loop),
      config_(std::move(config)),
      members_(dir::Membership::Limits{config_.heartbeat_interval_ms, config_.max_relays, 7LL * 24 * 3600 * 1000}),
      reaper_(loop),
      sweep_timer_(loop),
      refresh_timer_(loop),
      debounce_timer_(loop) {
  config_.heartbeat_interval_ms = std::max<std::uint64_t>(config_.heartbeat_interval_ms, 10);
  // A relay must leave the consensus within three intervals: 2 of silence + a quarter of sweep + the
  // debounce must fit.
  config_.consensus_debounce_ms = std::min(config_.consensus_debounce_ms, config_.heartbeat_interval_ms / 4);
  config_.consensus_interval_ms = std::max<std::uint64_t>(config_.consensus_interval_ms, 1000);
}

DirectoryServer::~DirectoryServer() { stop(); }

std::int64_t DirectoryServer::now_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

Status DirectoryServer::start() {
  if (started_) return {};
  listener_ = std::make_unique<uv::TcpListener>(loop_);
  if (auto st = listener_->listen(config_.listen, [this](std::unique_ptr<uv::TcpConnection> c) { on_accept(std::move(c)); });
      !st) {
    listener_.reset();
    return st;
  }
  HttpServer::Options ho;
  ho.limits.max_header_bytes = config_.max_http_header_bytes;
  ho.request_timeout_ms = config_.http_timeout_ms;
  ho.max_connections = config_.max_http_connections;
  http_ = std::make_unique<HttpServer>(
      loop_, ho, [this](const http::Request& r) { return handle_http(r); },
      [this](int status) { ++counters_.http_responses[status]; });
  if (auto st = http_->listen(config_.http); !st) {
    http_.reset();
    listener_->close();
    listener_.reset();
    return st;
  }
  started_ = true;
  started_ms_ = now_ms();
  rebuild_consensus();
  std::uint64_t sweep_every = std::max<std::uint64_t>(config_.heartbeat_interval_ms / 4, 5);
  sweep_timer_.start(sweep_every, sweep_every, [this] { sweep(); });
  refresh_timer_.start(config_.consensus_interval_ms, config_.consensus_interval_ms, [this] { rebuild_consensus(); });
  LOG_NOTICE("directory " << crypto::fingerprint(config_.identity.public_key()) << " serving relays on "
                          << config_.listen.host << ":" << listen_port() << " and status pages on http://"
                          << config_.http.host << ":" << http_port() << "/status");
  return {};
}

void DirectoryServer::stop() {
  if (!started_) return;
  started_ = false;
  if (listener_) listener_->close();
  listener_.reset();
  if (http_) http_->stop();
  http_.reset();
  std::int64_t now = now_ms();
  for (auto& [id, c] : conns_) {
    c->idle.stop();
    c->tcp->close();
    c->session.on_closed(now);
  }
  conns_.clear();
  retired_.clear();
  reaper_.stop();
  sweep_timer_.stop();
  refresh_timer_.stop();
  debounce_timer_.stop();
  LOG_NOTICE("directory stopped");
}

std::uint16_t DirectoryServer::listen_port() const { return listener_ ? listener_->bound_port() : 0; }
std::uint16_t DirectoryServer::http_port() const { return http_ ? http_->port() : 0; }
std::size_t DirectoryServer::open_http_connections() const { return http_ ? http_->connections() : 0; }

void DirectoryServer::on_accept(std::unique_ptr<uv::TcpConnection> tcp) {
  if (conns_.size() >= config_.max_connections) {
    LOG_WARN("refusing a directory connection: already " << conns_.size() << " open");
    tcp->close();
    return;
  }
  std::uint64_t id = next_id_++;
  dir::DirectorySession::Env env{&config_.identity, &members_, &crypto::system_rng(), config_.heartbeat_interval_ms};
  auto c = std::make_unique<Conn>(loop_, id, std::move(tcp), env);
  c->tcp->set_callbacks([this, id](ByteView data) { on_data(id, data); },
                        [this, id](const std::string& reason) { on_closed(id, reason); });
  c->tcp->set_nodelay(true);
  c->tcp->start_reading();
  c->idle.start(config_.handshake_timeout_ms, 0, [this, id] { on_idle(id); });
  conns_.emplace(id, std::move(c));
}

void DirectoryServer::on_data(std::uint64_t id, ByteView data) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (c.closing) return;
  c.reader.append(data);
  for (;;) {
    auto d = c.reader.next();
    if (d.is_incomplete()) break;
    if (d.is_invalid()) {
      LOG_WARN("directory connection " << id << ": " << d.error << "; closing it");
      ++counters_.protocol_errors;
      c.tcp->write(dir::encode_frame(dir::make_error(d.error)));
      close_conn(id, true);
      return;
    }
    std::string type = dir::message_type(*d.value);
    auto out = c.session.on_message(*d.value, now_ms());
    for (auto& f : out.frames) c.tcp->write(std::move(f));
    if (out.send_consensus) {
      ++counters_.consensus_fetches;
      c.tcp->write(consensus_frame_);
    }
    if (out.membership_changed) {
      if (const auto* rec = members_.find(*c.session.relay()))
        LOG_NOTICE("relay " << rec->descriptor.nickname << " (" << rec->fingerprint << ") joined at "
                            << rec->descriptor.address.to_string());
      schedule_rebuild();
    }
    if (out.replaced_session != 0 && out.replaced_session != id) close_conn(out.replaced_session, false);
    if (c.session.state() == dir::DirectorySession::State::joined) c.idle.stop();
    else if (!out.close) c.idle.start(config_.handshake_timeout_ms, 0, [this, id] { on_idle(id); });
    if (!out.problem.empty()) {
      ++counters_.protocol_errors;
      LOG_WARN("directory connection " << id << " (" << type.substr(0, 32) << "): " << out.problem);
    }
    if (out.close) {
      close_conn(id, true);
      return;
    }
  }
  if (c.tcp->queued_bytes() > kMaxQueuedBytes && c.tcp->reading()) {
    c.tcp->pause_reading();
    c.tcp->on_drain(kMaxQueuedBytes / 2, [this, id] {
      auto it2 = conns_.find(id);
      if (it2 != conns_.end() && !it2->second->closing) it2->second->tcp->resume_reading();
    });
  }
}

void DirectoryServer::on_idle(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  if (it->second->closing) {
    close_conn(id, false);  // a peer that never took its last answer
    return;
  }
  LOG_DEBUG("directory connection " << id << " idle: closing");
  close_conn(id, true);
}

void DirectoryServer::close_conn(std::uint64_t id, bool graceful) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (graceful && !c.closing) {
    c.closing = true;
    c.idle.start(config_.handshake_timeout_ms, 0, [this, id] { on_idle(id); });
    c.tcp->close_after_writes();  // may call on_closed at once, which retires c
    return;
  }
  c.tcp->close();
  on_closed(id, "closed by the directory");
}

void DirectoryServer::on_closed(std::uint64_t id, const std::string& reason) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  c.idle.stop();
  auto relay = c.session.relay();
  bool was_running = c.session.on_closed(now_ms());
  if (was_running && relay) {
    if (const auto* rec = members_.find(*relay))
      LOG_NOTICE("relay " << rec->descriptor.nickname << " (" << rec->fingerprint << ") not running: connection closed"
                          << (reason.empty() ? "" : " (" + reason + ")"));
    schedule_rebuild();
  }
  retired_.push_back(std::move(it->second));
  conns_.erase(it);
  if (!reaper_.active()) reaper_.start(0, 0, [this] { retired_.clear(); });
}

void DirectoryServer::sweep() {
  auto ended = members_.expire(now_ms());
  for (auto session : ended) {
    auto it = conns_.find(session);
    if (it != conns_.end()) {
      if (auto relay = it->second->session.relay())
        if (const auto* rec = members_.find(*relay))
          LOG_NOTICE("relay " << rec->descriptor.nickname << " (" << rec->fingerprint
                              << ") not running: no heartbeat for " << members_.timeout_ms() << " ms");
      close_conn(session, false);
    }
  }
  if (members_.generation() != built_generation_) schedule_rebuild();
}

void DirectoryServer::schedule_rebuild() {
  if (!started_ || debounce_timer_.active()) return;
  debounce_timer_.start(config_.consensus_debounce_ms, 0, [this] { rebuild_consensus(); });
}

void DirectoryServer::rebuild_consensus() {
  debounce_timer_.stop();
  dir::ConsensusParams p;
  p.network = config_.network;
  p.directory = config_.identity.public_key();
  p.fresh_seconds = static_cast<std::int64_t>(std::max<std::uint64_t>(config_.consensus_interval_ms / 1000, 1));
  p.lifetime_seconds = static_cast<std::int64_t>(config_.consensus_lifetime_ms / 1000);
  p.test_network = config_.test_network;
  consensus_ = members_.build_consensus(p, now_ms());
  consensus_envelope_ = dir::sign_consensus(consensus_, config_.identity);
  consensus_frame_ = dir::encode_frame(dir::make_consensus_message(consensus_envelope_));
  consensus_body_ = dir::canonical_json(consensus_envelope_) + "\n";
  built_generation_ = members_.generation();
  ++counters_.consensus_builds;
  if (consensus_frame_.size() > dir::kMaxFrameBytes + 4)
    LOG_ERROR("the consensus (" << consensus_frame_.size() << " bytes, " << consensus_.relays.size()
                                << " relays) is larger than a protocol frame may be; clients will refuse it");
  LOG_INFO("consensus built: " << consensus_.relays.size() << " relays running");
}

}  // namespace thor::directory
