// Arbitrary text as an exit policy: parse never crashes; what parses prints a canonical form that
// parses back to itself, and every query on it is answered.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/dir/exit_policy.hpp"

using namespace thor;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto p = ExitPolicy::parse(text);
  if (!p) {
    if (p.error().empty()) std::abort();
    return 0;
  }
  std::string canon = p->to_string();
  auto again = ExitPolicy::parse(canon);
  if (!again || again->to_string() != canon) std::abort();
  for (const char* ip : {"127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "2001:4860::8888", "::ffff:127.0.0.1", "junk"})
    for (std::uint16_t port : {1, 22, 80, 443, 65535}) {
      bool allowed = p->allows(ip, port);
      if (allowed != again->allows(ip, port)) std::abort();
    }
  bool any_port = false;
  for (std::uint16_t port : {1, 80, 443, 8080, 65535}) any_port = any_port || p->may_allow_port(port);
  if (any_port && !p->is_exit()) std::abort();
  if (p->is_exit() && !p->accepts_any_destination()) std::abort();
  std::string s = p->summary();
  if (s.rfind("accept ", 0) != 0 && s.rfind("reject ", 0) != 0) std::abort();
  return 0;
}
