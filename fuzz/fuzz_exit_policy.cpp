// Arbitrary text as an exit policy: parse never crashes; what parses prints a canonical form that
// parses back to itself, and every query on it is answered.
#include <cstdint>
#include <string>

#include "common/dir/exit_policy.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using thor::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_exit_policy", ByteView(data, size));
  std::string text(reinterpret_cast<const char*>(data), size);
  auto p = ExitPolicy::parse(text);
  if (!p) {
    require(!p.error().empty(), "policy error without a message");
    return 0;
  }
  std::string canon = p->to_string();
  auto again = ExitPolicy::parse(canon);
  require(again && again->to_string() == canon, "the canonical form does not parse back to itself");
  for (const char* ip : {"127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "2001:4860::8888", "::ffff:127.0.0.1", "junk"})
    for (std::uint16_t port : {1, 22, 80, 443, 65535}) {
      bool allowed = p->allows(ip, port);
      require(allowed == again->allows(ip, port), "the canonical form decides differently");
    }
  bool any_port = false;
  for (std::uint16_t port : {1, 80, 443, 8080, 65535}) any_port = any_port || p->may_allow_port(port);
  require(!any_port || p->is_exit(), "a port may be allowed but the policy is not an exit");
  require(!p->is_exit() || p->accepts_any_destination(), "an exit that accepts no destination");
  std::string s = p->summary();
  require(s.rfind("accept ", 0) == 0 || s.rfind("reject ", 0) == 0, "summary is neither accept nor reject");
  return 0;
}
