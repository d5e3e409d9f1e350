// Micro-benchmark of the per-cell and per-link crypto: onion layers, integrity tags, link records of
// 127 cells, and the two handshakes. Prints rates; run on demand, not a test.
//
//   crypto_bench [seconds-per-measurement]   (default 0.5)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "common/crypto/link_session.hpp"
#include "common/crypto/ntor.hpp"
#include "common/crypto/onion.hpp"

using namespace thor;
using namespace thor::crypto;

namespace {

using Clock = std::chrono::steady_clock;
double g_seconds = 0.5;

// Runs op in batches until g_seconds have passed; returns operations per second.
double rate(const std::function<void()>& op, std::size_t batch = 64) {
  for (std::size_t i = 0; i < batch; ++i) op();  // warm-up
  std::size_t done = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    for (std::size_t i = 0; i < batch; ++i) op();
    done += batch;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < g_seconds);
  return static_cast<double>(done) / elapsed;
}

void report_bytes(const char* what, double ops_per_s, std::size_t bytes_per_op) {
  std::printf("%-44s %10.1f MB/s  (%.0f ops/s)\n", what, ops_per_s * static_cast<double>(bytes_per_op) / 1e6,
              ops_per_s);
}

void report_ops(const char* what, double ops_per_s) { std::printf("%-44s %10.0f /s\n", what, ops_per_s); }

HopKeys keys_from(Rng& rng) {
  HopKeys k;
  rng.fill(k.forward_digest.bytes);
  rng.fill(k.backward_digest.bytes);
  rng.fill(k.forward_cipher.bytes);
  rng.fill(k.backward_cipher.bytes);
  return k;
}

volatile std::uint8_t g_sink;  // keeps results observable so nothing is optimized away

// Runs the three handshake messages between a fresh initiator and responder.
bool establish(LinkSession& initiator, LinkSession& responder) {
  auto ignore = [](ByteView) {};
  Bytes w;
  initiator.take_output(w);
  if (!responder.receive(w, ignore).ok()) return false;
  w.clear();
  responder.take_output(w);
  if (!initiator.receive(w, ignore).ok()) return false;
  w.clear();
  initiator.take_output(w);
  return responder.receive(w, ignore).ok() && responder.established();
}

}  // namespace

int main(int argc, char** argv) {
  if (!init()) return 1;
  if (argc > 1) g_seconds = std::atof(argv[1]);
  if (g_seconds <= 0) g_seconds = 0.5;
  DeterministicRng rng(1);

  // ---- onion layers -------------------------------------------------------------------------
  {
    LayerCipher cipher(keys_from(rng).forward_cipher);
    CellPayload p{};
    report_bytes("LayerCipher::apply (509 B payload)", rate([&] { cipher.apply(p); }), kCellPayloadSize);
    g_sink = p[0];
  }
  {
    IntegrityTagger sealer(keys_from(rng).forward_digest);
    CellPayload p{};
    report_bytes("IntegrityTagger::seal (509 B payload)", rate([&] { sealer.seal(p); }), kCellPayloadSize);
    IntegrityTagger checker(keys_from(rng).forward_digest);
    report_bytes("IntegrityTagger::check (tag mismatch)", rate([&] { g_sink = checker.check_and_advance(p); }),
                 kCellPayloadSize);
  }
  {
    // A whole client-side three-hop cell: seal for hop 2 and add three layers.
    ClientCircuitCrypto client;
    for (int i = 0; i < 3; ++i) client.add_hop(keys_from(rng));
    CellPayload p{};
    report_bytes("ClientCircuitCrypto::encrypt_forward (3 hops)", rate([&] { client.encrypt_forward(p, 2); }),
                 kCellPayloadSize);
    RelayHopCrypto middle(keys_from(rng));
    report_bytes("RelayHopCrypto::decrypt_forward (middle)", rate([&] { g_sink = middle.decrypt_forward(p); }),
                 kCellPayloadSize);
  }

  // ---- link records, for each record cipher this machine offers -------------------------------
  for (LinkCipher cipher : {LinkCipher::aes256_gcm, LinkCipher::chacha20_poly1305}) {
    if ((supported_link_ciphers() & cipher_bit(cipher)) == 0) {
      std::printf("link records, %s: not offered on this CPU\n", to_string(cipher).c_str());
      continue;
    }
    const LinkCipherSet only = cipher_bit(cipher);
    const std::string name = to_string(cipher);
    IdentityKey responder_id = IdentityKey::generate(rng);
    // Seal and open use separate links: records sealed for the seal measurement are dropped, which
    // would put a receiver out of step.
    auto initiator = LinkSession::initiator(responder_id.public_key(), nullptr, rng, only);
    auto responder = LinkSession::responder(responder_id, rng, only);
    auto sealer = LinkSession::initiator(responder_id.public_key(), nullptr, rng, only);
    auto sealer_peer = LinkSession::responder(responder_id, rng, only);
    Bytes wire;
    if (!establish(initiator, responder) || !establish(sealer, sealer_peer)) return 1;

    Bytes cell(kCellSize, 0x5a);
    constexpr std::size_t kCells = kLinkMaxCellsPerRecord;
    const std::size_t record_bytes = kCells * kCellSize;
    // Seal: queue 127 cells and take the record (the buffer is recycled as a daemon would).
    report_bytes(("link seal, 127-cell records, " + name).c_str(), rate([&] {
                   for (std::size_t i = 0; i < kCells; ++i) sealer.queue_cell(cell);
                   wire.clear();
                   sealer.take_output(wire);
                 }, 8),
                 record_bytes);

    // Open: seal a batch of records untimed, then time only feeding them to the responder (its
    // receive counter follows the initiator's send counter, so records go in order).
    std::vector<Bytes> records(64);
    std::size_t delivered = 0;
    auto count = [&](ByteView) { ++delivered; };
    for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{16384}, std::size_t{1460}}) {
      double timed = 0;
      std::size_t opened = 0;
      while (timed < g_seconds) {
        for (auto& r : records) {
          for (std::size_t i = 0; i < kCells; ++i) initiator.queue_cell(cell);
          r.clear();
          initiator.take_output(r);
        }
        const auto start = Clock::now();
        for (const auto& r : records) {
          ByteView left(r);
          while (!left.empty()) {
            const std::size_t n = std::min(chunk, left.size());
            if (!responder.receive(left.first(n), count).ok()) std::abort();
            left = left.subspan(n);
          }
        }
        timed += std::chrono::duration<double>(Clock::now() - start).count();
        opened += records.size();
      }
      std::string what = "link open, " + name + ", " +
                         (chunk > record_bytes ? std::string("whole records") : std::to_string(chunk) + " B reads");
      report_bytes(what.c_str(), static_cast<double>(opened) / timed, record_bytes);
    }
    g_sink = static_cast<std::uint8_t>(delivered);
  }

  // ---- handshakes -----------------------------------------------------------------------------
  {
    IdentityKey relay_id = IdentityKey::generate(rng);
    X25519Keypair onion = X25519Keypair::generate(rng);
    const X25519Keypair* keys[] = {&onion};
    report_ops("ntor handshakes (client + relay)", rate([&] {
                 auto c = NtorClient::start(relay_id.public_key(), onion.public_key, rng);
                 auto s = ntor_server_handshake(relay_id.public_key(), keys, c.onion_skin(), rng);
                 if (!s.ok() || !c.finish(s->reply).ok()) std::abort();
               }, 16));
  }
  {
    IdentityKey responder_id = IdentityKey::generate(rng);
    IdentityKey initiator_id = IdentityKey::generate(rng);
    for (bool relay : {false, true}) {
      report_ops(relay ? "link handshakes (relay initiator, both sides)" : "link handshakes (proxy initiator, both sides)",
                 rate([&] {
                   auto i = LinkSession::initiator(responder_id.public_key(), relay ? &initiator_id : nullptr, rng);
                   auto r = LinkSession::responder(responder_id, rng);
                   if (!establish(i, r)) std::abort();
                 }, 16));
    }
  }
  return 0;
}
