// Shared by the fuzz targets: a failed property aborts with the target's name, the property and the
// input bytes (hex dump on stderr), so the input can be replayed.
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

// The run in progress, so that properties checked deep inside a target's helpers can still print
// the input. Each run is one call of LLVMFuzzerTestOneInput; libFuzzer and standalone_main.cpp make
// them one at a time.
struct Run {
  const char* target = "fuzz";
  ByteView input;
};
inline Run current_run;

// Call first in LLVMFuzzerTestOneInput, with the bytes that replay the run (the target's own input,
// or what it built from it when that says more).
inline void set_input(const char* target, ByteView input) { current_run = Run{target, input}; }

inline void require(bool ok, const char* what) { require(ok, current_run.target, what, current_run.input); }

}  // namespace thor::fuzz
