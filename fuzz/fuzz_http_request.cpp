// Arbitrary bytes as HTTP requests: the parser never crashes, respects its bounds, and answers the
// same whether the bytes come whole or split at a fuzzed point.
#include <cstdint>
#include <string>

#include "common/http/http_request.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using namespace thor::http;
using thor::fuzz::require;

namespace {

struct Outcome {
  RequestParser::State state;
  int status;
  std::string path;
  std::size_t used;
};

Outcome run(ByteView data, std::size_t split) {
  Limits limits;
  limits.max_header_bytes = 2048;
  limits.max_body_bytes = 256;
  RequestParser p(limits);
  std::size_t used = 0;
  for (ByteView part : {data.subspan(0, split), data.subspan(split)}) {
    std::size_t n = p.feed(part);
    used += n;
    if (p.state() != RequestParser::State::incomplete) break;
    require(n == part.size(), "an incomplete request did not take every byte offered");
  }
  if (p.state() == RequestParser::State::complete) {
    require(p.request().body.size() <= limits.max_body_bytes, "body over the limit");
    require(p.request().headers.size() <= limits.max_headers, "more headers than the limit");
  }
  require(p.state() != RequestParser::State::error || p.error_status() >= 400, "an error status below 400");
  return {p.state(), p.error_status(), p.request().path, used};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_http_request", ByteView(data, size));
  if (size == 0) return 0;
  std::size_t split = data[0] % size;
  ByteView body(data + 1, size - 1);
  if (split > body.size()) split = body.size();
  Outcome whole = run(body, body.size());
  Outcome parts = run(body, split);
  require(whole.state == parts.state, "state depends on how the input was split");
  require(whole.state != RequestParser::State::complete || (whole.path == parts.path && whole.used == parts.used),
          "request depends on how the input was split");
  return 0;
}
