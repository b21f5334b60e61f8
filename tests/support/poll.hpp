#pragma once
// poll_until: waits for a condition on another thread's or process's state (a counter, a row
// count, a server's metrics), checking it every `every` until it holds or `timeout` passes.
// Returns whether it held. A condition with a deadline, never a fixed sleep.
#include <chrono>
#include <thread>

namespace reqbus::test {

template <class Pred>
bool poll_until(Pred&& pred, std::chrono::milliseconds timeout = std::chrono::seconds(10),
                std::chrono::milliseconds every = std::chrono::milliseconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
  return true;
}

}  // namespace reqbus::test
