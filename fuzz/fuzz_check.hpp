#pragma once
// REQBUS_FUZZ_CHECK(cond, what): an invariant of a fuzz entry point. In a libFuzzer binary a
// violation prints the message and aborts (libFuzzer saves the input as a crash); when
// tests/fuzz_regression_test.cpp replays inputs (REQBUS_FUZZ_NO_MAIN defined) it throws
// InvariantViolation so Boost.Test reports the file and carries on with the next one.
// Thread-safety: stateless.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace reqbus::fuzz {

struct InvariantViolation : std::logic_error {
  using std::logic_error::logic_error;
};

[[noreturn]] inline void invariant_failed(const char* condition, const std::string& what,
                                          const char* file, int line) {
  const std::string message = std::string(file) + ":" + std::to_string(line) + ": invariant (" +
                              condition + ") violated: " + what;
#ifdef REQBUS_FUZZ_NO_MAIN
  throw InvariantViolation(message);
#else
  std::fprintf(stderr, "%s\n", message.c_str());
  std::abort();
#endif
}

}  // namespace reqbus::fuzz

#define REQBUS_FUZZ_CHECK(cond, what) \
  do {                                \
    if (!(cond)) ::reqbus::fuzz::invariant_failed(#cond, (what), __FILE__, __LINE__); \
  } while (0)

// Defines the libFuzzer entry point calling `fn` unless the file is included by the
// regression test.
#ifdef REQBUS_FUZZ_NO_MAIN
#define REQBUS_FUZZ_ENTRY(fn)
#else
#define REQBUS_FUZZ_ENTRY(fn)                                                  \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    fn(data, size);                                                            \
    return 0;                                                                  \
  }
#endif
