#include "common/dir/dir_session.hpp"

namespace thor::dir {

using nlohmann::json;

DirectorySession::Output DirectorySession::refuse(const std::string& reason) {
  Output out;
  out.frames.push_back(encode_frame(make_error(reason)));
  out.close = true;
  out.problem = reason;
  state_ = State::closed;
  return out;
}

DirectorySession::Output DirectorySession::on_message(const json& m, std::int64_t now_ms) {
  if (state_ == State::closed) return Output{{}, false, true, "", 0, false};
  const std::string type = message_type(m);

  if (type == "get_consensus") {
    Output out;
    out.send_consensus = true;
    return out;
  }

  if (type == "hello") {
    if (state_ != State::fresh) return refuse("hello sent twice on one connection");
    auto h = parse_hello(m);
    if (!h) return refuse(h.error());
    relay_nonce_ = h->nonce;
    env_.rng->fill(directory_nonce_);
    state_ = State::challenged;
    Output out;
    out.frames.push_back(encode_frame(make_challenge(relay_nonce_, directory_nonce_, *env_.directory)));
    return out;
  }

  if (type == "join") {
    if (state_ == State::fresh) return refuse("join before hello: send hello and answer the challenge first");
    if (state_ == State::joined) return refuse("already joined on this connection; reconnect to publish a new descriptor");
    auto j = parse_join(m);
    if (!j) {
      env_.members->count_refused_join();
      return refuse(j.error());
    }
    auto d = verify_join(*j, relay_nonce_, directory_nonce_, env_.directory->public_key(), now_ms / 1000);
    if (!d) {
      env_.members->count_refused_join();
      return refuse("join refused: " + d.error());
    }
    auto joined = env_.members->join(*d, id_, now_ms);
    if (!joined) return refuse("join refused: " + joined.error());
    relay_ = d->identity;
    state_ = State::joined;
    Output out;
    out.frames.push_back(encode_frame(make_welcome(env_.heartbeat_interval_ms, crypto::fingerprint(d->identity))));
    out.replaced_session = joined->replaced_session;
    out.membership_changed = true;
    return out;
  }

  if (type == "heartbeat") {
    if (state_ != State::joined) return refuse("heartbeat before a successful join");
    auto seq = parse_heartbeat(m);
    if (!seq) return refuse(seq.error());
    if (!env_.members->heartbeat(*relay_, id_, now_ms)) {
      // Not a mistake of the peer: its registration expired or a newer connection took it over.
      Output out = refuse("registration expired or replaced by a newer connection; rejoin");
      out.problem.clear();
      return out;
    }
    Output out;
    out.frames.push_back(encode_frame(make_heartbeat_ack(*seq)));
    return out;
  }

  if (type == "error") {
    auto reason = parse_error(m);
    Output out;
    out.close = true;
    out.problem = "peer reported an error: " + (reason ? *reason : std::string("(unreadable)"));
    state_ = State::closed;
    return out;
  }

  std::string shown = type.substr(0, 64);
  return refuse("unknown message type '" + shown + "'");
}

bool DirectorySession::on_closed(std::int64_t now_ms) {
  bool was_joined = state_ == State::joined;
  state_ = State::closed;
  if (!was_joined || !relay_) return false;
  auto gen = env_.members->generation();
  env_.members->disconnect(*relay_, id_, now_ms);
  return env_.members->generation() != gen;
}

}  // namespace thor::dir
