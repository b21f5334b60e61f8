#pragma once
// Names the calling thread (shown by top -H, ps -L, gdb, perf): "rb-" + what it does. Linux
// keeps 15 bytes; longer names are cut. Best effort: a failure changes nothing else.
#include <pthread.h>

#include <string>
#include <thread>
#include <utility>

namespace reqbus::detail {

inline void name_this_thread(const std::string& name) {
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
}

// A thread that names itself `name`, then runs `body` (which may be move-only and mutable).
template <class F>
std::thread named_thread(const char* name, F&& body) {
  return std::thread([name, body = std::forward<F>(body)]() mutable {
    name_this_thread(name);
    body();
  });
}

}  // namespace reqbus::detail
