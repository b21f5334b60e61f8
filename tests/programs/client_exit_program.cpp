// client_exit_program: proves that a reqbus::Client delivers what it queued when the process
// exits without close(). Driven by tests/client_test.cpp.
//   client_exit_program BASE_URL MODE
// MODE:
//   leak       a heap Client that is never deleted: only the std::atexit close sends its events
//   static     a function-static Client, destroyed by static destruction at exit
//   destroyed  a Client destroyed before main returns, then a leaked one: the exit handler must
//              skip the destroyed client safely and close the live one
// flush_interval is one hour, so nothing is sent before exit. Exit status 0 on success.
#include <chrono>
#include <cstdio>
#include <string>

#include "reqbus/client.hpp"

namespace {

reqbus::ClientOptions options(const char* base_url) {
  reqbus::ClientOptions o;
  o.api_key = "exit-key";
  o.base_url = base_url;
  o.flush_interval = std::chrono::hours(1);
  o.close_timeout = std::chrono::seconds(10);
  return o;
}

bool enqueue(reqbus::Client& client, const std::string& tag, int n) {
  for (int i = 0; i < n; ++i)
    if (!client.track("exit-user", tag + "-" + std::to_string(i)).ok()) return false;
  return true;
}

}  // namespace

// The "leak" and "destroyed" modes leak a Client on purpose: that is what is under test.
// LeakSanitizer (ASan builds) is told to treat it as reachable.
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#define REQBUS_INTENDED_LEAK(p) __lsan_ignore_object(p)
#else
#define REQBUS_INTENDED_LEAK(p) (void)(p)
#endif

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: client_exit_program BASE_URL leak|static|destroyed\n");
    return 2;
  }
  const std::string mode = argv[2];
  if (mode == "leak") {
    auto* client = new reqbus::Client(options(argv[1]));  // never deleted, on purpose
    REQBUS_INTENDED_LEAK(client);
    return enqueue(*client, "leak", 3) ? 0 : 1;
  }
  if (mode == "static") {
    static reqbus::Client client(options(argv[1]));
    return enqueue(client, "static", 2) ? 0 : 1;
  }
  if (mode == "destroyed") {
    {
      reqbus::Client first(options(argv[1]));
      if (!enqueue(first, "first", 1)) return 1;
    }
    auto* second = new reqbus::Client(options(argv[1]));
    REQBUS_INTENDED_LEAK(second);
    return enqueue(*second, "second", 1) ? 0 : 1;
  }
  std::fprintf(stderr, "unknown mode %s\n", argv[2]);
  return 2;
}
