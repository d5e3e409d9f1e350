// thor keygen KEYFILE            new Ed25519 identity, mode 0600, prints the public key
// thor keygen --public KEYFILE PUBFILE   writes the public key of a secret key file
#include <iostream>
#include <memory>

#include "app/commands.hpp"
#include "common/crypto/encoding.hpp"
#include "common/keyfile.hpp"

namespace thor::app {

namespace {
struct KeygenOptions {
  bool public_only = false;
  std::vector<std::string> files;
};
}  // namespace

Runner add_keygen_command(CLI::App& app) {
  auto opts = std::make_shared<KeygenOptions>();
  auto* sub = app.add_subcommand("keygen", "Make a new Ed25519 identity key, or write the public key of one");
  sub->add_flag("--public", opts->public_only, "Write the public key of KEYFILE to PUBFILE");
  sub->add_option("files", opts->files, "KEYFILE (and PUBFILE with --public)")->required()->expected(1, 2);
  sub->footer(
      "Examples:\n  thor keygen relay.key\n  thor keygen --public directory.key directory.pub");

  return [opts]() -> int {
    if (opts->public_only) {
      if (opts->files.size() != 2) {
        std::cerr << "thor keygen --public: expected KEYFILE PUBFILE\n";
        return 2;
      }
      auto key = read_secret_key_file(opts->files[0]);
      if (!key) {
        std::cerr << "thor keygen: " << key.error() << "\n";
        return 1;
      }
      if (auto st = write_public_key_file(opts->files[1], key->public_key()); !st) {
        std::cerr << "thor keygen: " << st.error() << "\n";
        return 1;
      }
      std::cout << crypto::to_base64(key->public_key().view()) << "\n";
      return 0;
    }
    if (opts->files.size() != 1) {
      std::cerr << "thor keygen: expected one KEYFILE (use --public KEYFILE PUBFILE for a public key)\n";
      return 2;
    }
    auto key = crypto::IdentityKey::generate(crypto::system_rng());
    if (auto st = write_secret_key_file(opts->files[0], key); !st) {
      std::cerr << "thor keygen: " << st.error() << "\n";
      return 1;
    }
    std::cout << crypto::to_base64(key.public_key().view()) << "\n";
    std::cerr << "fingerprint " << crypto::fingerprint(key.public_key()) << "\n";
    return 0;
  };
}

}  // namespace thor::app
