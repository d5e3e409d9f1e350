// The directory's side of one connection on its --listen port, sans-IO: a decoded message in, the
// frames to send back and whether to close out. The daemon only moves bytes and keeps the consensus.
//
//   new --hello--> challenged --join--> joined --heartbeat--> joined ...
//   any state: get_consensus -> consensus; anything out of order or invalid -> error, close.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bytes.hpp"
#include "common/crypto/keys.hpp"
#include "common/crypto/random.hpp"
#include "common/dir/dir_protocol.hpp"
#include "common/dir/membership.hpp"

namespace thor::dir {

class DirectorySession {
 public:
  struct Env {
    const crypto::IdentityKey* directory = nullptr;
    Membership* members = nullptr;
    crypto::Rng* rng = nullptr;
    std::uint64_t heartbeat_interval_ms = 5000;
  };
  struct Output {
    std::vector<Bytes> frames;       // to send, in order
    bool send_consensus = false;     // then the current consensus frame (the daemon caches it)
    bool close = false;              // close after sending
    std::string problem;             // the peer's mistake, for one warn line; empty when none
    std::uint64_t replaced_session = 0;  // an older connection of the same relay, to be closed
    bool membership_changed = false;
  };
  enum class State { fresh, challenged, joined, closed };

  DirectorySession(Env env, std::uint64_t id) : env_(env), id_(id) {}

  Output on_message(const nlohmann::json& message, std::int64_t now_ms);
  // The connection is gone (EOF, error, timeout): the relay, if any, stops running at once.
  bool on_closed(std::int64_t now_ms);

  State state() const { return state_; }
  std::uint64_t id() const { return id_; }
  const std::optional<crypto::Ed25519Public>& relay() const { return relay_; }

 private:
  Output refuse(const std::string& reason);

  Env env_;
  std::uint64_t id_;
  State state_ = State::fresh;
  Nonce relay_nonce_{};
  Nonce directory_nonce_{};
  std::optional<crypto::Ed25519Public> relay_;
};

}  // namespace thor::dir
