// reqbus keygen: a CURVE key pair for a node (docs/CLUSTER.md). Prints it in the form the
// config's [security] table and `--curve-secret-file` read; with --out, writes the pair to a
// new file readable only by its owner and prints only the public key.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "app/commands.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {

Run add_keygen(CLI::App& app) {
  auto out = std::make_shared<std::string>();
  CLI::Option* out_flag = app.add_option("-o,--out", *out, "Write the key pair to this new file (mode 0600) instead of stdout");
  return [out, out_flag]() -> int {
    // `--out ""` (an unset variable in a script) must not print the secret key to the terminal.
    if (out_flag->count() > 0 && out->empty()) throw Error(ErrorCode::invalid_argument, "keygen: --out: empty path");
    if (!zmq_has("curve")) throw Error(ErrorCode::transport, "keygen: this libzmq was built without CURVE");
    char public_key[41] = {0}, secret_key[41] = {0};
    if (zmq_curve_keypair(public_key, secret_key) != 0)
      throw Error(ErrorCode::transport, std::string("keygen: zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
    const std::string text = std::string("# reqbus CURVE key pair. Give public_key to the peers that must admit this node\n"
                                         "# (their allowed_clients) or connect to it (their peers: tcp://HOST:PORT#public_key).\n"
                                         "# Keep secret_key private: it is this node's identity.\n") +
                             "public_key = \"" + public_key + "\"\nsecret_key = \"" + secret_key + "\"\n";
    if (out->empty()) {
      std::fputs(text.c_str(), stdout);
      return 0;
    }
    const int fd = ::open(out->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw Error(ErrorCode::storage, "keygen: cannot create " + *out + ": " + std::strerror(errno));
    const bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size());
    ::close(fd);
    if (!ok) throw Error(ErrorCode::storage, "keygen: cannot write " + *out);
    std::printf("public_key = \"%s\"\n", public_key);
    return 0;
  };
}

}  // namespace reqbus::app
