#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "common/crypto/encoding.hpp"
#include "common/crypto/hash.hpp"
#include "common/crypto/keys.hpp"
#include "common/keyfile.hpp"

using namespace thor;
using namespace thor::crypto;

TEST_CASE("Ed25519 identity: sign, verify, tamper, wrong key") {
  DeterministicRng rng(1);
  auto k = IdentityKey::generate(rng);
  auto other = IdentityKey::generate(rng);
  auto msg = as_bytes("hello thor");
  auto sig = k.sign(msg);
  CHECK(verify(k.public_key(), msg, sig));
  CHECK_FALSE(verify(other.public_key(), msg, sig));
  auto bad = sig;
  bad.bytes[5] ^= 1;
  CHECK_FALSE(verify(k.public_key(), msg, bad));
  CHECK(fingerprint(k.public_key()).size() == 40);
}

TEST_CASE("DeterministicRng is reproducible; successive draws differ") {
  DeterministicRng a(7), b(7);
  std::array<std::uint8_t, 16> x{}, y{}, z{};
  a.fill(x);
  b.fill(y);
  a.fill(z);
  CHECK(x == y);
  CHECK(x != z);
  for (int i = 0; i < 100; ++i) CHECK(a.uniform(3) < 3);
}

TEST_CASE("X25519 agreement and low-order points refused") {
  DeterministicRng rng(2);
  auto a = X25519Keypair::generate(rng);
  auto b = X25519Keypair::generate(rng);
  auto s1 = x25519(a.secret, b.public_key);
  auto s2 = x25519(b.secret, a.public_key);
  REQUIRE(s1);
  REQUIRE(s2);
  CHECK(*s1 == *s2);
  X25519Public zero;
  CHECK_FALSE(x25519(a.secret, zero));
}

TEST_CASE("hex and base64 round trips and refusals") {
  Bytes data{0, 1, 2, 0xfe, 0xff};
  CHECK(to_hex(data) == "000102feff");
  CHECK(*from_hex("000102FEFF") == data);
  CHECK_FALSE(from_hex("0g"));
  CHECK_FALSE(from_hex("abc"));
  CHECK(*from_base64(to_base64(data)) == data);
  CHECK_FALSE(from_base64("!!!"));
}

TEST_CASE("kdf_expand separates labels and is deterministic") {
  SymmetricKey k;
  k.bytes.fill(7);
  std::array<std::uint8_t, 80> a{}, b{}, c{};
  kdf_expand(k, "one", a);
  kdf_expand(k, "one", b);
  kdf_expand(k, "two", c);
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("key files: mode 0600, no overwrite, round trip, clear errors") {
  char dir_tmpl[] = "/tmp/thor-keys-XXXXXX";
  REQUIRE(mkdtemp(dir_tmpl));
  std::string dir = dir_tmpl;
  auto key = IdentityKey::generate(system_rng());
  std::string sk = dir + "/id.key", pk = dir + "/id.pub";
  REQUIRE(write_secret_key_file(sk, key));
  struct stat st {};
  REQUIRE(::stat(sk.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(write_secret_key_file(sk, key));
  auto back = read_secret_key_file(sk);
  REQUIRE(back);
  CHECK(back->public_key() == key.public_key());
  REQUIRE(write_public_key_file(pk, key.public_key()));
  auto pub = read_public_key_file(pk);
  REQUIRE(pub);
  CHECK(*pub == key.public_key());
  CHECK(*read_public_key_file(sk) == key.public_key());
  auto missing = read_secret_key_file(dir + "/nope");
  CHECK_FALSE(missing);
  CHECK(missing.error().find("cannot read") != std::string::npos);
  std::ofstream(dir + "/junk") << "not a key\n";
  CHECK_FALSE(read_secret_key_file(dir + "/junk"));
  CHECK_FALSE(read_public_key_file(dir + "/junk"));
  CHECK(parse_public_key(to_hex(key.public_key().view())));
  std::system(("rm -rf " + dir).c_str());
}
