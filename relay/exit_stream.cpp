// Exit streams: BEGIN (policy, resolve, connect), DATA both ways under the SENDME windows, END, and
// RESOLVE. Destination addresses appear in logs only at debug level.
#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "relay/end_reasons.hpp"
#include "relay/relay_impl.hpp"
#include "relay/reverse_lookup.hpp"

namespace thor::relay {

namespace {
constexpr std::uint32_t kAnswerTtl = 60;
constexpr std::size_t kMaxAnswers = 8;  // keeps RESOLVED within one cell

bool is_numeric(const std::string& host) { return is_ipv4_literal(host) || is_ipv6_literal(host); }

// Before resolving a name: could any address at all pass on this port? (The answer is checked again
// against each resolved address.) Saves a lookup for ports the policy closes everywhere, while a
// policy that opens only loopback or a prefix still lets names that resolve there through.
bool port_could_pass(const ExitPolicy& policy, std::uint16_t port) {
  if (port == 0) return false;
  for (const auto& r : policy.rules()) {
    if (port < r.port_lo || port > r.port_hi) continue;
    if (r.accept) return true;
    if (r.kind == ExitRule::Kind::any) return false;
  }
  return false;
}
}  // namespace

bool RelayServer::Impl::admit_stream(Circuit* c, StreamId id) {
  if (id == 0) {
    protocol_error(c, "stream command with stream id 0");
    return false;
  }
  if (c->streams.count(id)) {
    protocol_error(c, "stream id " + std::to_string(id) + " already in use");
    return false;
  }
  if (c->streams.size() >= config.limits.max_streams_per_circuit) {
    LOG_WARN("circuit " << c->serial << ": stream refused, " << c->streams.size()
                        << " streams open (max_streams_per_circuit)");
    send_backward(c, RelayCommand::end, id, encode_end(EndBody{EndReason::resource_limit}));
    return false;
  }
  return true;
}

ExitStream* RelayServer::Impl::new_stream(Circuit* c, StreamId id, ExitStream::State state) {
  auto owned = std::make_unique<ExitStream>();
  ExitStream* s = owned.get();
  s->serial = next_serial++;
  s->circuit = c;
  s->id = id;
  s->state = state;
  s->deadline_ms = now_ms() + config.limits.connect_timeout_ms;
  streams.emplace(s, std::move(owned));
  c->streams[id] = s;
  ++counters.streams_opened;
  return s;
}

void RelayServer::Impl::handle_begin(Circuit* c, const RelayMessageView& msg) {
  if (!admit_stream(c, msg.stream_id)) return;
  auto body = parse_begin(msg.body);
  if (!body) {
    LOG_WARN("circuit " << c->serial << ": bad BEGIN: " << body.error());
    send_backward(c, RelayCommand::end, msg.stream_id, encode_end(EndBody{EndReason::protocol}));
    return;
  }
  const HostPort& t = body->target;
  const bool numeric = is_numeric(t.host);
  const bool allowed = numeric ? config.exit_policy.allows(t.host, t.port) : port_could_pass(config.exit_policy, t.port);
  LOG_DEBUG("circuit " << c->serial << " stream " << msg.stream_id << ": BEGIN " << log::redact(t.to_string())
                       << (allowed ? "" : " refused by the exit policy"));
  if (!allowed) {
    ++counters.exit_policy_refusals;
    send_backward(c, RelayCommand::end, msg.stream_id, encode_end(EndBody{EndReason::exit_policy}));
    return;
  }
  ExitStream* s = new_stream(c, msg.stream_id, ExitStream::State::resolving);
  s->port = t.port;
  if (numeric) {
    auto addr = uv::numeric_sockaddr(t);
    if (!addr) {
      end_stream(s, EndReason::resolve_failed);
      return;
    }
    s->candidates.push_back(*addr);
    connect_next_candidate(s, EndReason::misc);
    return;
  }
  std::string host = t.host;
  auto token = uv::Resolver::resolve(loop, host, t.port, [this, s, host](Result<uv::Resolver::Answer> a) {
    on_resolved(s, std::move(a), host);
  });
  if (!s->dead) s->resolve_token = std::move(token);
}

void RelayServer::Impl::on_resolved(ExitStream* s, Result<uv::Resolver::Answer> answer, const std::string& host) {
  if (s->dead) return;
  if (!answer) {
    LOG_DEBUG("stream " << s->id << ": resolving " << log::redact(host) << " failed: " << answer.error());
    end_stream(s, EndReason::resolve_failed);
    return;
  }
  // The policy decides on the address actually reached: a public name that resolves to 127.0.0.1
  // must not open a door to the exit's own loopback services.
  for (const auto& ss : answer->addresses) {
    std::string ip = uv::sockaddr_ip(reinterpret_cast<const sockaddr*>(&ss));
    if (config.exit_policy.allows(ip, s->port)) s->candidates.push_back(ss);
  }
  if (s->candidates.empty()) {
    ++counters.exit_policy_refusals;
    LOG_DEBUG("stream " << s->id << ": " << log::redact(host) << " resolves only to addresses the policy refuses");
    end_stream(s, EndReason::exit_policy);
    return;
  }
  connect_next_candidate(s, EndReason::misc);
}

void RelayServer::Impl::connect_next_candidate(ExitStream* s, EndReason if_none_left) {
  if (s->next_candidate >= s->candidates.size()) {
    end_stream(s, if_none_left);
    return;
  }
  sockaddr_storage addr = s->candidates[s->next_candidate++];
  if (s->tcp) {
    dead_tcp.push_back(std::move(s->tcp));
    schedule_reap();
  }
  s->state = ExitStream::State::connecting;
  s->tcp = std::make_unique<uv::TcpConnection>(loop);
  s->tcp->connect(reinterpret_cast<const sockaddr*>(&addr), [this, s](Status st) {
    if (s->dead) return;
    if (!st) {
      LOG_DEBUG("stream " << s->id << ": " << st.error());
      connect_next_candidate(s, end_reason_for_connect_error(st.error()));
      return;
    }
    on_connected(s);
  });
}

void RelayServer::Impl::on_connected(ExitStream* s) {
  Circuit* c = s->circuit;
  s->state = ExitStream::State::open;
  const auto& addr = s->candidates[s->next_candidate - 1];
  std::string ip = uv::sockaddr_ip(reinterpret_cast<const sockaddr*>(&addr));
  LOG_DEBUG("circuit " << c->serial << " stream " << s->id << ": connected to " << log::redact(ip));
  s->tcp->set_nodelay(true);
  s->tcp->set_callbacks([this, s](ByteView d) { on_stream_data(s, d); },
                        [this, s](const std::string& reason) { on_stream_closed(s, reason); });
  s->tcp->on_drain(config.limits.stream_queue_low, [this, s] {
    if (s->dead) return;
    maybe_send_stream_sendme(s);
    if (!s->dead) maybe_send_circuit_sendme(s->circuit);
  });
  send_backward(c, RelayCommand::connected, s->id, encode_connected(ConnectedBody{ip, kAnswerTtl}));
  if (!s->early_data.empty()) {
    counters.exit_bytes_written += s->early_data.size();
    s->tcp->write(std::move(s->early_data));
    s->early_data.clear();
  }
  if (s->dead) return;
  update_stream_reading(s);
  maybe_send_stream_sendme(s);
  if (!s->dead) maybe_send_circuit_sendme(c);
}

void RelayServer::Impl::on_stream_data(ExitStream* s, ByteView data) {
  if (s->dead) return;
  counters.exit_bytes_read += data.size();
  flush_stream(s, data);
}

void RelayServer::Impl::on_stream_closed(ExitStream* s, const std::string& reason) {
  if (s->dead) return;
  s->eof = true;
  s->eof_reason = end_reason_for_close(reason);
  LOG_DEBUG("circuit " << s->circuit->serial << " stream " << s->id << ": server side ended ("
                       << to_string(s->eof_reason) << ")");
  flush_stream(s, {});
}

void RelayServer::Impl::flush_stream(ExitStream* s, ByteView fresh) {
  Circuit* c = s->circuit;
  if (s->dead || c->dead) return;
  auto can_send = [&] {
    return !s->dead && !c->dead && s->package_window > 0 && c->package_window > 0 && !s->blocked_on_link;
  };
  auto send_chunk = [&](ByteView chunk) {
    send_backward(c, RelayCommand::data, s->id, chunk);
    --s->package_window;
    --c->package_window;
    if (link_full(c->prev)) {
      s->blocked_on_link = true;
      c->prev->waiting_streams.insert(s);
    }
  };
  while (s->pending_offset < s->pending.size() && can_send()) {
    std::size_t n = std::min(kRelayMaxData, s->pending.size() - s->pending_offset);
    send_chunk(ByteView(s->pending).subspan(s->pending_offset, n));
    s->pending_offset += n;
  }
  if (s->pending_offset == s->pending.size()) {
    s->pending.clear();
    s->pending_offset = 0;
  }
  while (!fresh.empty() && s->pending.empty() && can_send()) {
    std::size_t n = std::min(kRelayMaxData, fresh.size());
    send_chunk(fresh.first(n));
    fresh = fresh.subspan(n);
  }
  if (!fresh.empty()) s->pending.insert(s->pending.end(), fresh.begin(), fresh.end());
  if (s->dead || c->dead) return;
  counters.peak_stream_queued_bytes = std::max(counters.peak_stream_queued_bytes, s->buffered());
  if (s->eof && s->pending.empty()) {
    end_stream(s, s->eof_reason);
    return;
  }
  update_stream_reading(s);
}

void RelayServer::Impl::update_stream_reading(ExitStream* s) {
  if (s->dead || !s->tcp || s->state != ExitStream::State::open || s->eof) return;
  const Circuit* c = s->circuit;
  bool want = s->pending.empty() && s->package_window > 0 && c->package_window > 0 && !s->blocked_on_link;
  if (want && !s->tcp->reading()) {
    s->tcp->resume_reading();
  } else if (!want && s->tcp->reading()) {
    s->tcp->pause_reading();
    ++counters.stream_pauses;
  }
}

void RelayServer::Impl::handle_data(Circuit* c, const RelayMessageView& msg) {
  if (msg.stream_id == 0) {
    protocol_error(c, "DATA with stream id 0");
    return;
  }
  if (--c->deliver_window < 0) {
    protocol_error(c, "DATA beyond the circuit window");
    return;
  }
  auto it = c->streams.find(msg.stream_id);
  if (it == c->streams.end()) {
    // The stream ended here while this cell was on its way: drop it, keep the circuit count.
    maybe_send_circuit_sendme(c);
    return;
  }
  ExitStream* s = it->second;
  if (s->state == ExitStream::State::resolve_only) {
    protocol_error(c, "DATA on a RESOLVE stream");
    return;
  }
  if (--s->deliver_window < 0) {
    protocol_error(c, "DATA beyond the stream window");
    return;
  }
  if (s->state == ExitStream::State::open) {
    write_to_server(s, msg.body);
  } else {
    s->early_data.insert(s->early_data.end(), msg.body.begin(), msg.body.end());
  }
  counters.peak_stream_queued_bytes = std::max(counters.peak_stream_queued_bytes, s->buffered());
  maybe_send_stream_sendme(s);
  if (!c->dead) maybe_send_circuit_sendme(c);
}

void RelayServer::Impl::maybe_send_stream_sendme(ExitStream* s) {
  // Held back while the server reads slower than the client sends: the client's stream window
  // then runs out, and the on_drain callback sends the SENDME later.
  if (s->dead || s->state != ExitStream::State::open) return;
  while (!s->dead && s->deliver_window <= kStreamWindowStart - kStreamWindowIncrement) {
    if (s->tcp && s->tcp->queued_bytes() + s->outbox.size() > config.limits.stream_queue_high) return;
    s->deliver_window += kStreamWindowIncrement;
    send_backward(s->circuit, RelayCommand::sendme, s->id, {});
  }
}

void RelayServer::Impl::handle_end(Circuit* c, const RelayMessageView& msg) {
  auto it = c->streams.find(msg.stream_id);
  if (it == c->streams.end()) return;
  ExitStream* s = it->second;
  LOG_DEBUG("circuit " << c->serial << " stream " << s->id << ": END from the client");
  flush_outbox(s);  // what came before END goes out first
  if (s->state == ExitStream::State::open && s->tcp && !s->tcp->closed()) linger(std::move(s->tcp));
  kill_stream(s);
}

void RelayServer::Impl::write_to_server(ExitStream* s, ByteView data) {
  if (!s->tcp || s->tcp->closed() || data.empty()) return;
  counters.exit_bytes_written += data.size();
  if (s->outbox.empty()) outbox_streams.push_back(s);
  s->outbox.insert(s->outbox.end(), data.begin(), data.end());
}

void RelayServer::Impl::flush_outbox(ExitStream* s) {
  if (s->outbox.empty()) return;
  if (s->tcp && !s->tcp->closed()) s->tcp->write(ByteView(s->outbox));
  s->outbox.clear();  // keeps its capacity for the next read
}

void RelayServer::Impl::flush_outboxes() {
  // A failed write runs the connection's close callback at once (the stream ends, maybe others
  // with it), so walk a copy; the streams stay allocated until reap(), which flushes first.
  std::vector<ExitStream*> list;
  list.swap(outbox_streams);
  for (ExitStream* s : list) flush_outbox(s);
  if (outbox_streams.empty()) {
    list.clear();
    outbox_streams.swap(list);  // keeps the capacity
  }
}

void RelayServer::Impl::linger(std::unique_ptr<uv::TcpConnection> tcp) {
  // What the client sent before END still goes out; then the connection closes.
  uv::TcpConnection* p = tcp.get();
  lingering[p] = Lingering{std::move(tcp), now_ms() + config.limits.connect_timeout_ms};
  p->set_callbacks(nullptr, [this, p](const std::string&) {
    auto it = lingering.find(p);
    if (it == lingering.end()) return;
    dead_tcp.push_back(std::move(it->second.tcp));
    lingering.erase(it);
    schedule_reap();
  });
  p->close_after_writes();
}

void RelayServer::Impl::end_stream(ExitStream* s, EndReason reason) {
  if (s->dead) return;
  LOG_DEBUG("circuit " << s->circuit->serial << " stream " << s->id << ": END (" << to_string(reason) << ")");
  send_backward(s->circuit, RelayCommand::end, s->id, encode_end(EndBody{reason}));
  kill_stream(s);
}

void RelayServer::Impl::kill_stream(ExitStream* s) {
  if (s->dead) return;
  s->dead = true;  // first: a failed write below may run the close callback, which then ignores s
  flush_outbox(s);  // as if each DATA had been written when it came (a close may still cut it short)
  s->resolve_token.reset();
  // The connection is closed when the stream is freed (next loop turn), never inside one of its own
  // callbacks; until then it reads nothing and its callbacks see `dead`.
  if (s->tcp) s->tcp->pause_reading();
  Circuit* c = s->circuit;
  if (s->blocked_on_link && c->prev) c->prev->waiting_streams.erase(s);
  auto cit = c->streams.find(s->id);
  if (cit != c->streams.end() && cit->second == s) c->streams.erase(cit);
  auto it = streams.find(s);
  if (it != streams.end()) {
    dead_streams.push_back(std::move(it->second));
    streams.erase(it);
  }
  schedule_reap();
}

void RelayServer::Impl::handle_resolve(Circuit* c, const RelayMessageView& msg) {
  if (!admit_stream(c, msg.stream_id)) return;
  auto body = parse_resolve(msg.body);
  if (!body) {
    LOG_WARN("circuit " << c->serial << ": bad RESOLVE: " << body.error());
    send_backward(c, RelayCommand::end, msg.stream_id, encode_end(EndBody{EndReason::protocol}));
    return;
  }
  if (!config.exit_policy.is_exit()) {
    ++counters.exit_policy_refusals;
    send_backward(c, RelayCommand::end, msg.stream_id, encode_end(EndBody{EndReason::exit_policy}));
    return;
  }
  ExitStream* s = new_stream(c, msg.stream_id, ExitStream::State::resolve_only);
  const std::string name = body->hostname;
  LOG_DEBUG("circuit " << c->serial << " stream " << s->id << ": RESOLVE " << log::redact(name));
  auto reply = [this, s](ResolvedBody r) {
    if (s->dead) return;
    send_backward(s->circuit, RelayCommand::resolved, s->id, encode_resolved(r));
    kill_stream(s);
  };
  auto error_answer = [](const std::string& why) {
    ResolvedAnswer a;
    // A name that does not exist will not exist on retry; anything else might.
    a.type = why.find("EAI_NONAME") != std::string::npos ? ResolvedAnswer::Type::error_permanent
                                                         : ResolvedAnswer::Type::error_transient;
    return ResolvedBody{{a}};
  };
  if (is_numeric(name)) {
    ResolvedAnswer a{is_ipv4_literal(name) ? ResolvedAnswer::Type::ipv4 : ResolvedAnswer::Type::ipv6, name, kAnswerTtl};
    reply(ResolvedBody{{a}});
    return;
  }
  if (auto ip = reverse_name_to_ip(name)) {
    auto token = reverse_lookup(loop, *ip, [reply, error_answer](Result<std::string> host) {
      if (!host) return reply(error_answer(host.error()));
      reply(ResolvedBody{{ResolvedAnswer{ResolvedAnswer::Type::hostname, *host, kAnswerTtl}}});
    });
    if (!s->dead) s->resolve_token = std::move(token);
    return;
  }
  auto token = uv::Resolver::resolve(loop, name, 0, [reply, error_answer](Result<uv::Resolver::Answer> a) {
    if (!a) return reply(error_answer(a.error()));
    ResolvedBody r;
    for (const auto& ss : a->addresses) {
      const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
      ResolvedAnswer ans{sa->sa_family == AF_INET ? ResolvedAnswer::Type::ipv4 : ResolvedAnswer::Type::ipv6,
                         uv::sockaddr_ip(sa), kAnswerTtl};
      if (r.answers.size() >= kMaxAnswers) break;
      if (std::find_if(r.answers.begin(), r.answers.end(), [&](const ResolvedAnswer& x) {
            return x.value == ans.value;
          }) == r.answers.end())
        r.answers.push_back(ans);
    }
    reply(std::move(r));
  });
  if (!s->dead) s->resolve_token = std::move(token);
}

}  // namespace thor::relay
