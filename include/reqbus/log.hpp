#pragma once
// Logging: reqbus writes through a LogSink that the embedding program may replace.
// Lines about bad input go through a RateLimiter so a hostile peer cannot flood the log.
// Thread-safety: set_log_sink and log are safe from any thread; RateLimiter is thread-safe.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>

namespace reqbus {

enum class LogLevel : uint8_t { debug, info, warn, error };

using LogSink = std::function<void(LogLevel, std::string_view line)>;

// Replaces the process-wide sink (default: stderr, "reqbus warn: ..."). nullptr restores it.
// The sink is called on the thread that logs, which may be one of the bus's own (the publisher
// thread logs its publish_to endpoints' state): a slow sink delays it. Keep sinks quick.
void set_log_sink(LogSink sink);
void log(LogLevel level, std::string_view line);

// Allows `burst` lines per `window`; counts what it suppresses and reports that count on the
// next line it lets through.
class RateLimiter {
 public:
  explicit RateLimiter(uint32_t burst = 10,
                       std::chrono::milliseconds window = std::chrono::seconds(10))
      : burst_(burst), window_(window) {}
  // Logs the line if allowed; returns whether it was logged.
  bool log(LogLevel level, std::string_view line);
  uint64_t suppressed() const noexcept { return suppressed_total_.load(); }

 private:
  const uint32_t burst_;
  const std::chrono::milliseconds window_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point window_start_{};  // guarded by mu_
  uint32_t in_window_ = 0;                                // guarded by mu_
  uint64_t suppressed_since_last_ = 0;                    // guarded by mu_
  std::atomic<uint64_t> suppressed_total_{0};
};

}  // namespace reqbus
