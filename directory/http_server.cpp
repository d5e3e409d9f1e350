#include "directory/http_server.hpp"

#include "common/log.hpp"

namespace thor::directory {

struct HttpServer::Conn {
  Conn(uv_loop_t* loop, std::uint64_t id, std::unique_ptr<uv::TcpConnection> tcp, const http::Limits& limits)
      : id(id), tcp(std::move(tcp)), parser(limits), timer(loop) {}
  std::uint64_t id;
  std::unique_ptr<uv::TcpConnection> tcp;
  http::RequestParser parser;
  uv::Timer timer;
  Bytes pending;          // received, not yet given to the parser (pipelined or while paused)
  bool closing = false;
  bool waiting_drain = false;
};

HttpServer::HttpServer(uv_loop_t* loop, Options options, Handler handler, ResponseObserver observer)
    : loop_(loop), options_(options), handler_(std::move(handler)), observer_(std::move(observer)), reaper_(loop) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::listen(const HostPort& where) {
  listener_ = std::make_unique<uv::TcpListener>(loop_);
  auto st = listener_->listen(where, [this](std::unique_ptr<uv::TcpConnection> tcp) { on_accept(std::move(tcp)); });
  if (!st) listener_.reset();
  return st;
}

void HttpServer::stop() {
  if (listener_) listener_->close();
  listener_.reset();
  for (auto& [id, c] : conns_) {
    c->timer.stop();
    c->tcp->close();
  }
  conns_.clear();
  retired_.clear();
  reaper_.stop();
}

void HttpServer::on_accept(std::unique_ptr<uv::TcpConnection> tcp) {
  if (conns_.size() >= options_.max_connections) {
    LOG_WARN("http: refusing a connection: already " << conns_.size() << " open");
    tcp->close();
    return;
  }
  std::uint64_t id = next_id_++;
  auto c = std::make_unique<Conn>(loop_, id, std::move(tcp), options_.limits);
  c->tcp->set_callbacks([this, id](ByteView data) { on_data(id, data); },
                        [this, id](const std::string&) { retire(id); });
  c->tcp->set_nodelay(true);
  c->tcp->start_reading();
  c->timer.start(options_.request_timeout_ms, 0, [this, id] { on_timeout(id); });
  LOG_DEBUG("http: connection " << id << " from " << log::redact(c->tcp->peer_address()));
  conns_.emplace(id, std::move(c));
}

void HttpServer::retire(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  it->second->timer.stop();
  it->second->tcp->close();
  retired_.push_back(std::move(it->second));
  conns_.erase(it);
  if (!reaper_.active()) reaper_.start(0, 0, [this] { retired_.clear(); });
}

void HttpServer::on_timeout(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (c.closing) {
    LOG_DEBUG("http: connection " << id << " did not take its answer in time");
    retire(id);
  } else if (c.parser.started() || !c.pending.empty()) {
    refuse(c, 408, "request not complete within " + std::to_string(options_.request_timeout_ms) + " ms");
  } else {
    LOG_DEBUG("http: closing idle connection " << id);
    retire(id);
  }
}

void HttpServer::on_data(std::uint64_t id, ByteView data) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (c.closing) return;
  // Bounded: a request's headers and body are bounded by the parser, and reading stops while
  // answers are queued, so pending never holds more than a read buffer beyond one request.
  c.pending.insert(c.pending.end(), data.begin(), data.end());
  process(c);
}

void HttpServer::process(Conn& c) {
  while (!c.closing && !c.waiting_drain && !c.pending.empty()) {
    std::size_t used = c.parser.feed(c.pending);
    c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<std::ptrdiff_t>(used));
    switch (c.parser.state()) {
      case http::RequestParser::State::incomplete:
        return;
      case http::RequestParser::State::error:
        refuse(c, c.parser.error_status(), c.parser.error());
        return;
      case http::RequestParser::State::complete: {
        const http::Request& req = c.parser.request();
        http::Response r = handler_(req);
        bool keep = req.keep_alive;
        respond(c, r, keep, req.method == "HEAD");
        if (!keep) {
          close_gracefully(c);
          return;
        }
        c.parser.reset();
        c.timer.start(options_.request_timeout_ms, 0, [this, id = c.id] { on_timeout(id); });
        if (c.tcp->queued_bytes() > options_.max_queued_bytes) {
          c.waiting_drain = true;
          c.tcp->pause_reading();
          c.tcp->on_drain(options_.max_queued_bytes / 2, [this, id = c.id] {
            auto it = conns_.find(id);
            if (it == conns_.end()) return;
            it->second->waiting_drain = false;
            it->second->tcp->resume_reading();
            process(*it->second);
          });
        }
        break;
      }
    }
  }
}

void HttpServer::respond(Conn& c, const http::Response& r, bool keep_alive, bool head_only) {
  if (observer_) observer_(r.status);
  c.tcp->write(as_bytes(http::serialize(r, keep_alive, head_only)));
}

void HttpServer::refuse(Conn& c, int status, const std::string& why) {
  LOG_WARN("http: " << status << " " << http::reason_phrase(status) << ": " << why);
  respond(c, http::error_response(status, why), false, false);
  close_gracefully(c);
}

void HttpServer::close_gracefully(Conn& c) {
  c.closing = true;
  // A client that does not read its answer is cut off at the deadline all the same.
  c.timer.start(options_.request_timeout_ms, 0, [this, id = c.id] { on_timeout(id); });
  c.tcp->close_after_writes();  // may retire c (it stays allocated until the reaper runs)
}

}  // namespace thor::directory
