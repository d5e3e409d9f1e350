// A relay's onion keys (X25519): the current one, published in the descriptor, and the previous
// one, kept for one rotation period so that clients holding an older consensus can still build
// circuits through this relay.
#pragma once

#include <optional>
#include <vector>

#include "common/crypto/keys.hpp"
#include "common/crypto/random.hpp"

namespace thor::relay {

class OnionKeyRing {
 public:
  explicit OnionKeyRing(crypto::Rng& rng) : current_(crypto::X25519Keypair::generate(rng)) {}

  const crypto::X25519Keypair& current() const { return current_; }
  bool has_previous() const { return previous_.has_value(); }

  // The current key becomes the previous one (the older previous one is forgotten).
  void rotate(crypto::Rng& rng) {
    previous_ = current_;
    current_ = crypto::X25519Keypair::generate(rng);
  }

  // The keys a CREATE may name, newest first (what ntor_server_handshake takes).
  std::vector<const crypto::X25519Keypair*> usable() const {
    std::vector<const crypto::X25519Keypair*> out{&current_};
    if (previous_) out.push_back(&*previous_);
    return out;
  }

 private:
  crypto::X25519Keypair current_;
  std::optional<crypto::X25519Keypair> previous_;
};

}  // namespace thor::relay
