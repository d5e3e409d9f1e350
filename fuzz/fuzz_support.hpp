// Shared by the fuzz targets: abort with the failed property and the input bytes, so the input can
// be replayed (hex dump on stderr).
#pragma once

#include <cstdio>
#include <cstdlib>

#include "common/bytes.hpp"

namespace thor::fuzz {

inline void require(bool ok, const char* target, const char* what, ByteView input) {
  if (ok) return;
  std::fprintf(stderr, "%s: %s\ninput:", target, what);
  for (auto b : input) std::fprintf(stderr, " %02x", b);
  std::fprintf(stderr, "\n");
  std::abort();
}

}  // namespace thor::fuzz
