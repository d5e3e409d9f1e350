// Arbitrary relay payloads through the onion layers: RelayHopCrypto::decrypt_forward and
// ClientCircuitCrypto::decrypt_backward never crash, and a payload that differs from a genuinely
// sealed cell is never recognized.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/crypto/onion.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::crypto;
using thor::fuzz::require;

namespace {

HopKeys keys_for(int hop) {
  DeterministicRng rng(static_cast<std::uint64_t>(100 + hop));
  HopKeys k;
  rng.fill(k.forward_digest.bytes);
  rng.fill(k.backward_digest.bytes);
  rng.fill(k.forward_cipher.bytes);
  rng.fill(k.backward_cipher.bytes);
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_onion", ByteView(data, size));
  CellPayload fuzz{};
  if (size > 0) std::memcpy(fuzz.data(), data, std::min(size, fuzz.size()));

  // Raw bytes as if they arrived on a circuit.
  {
    ClientCircuitCrypto client;
    for (int h = 0; h < 3; ++h) client.add_hop(keys_for(h));
    CellPayload p = fuzz;
    (void)client.decrypt_backward(p);
    RelayHopCrypto relay(keys_for(0));
    p = fuzz;
    (void)relay.decrypt_forward(p);
  }

  // The fuzz bytes XORed onto a genuine cell (bytes past 509 pick the target hop): recognized only
  // when nothing was changed.
  const bool changed = [&] {
    for (auto b : fuzz)
      if (b) return true;
    return false;
  }();
  const std::size_t target = size > fuzz.size() ? data[fuzz.size()] % 3 : 2;
  {
    ClientCircuitCrypto client;
    RelayHopCrypto relays[3] = {RelayHopCrypto(keys_for(0)), RelayHopCrypto(keys_for(1)), RelayHopCrypto(keys_for(2))};
    for (int h = 0; h < 3; ++h) client.add_hop(keys_for(h));
    CellPayload p{};
    client.encrypt_forward(p, target);
    for (std::size_t i = 0; i < p.size(); ++i) p[i] ^= fuzz[i];
    for (std::size_t h = 0; h <= target; ++h) {
      const bool recognized = relays[h].decrypt_forward(p);
      require(recognized == (!changed && h == target), "a changed cell is recognized, or a genuine one is not");
    }

    CellPayload q{};
    relays[target].originate_backward(q);
    for (std::size_t h = target; h-- > 0;) relays[h].encrypt_backward(q);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] ^= fuzz[i];
    auto from = client.decrypt_backward(q);
    require(!from || (!changed && *from == target), "a changed backward cell is recognized, or at the wrong hop");
    require(from || changed, "a genuine backward cell is not recognized");
  }
  return 0;
}
