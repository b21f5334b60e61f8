#pragma once
// Names the calling thread (shown by top -H, ps -L, gdb, perf): "rb-" + what it does. Linux
// keeps 15 bytes; longer names are cut. Best effort: a failure changes nothing else.
#include <pthread.h>

#include <string>

namespace reqbus::detail {

inline void name_this_thread(const std::string& name) {
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace reqbus::detail
