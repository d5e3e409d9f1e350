// Runs a libFuzzer target without libFuzzer: over the files named on the command line, or over a
// deterministic stream of random and mutated inputs (--iterations N). A crash or sanitizer report
// fails the run; reaching the end passes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "common/crypto/keys.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int*, char***);

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  thor::crypto::init();
  long iterations = 0;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) iterations = std::atol(argv[++i]);
    else files.emplace_back(argv[i]);
  }
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::vector<std::uint8_t> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::mt19937_64 rng(12345);
  std::vector<std::uint8_t> last;
  for (long i = 0; i < iterations; ++i) {
    std::vector<std::uint8_t> in;
    if (!last.empty() && (rng() & 1)) {
      in = last;  // mutate the previous input: flip, insert, truncate
      int edits = 1 + static_cast<int>(rng() % 8);
      for (int e = 0; e < edits && !in.empty(); ++e) {
        std::size_t pos = rng() % in.size();
        switch (rng() % 4) {
          case 0: in[pos] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
          case 1: in[pos] = static_cast<std::uint8_t>(rng()); break;
          case 2: in.insert(in.begin() + static_cast<long>(pos), static_cast<std::uint8_t>(rng())); break;
          case 3: in.resize(pos); break;
        }
      }
    } else {
      std::size_t n = rng() % 1100;
      in.resize(n);
      for (auto& b : in) b = static_cast<std::uint8_t>(rng());
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
    last = std::move(in);
  }
  std::printf("ran %zu files and %ld generated inputs\n", files.size(), iterations);
  return 0;
}
