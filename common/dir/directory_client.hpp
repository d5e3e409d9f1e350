// The directory's clients, on a libuv loop: fetching a verified consensus (proxies, relays) and a
// relay's registration (join with proof of key, heartbeats, rejoin after the directory restarts).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

#include "common/crypto/keys.hpp"
#include "common/dir/documents.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"

namespace thor::dir {

// Fetches the consensus from the directory at `directory` (HOST:PORT of its relay/client port),
// verifies it with the pinned key, and calls done once. Destroying the returned handle cancels;
// done may destroy it.
std::shared_ptr<void> fetch_consensus(uv_loop_t* loop, const HostPort& directory,
                                      const crypto::Ed25519Public& directory_key,
                                      std::function<void(Result<Consensus>)> done);

// Keeps a relay registered: connects, proves its identity, publishes the descriptor, heartbeats at
// the interval the directory asks for, reconnects with backoff whenever the connection drops.
class RelayRegistration {
 public:
  struct Options {
    HostPort directory;
    crypto::Ed25519Public directory_key;
    const crypto::IdentityKey* identity = nullptr;     // outlives the registration
    std::function<RelayDescriptor()> make_descriptor;  // called at each (re)join: fresh onion key etc.
    std::uint64_t min_retry_ms = 200;
    std::uint64_t max_retry_ms = 5000;
  };
  RelayRegistration(uv_loop_t* loop, Options options);
  ~RelayRegistration();
  void start();
  void stop();
  bool joined() const;
  // Called every time a join is accepted (also after a rejoin). It may stop() or destroy the registration.
  void on_joined(std::function<void()> cb);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace thor::dir
