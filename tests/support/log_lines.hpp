#pragma once
// LogLines: captures reqbus log lines (set_log_sink) while it lives, and puts the default sink
// back when it goes, also when a failed BOOST_REQUIRE leaves the test early.
// Thread-safety: lines may be logged from any thread while with() is called.
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reqbus/log.hpp"

namespace reqbus::test {

class LogLines {
 public:
  LogLines() {
    set_log_sink([this](LogLevel level, std::string_view line) {
      std::lock_guard lock(mu_);
      lines_.push_back({level, std::string(line)});
    });
  }
  ~LogLines() { set_log_sink(nullptr); }
  LogLines(const LogLines&) = delete;
  LogLines& operator=(const LogLines&) = delete;

  // Lines of `level` containing `part`.
  std::vector<std::string> with(LogLevel level, std::string_view part) {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [l, line] : lines_)
      if (l == level && line.find(part) != std::string::npos) out.push_back(line);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

}  // namespace reqbus::test
