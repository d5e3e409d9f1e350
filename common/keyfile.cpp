#include "common/keyfile.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/crypto/encoding.hpp"

namespace thor {
namespace {
constexpr std::string_view kSecretPrefix = "thor-ed25519-secret-v1 ";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

Status write_new_file(const std::string& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return Error{path + ": already exists; refusing to overwrite a key file"};
    return Error{path + ": cannot create: " + std::strerror(errno)};
  }
  ::fchmod(fd, mode);  // the umask may have removed bits we asked for; never adds any beyond mode
  std::size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(path.c_str());
      return Error{path + ": cannot write: " + why};
    }
    off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) return Error{path + ": cannot write: " + std::strerror(errno)};
  return {};
}

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{path + ": cannot read: " + std::strerror(errno)};
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > 4096) return Error{path + ": too large to be a key file"};
  return s;
}
}  // namespace

Status write_secret_key_file(const std::string& path, const crypto::IdentityKey& key) {
  std::string line = std::string(kSecretPrefix) + crypto::to_base64(key.seed().view()) + "\n";
  auto st = write_new_file(path, line, 0600);
  crypto::wipe(MutableByteView(reinterpret_cast<std::uint8_t*>(line.data()), line.size()));
  return st;
}

Result<crypto::IdentityKey> read_secret_key_file(const std::string& path) {
  auto text = read_small_file(path);
  if (!text) return Error{text.error()};
  std::string s = trim(*text);
  if (s.rfind(kSecretPrefix, 0) != 0)
    return Error{path + ": not a Thor secret key file (expected a line starting '" + std::string(kSecretPrefix) + "')"};
  auto seed = crypto::from_base64(std::string_view(s).substr(kSecretPrefix.size()));
  if (!seed || seed->size() != 32) return Error{path + ": corrupt secret key (expected base64 of 32 bytes)"};
  crypto::Ed25519Seed sk;
  std::copy(seed->begin(), seed->end(), sk.bytes.begin());
  crypto::wipe(MutableByteView(*seed));
  return crypto::IdentityKey::from_seed(sk);
}

Status write_public_key_file(const std::string& path, const crypto::Ed25519Public& key) {
  return write_new_file(path, crypto::to_base64(key.view()) + "\n", 0644);
}

Result<crypto::Ed25519Public> parse_public_key(std::string_view text) {
  std::string s = trim(std::string(text));
  std::optional<Bytes> raw;
  if (s.size() == 64) raw = crypto::from_hex(s);
  if (!raw) raw = crypto::from_base64(s);
  if (!raw || raw->size() != 32) return Error{"not an Ed25519 public key (expected base64 or hex of 32 bytes)"};
  return *crypto::Ed25519Public::from(*raw);
}

Result<crypto::Ed25519Public> read_public_key_file(const std::string& path) {
  auto text = read_small_file(path);
  if (!text) return Error{text.error()};
  if (text->rfind(kSecretPrefix, 0) == 0) {
    // A secret key file also names its public key; accept it so operators can pass either.
    auto k = read_secret_key_file(path);
    if (!k) return Error{k.error()};
    return k->public_key();
  }
  auto key = parse_public_key(*text);
  if (!key) return Error{path + ": " + key.error()};
  return *key;
}

}  // namespace thor
