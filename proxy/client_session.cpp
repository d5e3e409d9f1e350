#include "proxy/client_session.hpp"

#include "common/log.hpp"
#include "proxy/reverse_name.hpp"

namespace thor::proxy {

namespace {
bool is_ip_literal(const std::string& host) { return is_ipv4_literal(host) || is_ipv6_literal(host); }

// Failures that are the destination's doing (logged at info); the rest are the network's (warn).
bool destination_failure(EndReason r) {
  return r == EndReason::connect_refused || r == EndReason::resolve_failed || r == EndReason::exit_policy ||
         r == EndReason::no_route;
}
}  // namespace

ClientSession::ClientSession(SessionContext& ctx, std::uint64_t id, Protocol protocol,
                             std::unique_ptr<uv::TcpConnection> tcp)
    : ctx_(ctx),
      id_(id),
      protocol_(protocol),
      tcp_(std::move(tcp)),
      timer_(ctx.loop),
      alive_(std::make_shared<bool>(true)) {
  if (protocol_ == Protocol::socks) {
    socks_ = std::make_unique<socks::ServerHandshake>();
  } else {
    http_ = std::make_unique<socks::HttpConnectParser>();
  }
  exit_retries_left_ = ctx.config->exit_retries;
  circuit_retries_left_ = ctx.config->circuit_retries;
}

ClientSession::~ClientSession() {
  *alive_ = false;
  if (waiter_ != 0) ctx_.pool->cancel(waiter_);
  if (stream_ != 0) ctx_.client->close_stream(stream_, EndReason::done);
}

void ClientSession::start() {
  tcp_->set_nodelay(true);
  tcp_->set_callbacks([this](ByteView data) { on_client_data(data); },
                      [this](const std::string& reason) { on_client_closed(reason); });
  timer_.start(ctx_.config->handshake_timeout_ms, 0, [this] {
    ++ctx_.counters->handshake_timeouts;
    LOG_DEBUG("client " << id_ << ": no complete request within " << ctx_.config->handshake_timeout_ms
                        << " ms; closing");
    finish();
  });
  tcp_->start_reading();
}

void ClientSession::abort() { finish(); }

CircuitNeed ClientSession::need() const {
  CircuitNeed n;
  n.isolation_key = isolation_key_;
  if (command_ == Command::connect) n.target = target_;
  n.avoid_exits = avoid_exits_;
  return n;
}

void ClientSession::on_client_data(ByteView data) {
  switch (state_) {
    case State::handshake:
      handshake_input(data);
      return;
    case State::open:
      ctx_.counters->bytes_to_network += data.size();
      if (!ctx_.client->write(stream_, data) && !client_paused_) {
        client_paused_ = true;
        tcp_->pause_reading();
      }
      return;
    case State::waiting_circuit:
    case State::connecting:
    case State::resolving:
      // Reading is paused once the request is complete; what one read still delivered is early data.
      inbuf_.insert(inbuf_.end(), data.begin(), data.end());
      return;
    case State::closing:
    case State::done:
      return;
  }
}

void ClientSession::on_client_closed(const std::string& reason) {
  if (state_ == State::open || state_ == State::closing) {
    LOG_DEBUG("client " << id_ << ": connection ended" << (reason.empty() ? "" : ": " + reason));
  } else if (state_ != State::done) {
    LOG_DEBUG("client " << id_ << ": left before an answer" << (reason.empty() ? "" : ": " + reason));
  }
  finish();
}

void ClientSession::handshake_input(ByteView data) {
  inbuf_.insert(inbuf_.end(), data.begin(), data.end());
  auto alive = alive_;
  if (socks_) {
    socks::Action a = socks_->advance(inbuf_);
    inbuf_.erase(inbuf_.begin(), inbuf_.begin() + static_cast<std::ptrdiff_t>(a.consumed));
    if (!a.reply.empty()) tcp_->write(std::move(a.reply));
    if (!*alive || state_ == State::done) return;
    if (a.error) {
      ++ctx_.counters->handshake_failures;
      LOG_DEBUG("client " << id_ << ": SOCKS handshake refused: " << *a.error);
      close_gracefully();
      return;
    }
    if (!a.request) return;
    const socks::Request& r = *a.request;
    version_ = r.version;
    target_ = r.target;
    isolation_key_ = r.isolation_key;
    command_ = r.command == socks::Command::connect   ? Command::connect
               : r.command == socks::Command::resolve ? Command::resolve
                                                      : Command::resolve_ptr;
    socks_.reset();
  } else {
    socks::HttpConnectAction a = http_->advance(inbuf_);
    inbuf_.erase(inbuf_.begin(), inbuf_.begin() + static_cast<std::ptrdiff_t>(a.consumed));
    if (a.error) {
      ++ctx_.counters->handshake_failures;
      LOG_DEBUG("client " << id_ << ": HTTP CONNECT refused: " << *a.error);
      if (!a.reply.empty()) tcp_->write(std::move(a.reply));
      if (!*alive || state_ == State::done) return;
      close_gracefully();
      return;
    }
    if (!a.request) return;
    target_ = a.request->target;
    isolation_key_ = a.request->isolation_key;
    command_ = Command::connect;
    http_.reset();
  }
  // Whatever is left in inbuf_ is early data, forwarded once the stream is open.
  tcp_->pause_reading();
  handle_request();
}

void ClientSession::handle_request() {
  ++ctx_.counters->requests;
  state_ = State::waiting_circuit;
  timer_.stop();
  LOG_DEBUG("client " << id_ << ": "
                      << (command_ == Command::connect ? "CONNECT " : command_ == Command::resolve ? "RESOLVE " : "RESOLVE_PTR ")
                      << log::redact(target_.to_string()));

  if (command_ == Command::connect) {
    if (auto st = check_target_host(target_.host); !st) {
      fail(EndReason::resolve_failed, "not a valid destination: " + st.error());
      return;
    }
    if (target_.port == 0) {
      fail(EndReason::misc, "port 0 is not a destination");
      return;
    }
  } else if (command_ == Command::resolve) {
    if (is_ip_literal(target_.host)) {
      // Nothing to look up: answer as Tor does, without using the network.
      ++ctx_.counters->requests_succeeded;
      tcp_->write(socks::reply_resolved_address(version_, target_.host));
      close_gracefully();
      return;
    }
    if (auto st = check_target_host(target_.host); !st) {
      fail(EndReason::resolve_failed, "not a valid name: " + st.error());
      return;
    }
  }

  auto alive = alive_;
  timer_.start(ctx_.config->request_timeout_ms, 0, [this, alive] {
    if (*alive) on_deadline();
  });
  if (!ctx_.pool->exit_possible(need())) {
    fail(EndReason::exit_policy, "no exit relay's policy allows this destination");
    return;
  }
  attach();
}

void ClientSession::attach() {
  state_ = State::waiting_circuit;
  circuit_ = 0;
  if (circuit::CircuitRef ref = ctx_.pool->take(need()); ref != 0) {
    on_circuit(ref);
    return;
  }
  auto alive = alive_;
  waiter_ = ctx_.pool->wait(need(), [this, alive](circuit::CircuitRef ref) {
    if (!*alive) return;
    waiter_ = 0;
    on_circuit(ref);
  });
}

void ClientSession::on_circuit(circuit::CircuitRef ref) {
  if (ref == 0) {
    fail(EndReason::exit_policy, "no exit relay's policy allows this destination");
    return;
  }
  circuit_ = ref;
  auto alive = alive_;
  if (command_ == Command::connect) {
    circuit::StreamCallbacks cbs;
    cbs.on_connected = [this, alive](const std::string& address) {
      if (*alive) on_connected(address);
    };
    cbs.on_data = [this, alive](ByteView data) {
      if (*alive) on_stream_data(data);
    };
    cbs.on_end = [this, alive](const circuit::StreamEnd& end) {
      if (*alive) on_stream_end(end);
    };
    cbs.on_writable = [this, alive] {
      if (*alive) on_writable();
    };
    stream_ = ctx_.client->open_stream(ref, target_, std::move(cbs));
    state_ = State::connecting;
  } else {
    std::string name = target_.host;
    if (command_ == Command::resolve_ptr) name = reverse_lookup_name(target_.host).value_or(target_.host);
    stream_ = ctx_.client->resolve(ref, name, [this, alive](const circuit::ResolveOutcome& out) {
      if (*alive) on_resolved(out);
    });
    state_ = State::resolving;
  }
  if (stream_ != 0) {
    LOG_DEBUG("client " << id_ << ": on circuit " << ref);
    return;
  }
  // The circuit could not take a stream (it closed meanwhile, or ran out of stream ids).
  if (circuit_retries_left_-- > 0) {
    ++ctx_.counters->circuit_retries;
    attach();
    return;
  }
  fail(EndReason::misc, "no circuit could take the stream");
}

void ClientSession::on_connected(const std::string& address) {
  if (state_ != State::connecting) return;
  state_ = State::open;
  timer_.stop();
  ++ctx_.counters->requests_succeeded;
  if (protocol_ == Protocol::socks) {
    std::optional<HostPort> bound;
    if (is_ip_literal(address)) bound = HostPort{address, target_.port};
    tcp_->write(socks::reply_succeeded(version_, bound));
  } else {
    tcp_->write(socks::http_connect_established());
  }
  if (tcp_->closed()) return;  // the write failed; on_client_closed finished the session
  auto alive = alive_;
  tcp_->on_drain(ctx_.config->client_write_low_water, [this, alive] {
    if (!*alive || !stream_paused_ || stream_ == 0) return;
    stream_paused_ = false;
    ctx_.client->resume_reading(stream_);
  });
  if (!inbuf_.empty()) {
    ctx_.counters->bytes_to_network += inbuf_.size();
    client_paused_ = !ctx_.client->write(stream_, inbuf_);
  }
  Bytes().swap(inbuf_);  // release the handshake buffer for the rest of the stream's life
  if (!client_paused_) tcp_->resume_reading();
}

void ClientSession::on_stream_data(ByteView data) {
  if (state_ != State::open) return;
  ctx_.counters->bytes_from_network += data.size();
  tcp_->write(data);
  if (!stream_paused_ && stream_ != 0 && tcp_->queued_bytes() > ctx_.config->client_write_high_water) {
    stream_paused_ = true;
    ctx_.client->pause_reading(stream_);
  }
}

void ClientSession::on_writable() {
  if (state_ != State::open || !client_paused_) return;
  client_paused_ = false;
  tcp_->resume_reading();
}

void ClientSession::on_stream_end(const circuit::StreamEnd& end) {
  stream_ = 0;
  if (state_ == State::open) {
    if (end.circuit_closed) {
      ++ctx_.counters->streams_cut;
      LOG_DEBUG("client " << id_ << ": the circuit closed under the stream; closing the connection");
    } else {
      LOG_DEBUG("client " << id_ << ": the exit ended the stream (" << to_string(end.reason) << ")");
    }
    close_gracefully();
    return;
  }
  if (state_ != State::connecting) return;
  if (end.circuit_closed) {
    if (circuit_retries_left_-- > 0) {
      ++ctx_.counters->circuit_retries;
      LOG_DEBUG("client " << id_ << ": circuit " << circuit_ << " closed before CONNECTED; trying another");
      attach();
      return;
    }
    fail(EndReason::misc, "circuits kept closing before the stream connected");
    return;
  }
  if (retry_elsewhere(end.reason)) return;
  fail(end.reason, std::string("the exit ended the stream: ") + to_string(end.reason));
}

// A refusal that another exit may not give: try once more through a different one.
bool ClientSession::retry_elsewhere(EndReason reason) {
  const bool exit_specific = reason == EndReason::exit_policy || reason == EndReason::resource_limit ||
                             reason == EndReason::hibernating;
  if (reason == EndReason::resolve_failed) {
    if (resolve_retries_left_ <= 0 || exit_retries_left_ <= 0) return false;
    --resolve_retries_left_;
  } else if (!exit_specific || exit_retries_left_ <= 0) {
    return false;
  }
  const dir::ConsensusRelay* exit = ctx_.pool->exit_of(circuit_);
  if (!exit) return false;
  if (reason == EndReason::exit_policy) ctx_.pool->exit_refused(circuit_, target_);
  std::vector<std::string> avoid = avoid_exits_;
  avoid.push_back(exit->fingerprint);
  CircuitNeed n = need();
  n.avoid_exits = avoid;
  if (!ctx_.pool->exit_possible(n) || !ctx_.pool->can_serve(n)) return false;
  --exit_retries_left_;
  avoid_exits_ = std::move(avoid);
  ++ctx_.counters->exit_retries;
  LOG_DEBUG("client " << id_ << ": exit " << exit->descriptor.nickname << " refused (" << to_string(reason)
                      << "); trying another exit");
  attach();
  return true;
}

void ClientSession::on_resolved(const circuit::ResolveOutcome& out) {
  stream_ = 0;
  if (state_ != State::resolving) return;
  if (out.failed) {
    if (out.failed->circuit_closed && circuit_retries_left_-- > 0) {
      ++ctx_.counters->circuit_retries;
      attach();
      return;
    }
    fail(out.failed->circuit_closed ? EndReason::misc : out.failed->reason,
         "the exit could not resolve: " + out.failed->message);
    return;
  }
  socks::Request request;
  request.version = version_;
  request.command = command_ == Command::resolve ? socks::Command::resolve : socks::Command::resolve_ptr;
  request.target = target_;
  ResolvedBody body;
  body.answers = out.answers;
  Bytes reply = socks::reply_for_resolved(request, body);
  // The second byte is the SOCKS5 reply code (SOCKS4: 0x5A granted).
  const bool ok = reply.size() > 1 && (reply[1] == 0x00 || reply[1] == socks::kSocks4Granted);
  if (ok) {
    ++ctx_.counters->requests_succeeded;
  } else {
    ++ctx_.counters->requests_failed;
    LOG_INFO("client " << id_ << ": name lookup failed at the exit");
  }
  timer_.stop();
  tcp_->write(std::move(reply));
  close_gracefully();
}

void ClientSession::on_deadline() {
  if (state_ != State::waiting_circuit && state_ != State::connecting && state_ != State::resolving) return;
  ++ctx_.counters->request_timeouts;
  if (!ctx_.pool->has_consensus()) {
    fail(EndReason::misc, "no consensus from the directory yet");
    return;
  }
  fail(EndReason::timeout, state_ == State::waiting_circuit ? "no circuit could be built in time"
                                                             : "the exit did not answer in time");
}

// Gives up the pending circuit request or the open stream (END with `reason`), whichever there is.
void ClientSession::release_circuit(EndReason reason) {
  if (waiter_ != 0) {
    ctx_.pool->cancel(waiter_);
    waiter_ = 0;
  }
  if (stream_ != 0) {
    ctx_.client->close_stream(stream_, reason);
    stream_ = 0;
  }
}

void ClientSession::fail(EndReason reason, const std::string& why) {
  if (state_ == State::closing || state_ == State::done) return;
  ++ctx_.counters->requests_failed;
  release_circuit(EndReason::misc);
  Bytes reply;
  if (protocol_ == Protocol::socks) {
    const socks::Reply code = socks::reply_for_end(reason);
    reply = socks::reply_failed(version_, code);
    if (destination_failure(reason)) {
      LOG_INFO("request failed: " << why << " (SOCKS reply " << socks::to_string(code) << ")");
    } else {
      LOG_WARN("request failed: " << why << " (SOCKS reply " << socks::to_string(code) << ")");
    }
  } else {
    const socks::HttpStatus s = socks::http_status_for(reason);
    reply = socks::http_connect_failed(reason);
    if (destination_failure(reason)) {
      LOG_INFO("request failed: " << why << " (HTTP " << s.code << ")");
    } else {
      LOG_WARN("request failed: " << why << " (HTTP " << s.code << ")");
    }
  }
  timer_.stop();
  auto alive = alive_;
  tcp_->write(std::move(reply));
  if (!*alive || state_ == State::done) return;
  close_gracefully();
}

// Sends what is queued, then closes; a client that does not read is dropped after the handshake
// timeout.
void ClientSession::close_gracefully() {
  if (state_ == State::closing || state_ == State::done) return;
  state_ = State::closing;
  release_circuit(EndReason::done);
  auto alive = alive_;
  timer_.start(ctx_.config->handshake_timeout_ms, 0, [this, alive] {
    if (*alive) finish();
  });
  tcp_->close_after_writes();  // may call on_client_closed -> finish() at once
}

void ClientSession::finish() {
  if (state_ == State::done) return;
  state_ = State::done;
  timer_.stop();
  release_circuit(EndReason::done);
  tcp_->close();
  ctx_.finished(id_);
}

}  // namespace thor::proxy
