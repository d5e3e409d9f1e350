// Directory protocol bytes from a peer: framed in pieces of fuzzed sizes, each message given to every
// validator and to the directory's session state machine. Nothing crashes; the frame reader answers
// the same whole or split; invalid is final.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/dir/dir_protocol.hpp"
#include "common/dir/dir_session.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::dir;
using nlohmann::json;
using thor::fuzz::require;

namespace {

std::vector<json> read_all(ByteView data, std::size_t chunk, bool& invalid) {
  FrameReader r;
  std::vector<json> out;
  invalid = false;
  for (std::size_t off = 0; off < data.size() && !invalid; off += chunk) {
    r.append(data.subspan(off, std::min(chunk, data.size() - off)));
    for (;;) {
      auto d = r.next();
      if (d.is_incomplete()) break;
      if (d.is_invalid()) {
        invalid = true;
        require(r.next().is_invalid(), "the frame reader recovered after invalid input");
        break;
      }
      out.push_back(std::move(*d.value));
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_dir_message", ByteView(data, size));
  if (size == 0) return 0;
  std::size_t chunk = 1 + data[0] % 17;
  ByteView body(data + 1, size - 1);
  bool invalid_whole = false, invalid_split = false;
  auto whole = read_all(body, body.size() + 1, invalid_whole);
  auto split = read_all(body, chunk, invalid_split);
  require(whole.size() == split.size() && invalid_whole == invalid_split, "frames depend on how the input was split");

  static crypto::DeterministicRng rng(5);
  static const crypto::IdentityKey dir = crypto::IdentityKey::generate(rng);
  Membership members(Membership::Limits{1000, 16, 3600 * 1000});
  DirectorySession session(DirectorySession::Env{&dir, &members, &rng, 1000}, 1);
  std::int64_t now_ms = 1700000000000;
  for (const auto& m : whole) {
    (void)parse_hello(m);
    (void)parse_challenge(m);
    (void)parse_join(m);
    (void)parse_welcome(m);
    (void)parse_heartbeat(m);
    (void)parse_heartbeat_ack(m);
    (void)parse_consensus_message(m);
    (void)parse_error(m);
    auto out = session.on_message(m, now_ms);
    require(!(out.close && out.frames.empty() && session.state() != DirectorySession::State::closed),
            "the session closes silently without reaching closed");
    now_ms += 100;
  }
  session.on_closed(now_ms);
  require(members.running_count() == 0, "a closed session left a relay running");
  return 0;
}
