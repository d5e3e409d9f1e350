#include "relay/reverse_lookup.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

#include "common/net_address.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"

namespace thor::relay {

namespace {
bool ends_with(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

std::vector<std::string_view> split_dots(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}
}  // namespace

std::optional<std::string> reverse_name_to_ip(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (ends_with(name, ".in-addr.arpa")) {
    auto labels = split_dots(name.substr(0, name.size() - std::string_view(".in-addr.arpa").size()));
    if (labels.size() != 4) return std::nullopt;
    std::string ip;
    for (auto it = labels.rbegin(); it != labels.rend(); ++it) {
      if (!ip.empty()) ip += '.';
      ip += std::string(*it);
    }
    if (!is_ipv4_literal(ip)) return std::nullopt;
    return ip;
  }
  if (ends_with(name, ".ip6.arpa")) {
    auto labels = split_dots(name.substr(0, name.size() - std::string_view(".ip6.arpa").size()));
    if (labels.size() != 32) return std::nullopt;
    std::string ip;
    int n = 0;
    for (auto it = labels.rbegin(); it != labels.rend(); ++it, ++n) {
      if (it->size() != 1 || !std::isxdigit(static_cast<unsigned char>((*it)[0]))) return std::nullopt;
      if (n > 0 && n % 4 == 0) ip += ':';
      ip += static_cast<char>(std::tolower(static_cast<unsigned char>((*it)[0])));
    }
    if (!is_ipv6_literal(ip)) return std::nullopt;
    return ip;
  }
  return std::nullopt;
}

std::shared_ptr<void> reverse_lookup(uv_loop_t* loop, const std::string& ip,
                                     std::function<void(Result<std::string>)> done) {
  struct Pending {
    uv_getnameinfo_t req{};
    std::function<void(Result<std::string>)> cb;
    std::weak_ptr<int> token;
  };
  auto token = std::make_shared<int>(0);
  auto addr = uv::numeric_sockaddr(HostPort{ip, 0});
  if (!addr) {
    done(Error{addr.error()});
    return token;
  }
  auto* p = new Pending{{}, std::move(done), token};
  p->req.data = p;
  int rc = uv_getnameinfo(
      loop, &p->req,
      [](uv_getnameinfo_t* req, int status, const char* host, const char*) {
        std::unique_ptr<Pending> p(static_cast<Pending*>(req->data));
        if (!p->token.lock()) return;
        if (status != 0 || !host)
          p->cb(Error{"reverse lookup failed: " + uv::error_text(status)});
        else
          p->cb(std::string(host));
      },
      reinterpret_cast<const sockaddr*>(&*addr), NI_NAMEREQD);
  if (rc != 0) {
    auto cb = std::move(p->cb);
    delete p;
    cb(Error{"reverse lookup failed: " + uv::error_text(rc)});
  }
  return token;
}

}  // namespace thor::relay
