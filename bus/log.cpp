#include <cstdio>
#include <memory>
#include <string>

#include "reqbus/log.hpp"

namespace reqbus {
namespace {

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "?";
}

std::mutex g_sink_mu;
std::shared_ptr<LogSink> g_sink;  // guarded by g_sink_mu; null = stderr

}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard lock(g_sink_mu);
  g_sink = sink ? std::make_shared<LogSink>(std::move(sink)) : nullptr;
}

void log(LogLevel level, std::string_view line) {
  std::shared_ptr<LogSink> sink;
  {
    std::lock_guard lock(g_sink_mu);
    sink = g_sink;
  }
  if (sink) {
    (*sink)(level, line);
    return;
  }
  std::fprintf(stderr, "reqbus %s: %.*s\n", level_name(level), int(line.size()), line.data());
}

bool RateLimiter::log(LogLevel level, std::string_view line) {
  uint64_t suppressed = 0;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= window_) {
      window_start_ = now;
      in_window_ = 0;
    }
    if (in_window_ >= burst_) {
      ++suppressed_since_last_;
      suppressed_total_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    ++in_window_;
    suppressed = suppressed_since_last_;
    suppressed_since_last_ = 0;
  }
  if (suppressed == 0) {
    reqbus::log(level, line);
  } else {
    std::string text(line);
    text += " (" + std::to_string(suppressed) + " similar lines suppressed)";
    reqbus::log(level, text);
  }
  return true;
}

}  // namespace reqbus
