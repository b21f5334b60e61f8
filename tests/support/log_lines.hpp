#pragma once
// LogLines: captures reqbus log lines (set_log_sink) while it lives, and puts the default sink
// back when it goes, also when a failed BOOST_REQUIRE leaves the test early.
// Thread-safety: lines may be logged from any thread while with() is called.
#include <mutex>
#include <string>
#include <string_view>
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

  // One captured line and the level it was logged at.
  struct Line {
    LogLevel level;
    std::string text;
  };

  // Lines of `level` containing `part`.
  std::vector<std::string> with(LogLevel level, std::string_view part) {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [l, line] : lines_)
      if (l == level && line.find(part) != std::string::npos) out.push_back(line);
    return out;
  }

  // Lines of any level containing `part` (every line when `part` is empty), in the order they
  // were logged, each with its level: for a test that does not care at which level a line
  // came, or that checks the level of the first one.
  std::vector<Line> any_level(std::string_view part) {
    std::lock_guard lock(mu_);
    std::vector<Line> out;
    for (const Line& line : lines_)
      if (line.text.find(part) != std::string::npos) out.push_back(line);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<Line> lines_;
};

}  // namespace reqbus::test
