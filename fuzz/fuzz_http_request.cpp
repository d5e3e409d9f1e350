// Arbitrary bytes as HTTP requests: the parser never crashes, respects its bounds, and answers the
// same whether the bytes come whole or split at a fuzzed point.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/http/http_request.hpp"

using namespace thor;
using namespace thor::http;

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
    if (n != part.size()) std::abort();  // an incomplete request takes every byte offered
  }
  if (p.state() == RequestParser::State::complete) {
    if (p.request().body.size() > limits.max_body_bytes) std::abort();
    if (p.request().headers.size() > limits.max_headers) std::abort();
  }
  if (p.state() == RequestParser::State::error && p.error_status() < 400) std::abort();
  return {p.state(), p.error_status(), p.request().path, used};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t split = data[0] % size;
  ByteView body(data + 1, size - 1);
  if (split > body.size()) split = body.size();
  Outcome whole = run(body, body.size());
  Outcome parts = run(body, split);
  if (whole.state != parts.state) std::abort();
  if (whole.state == RequestParser::State::complete && (whole.path != parts.path || whole.used != parts.used))
    std::abort();
  return 0;
}
