// Link session input from an untrusted peer: bytes to a responder before any hello, to a responder
// after a valid hello, to an initiator that sent its hello (fuzz bytes as the response), and to an
// initiator whose handshake completed (fuzz bytes as records). The first byte picks the fragment
// size, so partial records and split headers are exercised too. Never crashes; an error ends it.
#include <algorithm>
#include <cstdint>

#include "common/crypto/link_session.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::crypto;
using thor::fuzz::require;

namespace {

const IdentityKey& responder_key() {
  static const IdentityKey key = [] {
    DeterministicRng rng(1);
    return IdentityKey::generate(rng);
  }();
  return key;
}

// The initiator with seed 2 always sends the same hello; the responder with seed 3 always answers
// it the same way, so each input starts from the same handshake.
LinkSession make_initiator() {
  DeterministicRng rng(2);
  return LinkSession::initiator(responder_key().public_key(), nullptr, rng);
}
LinkSession make_responder() {
  DeterministicRng rng(3);
  return LinkSession::responder(responder_key(), rng);
}

const Bytes& valid_hello() {
  static const Bytes hello = [] {
    auto i = make_initiator();
    Bytes out;
    i.take_output(out);
    return out;
  }();
  return hello;
}

const Bytes& valid_response() {
  static const Bytes response = [] {
    auto r = make_responder();
    Bytes out;
    require(r.receive(valid_hello(), [](ByteView) {}).ok(), "the responder refuses a valid hello");
    r.take_output(out);
    return out;
  }();
  return response;
}

void feed(LinkSession& s, ByteView data, std::size_t chunk) {
  auto on_cell = [](ByteView cell) {
    require(cell.size() == kCellSize, "a cell of the wrong size");
  };
  while (!data.empty()) {
    const std::size_t n = std::min(chunk, data.size());
    if (!s.receive(data.first(n), on_cell).ok()) {
      // A failed session stays failed and sends nothing more.
      require(!s.receive(data.first(n), on_cell).ok() && !s.has_output(), "a failed session took input or sent more");
      return;
    }
    data = data.subspan(n);
  }
  // Whatever it has to send can be taken.
  s.queue_cell(Bytes(kCellSize, 0));
  Bytes out;
  s.take_output(out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_link_session", ByteView(data, size));
  if (size == 0) return 0;
  const std::size_t chunk = data[0] == 0 ? size : data[0];
  ByteView input(data + 1, size - 1);

  {
    auto r = make_responder();
    feed(r, input, chunk);
  }
  {
    auto r = make_responder();
    require(r.receive(valid_hello(), [](ByteView) {}).ok(), "the responder refuses a valid hello");
    feed(r, input, chunk);
  }
  {
    auto i = make_initiator();
    feed(i, input, chunk);
  }
  {
    auto i = make_initiator();
    require(i.receive(valid_response(), [](ByteView) {}).ok() && i.established(),
            "the initiator refuses a valid response");
    feed(i, input, chunk);
  }
  return 0;
}
