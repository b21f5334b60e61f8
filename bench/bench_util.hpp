#pragma once
// Helpers shared by reqbus's benchmark programs (bench/): a monotonic clock comparable across
// processes, order statistics, the common command-line flags, result printing (a table for
// people, `--json` one object per line for machines), and a child-process helper for
// benchmarks whose other side must run in a separate process.
//
// --json prints one line per case:
//   {"name":"bus_inproc","value":1650000,"unit":"events/s","baseline":"raw_inproc","ratio":0.91,...}
// `baseline` names the case `value` is compared with in the same run (null if none) and
// `ratio` is value / baseline's value (null if none); any further keys are case-specific.
//
// Thread-safety: the free functions are pure or only touch their arguments; Child is owned by
// one thread.
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern char** environ;

namespace reqbus::bench {

// CLOCK_MONOTONIC in nanoseconds: the same clock in every process on the machine, so a child
// can report when it received its last event and the parent can subtract its own start time.
inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// CPU time consumed so far by this process, all threads (CLOCK_PROCESS_CPUTIME_ID). On a
// shared machine events/s depends on what else runs; CPU per event mostly does not.
inline uint64_t cpu_now_ns() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// The 1/5/15-minute load averages ("1.02 0.80 0.51"): how busy the machine was. Benchmarks
// print it because on a shared machine it explains most of the variance.
inline std::string load_average() {
  std::string text;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[64] = {0};
    if (std::fgets(buf, sizeof(buf), f)) text = buf;
    std::fclose(f);
  }
  size_t fields = 0, end = 0;
  for (; end < text.size() && fields < 3; ++end)
    if (text[end] == ' ' && ++fields == 3) break;
  return text.substr(0, end);
}

// Nearest-rank percentile, p in [0, 100]. Sorts a copy; NaN for an empty sample.
template <class T>
double percentile(std::vector<T> sample, double p) {
  if (sample.empty()) return std::nan("");
  const size_t rank = size_t(std::ceil(p / 100.0 * double(sample.size())));
  const size_t index = rank == 0 ? 0 : std::min(rank - 1, sample.size() - 1);
  std::nth_element(sample.begin(), sample.begin() + index, sample.end());
  return double(sample[index]);
}

// The median (mean of the two middle values for an even count). NaN for an empty sample.
template <class T>
double median(std::vector<T> sample) {
  if (sample.empty()) return std::nan("");
  std::sort(sample.begin(), sample.end());
  const size_t n = sample.size();
  return n % 2 ? double(sample[n / 2]) : (double(sample[n / 2 - 1]) + double(sample[n / 2])) / 2;
}

// value / baseline, NaN when either is missing or the baseline is zero.
inline double ratio(double value, double baseline) {
  if (std::isnan(value) || std::isnan(baseline) || baseline == 0) return std::nan("");
  return value / baseline;
}

// Flags every benchmark accepts. Unknown arguments are left in `rest` for the program.
struct CommonFlags {
  uint64_t events = 1000000;  // --events N: events per run
  int runs = 5;               // --runs N: repetitions; results are medians over runs
  bool json = false;          // --json: one JSON object per case per line, nothing else on stdout
  bool quick = false;         // --quick: a short smoke run for CI (fewer events, one run)
  std::vector<std::string> rest;
};

// Parses the common flags; throws std::invalid_argument naming the flag on a bad value.
// --quick sets events to `quick_events` and runs to 1 unless they are given explicitly.
inline CommonFlags parse_common_flags(int argc, char** argv, uint64_t quick_events) {
  CommonFlags f;
  bool events_set = false, runs_set = false;
  auto number = [&](int& i, const char* flag) -> uint64_t {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(flag) + ": missing value");
    char* end = nullptr;
    const unsigned long long v = std::strtoull(argv[++i], &end, 10);
    if (end == argv[i] || *end != '\0' || v == 0)
      throw std::invalid_argument(std::string(flag) + ": expected a positive integer, got '" +
                                  argv[i] + "'");
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--events") {
      f.events = number(i, "--events");
      events_set = true;
    } else if (a == "--runs") {
      f.runs = int(std::min<uint64_t>(number(i, "--runs"), 1000));
      runs_set = true;
    } else if (a == "--json") {
      f.json = true;
    } else if (a == "--quick") {
      f.quick = true;
    } else {
      f.rest.emplace_back(a);
    }
  }
  if (f.quick) {
    if (!events_set) f.events = quick_events;
    if (!runs_set) f.runs = 1;
  }
  return f;
}

// --- results --------------------------------------------------------------------------------

inline std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

inline std::string json_number(double v) {
  if (std::isnan(v) || std::isinf(v)) return "null";
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  else
    std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

// One benchmark case's outcome, already aggregated over runs.
struct Result {
  std::string name;
  double value = std::nan("");
  std::string unit;
  std::string baseline;             // "" = none
  double ratio = std::nan("");      // value / baseline's value
  // Case-specific keys, values already in JSON form (use json_number / quoted strings).
  std::vector<std::pair<std::string, std::string>> extra;

  Result& add(std::string key, double v) {
    extra.emplace_back(std::move(key), json_number(v));
    return *this;
  }
  Result& add(std::string key, std::string_view text) {
    extra.emplace_back(std::move(key), "\"" + json_escape(text) + "\"");
    return *this;
  }
  Result& add(std::string key, bool v) {
    extra.emplace_back(std::move(key), v ? "true" : "false");
    return *this;
  }
};

inline std::string to_json(const Result& r) {
  std::string out = "{\"name\":\"" + json_escape(r.name) + "\",\"value\":" + json_number(r.value) +
                    ",\"unit\":\"" + json_escape(r.unit) + "\",\"baseline\":" +
                    (r.baseline.empty() ? std::string("null") : "\"" + json_escape(r.baseline) + "\"") +
                    ",\"ratio\":" + json_number(r.ratio);
  for (const auto& [key, value] : r.extra) out += ",\"" + json_escape(key) + "\":" + value;
  return out + "}";
}

// Prints results as JSON lines or as an aligned table with the extra keys after each row.
inline void print_results(const std::vector<Result>& results, bool json, std::FILE* out = stdout) {
  if (json) {
    for (const auto& r : results) std::fprintf(out, "%s\n", to_json(r).c_str());
    std::fflush(out);
    return;
  }
  std::fprintf(out, "%-24s %14s %-9s %-18s %7s  %s\n", "case", "median", "unit", "baseline", "ratio",
               "details");
  for (const auto& r : results) {
    std::string details;
    for (const auto& [key, value] : r.extra) details += key + "=" + value + " ";
    std::fprintf(out, "%-24s %14s %-9s %-18s %7s  %s\n", r.name.c_str(), json_number(r.value).c_str(),
                 r.unit.c_str(), r.baseline.empty() ? "-" : r.baseline.c_str(),
                 std::isnan(r.ratio) ? "-" : json_number(r.ratio).c_str(), details.c_str());
  }
  std::fflush(out);
}

// --- child processes --------------------------------------------------------------------------

// A child process running this same program (/proc/self/exe) with other arguments; its
// stdout is a pipe the parent reads line by line. The destructor kills it if still running.
// exec (not a bare fork) so the child starts with no copy of the parent's ZeroMQ state.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> argv;
    std::vector<std::string> owned = args;
    owned.insert(owned.begin(), "/proc/self/exe");
    for (auto& a : owned) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      throw std::runtime_error(std::string("posix_spawn failed: ") + std::strerror(rc));
    }
    out_ = fds[0];
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      wait();
    }
    if (out_ >= 0) close(out_);
  }

  // The next line the child wrote (without '\n'), or nullopt after `timeout_ms` or at EOF.
  std::optional<std::string> read_line(int timeout_ms) {
    const uint64_t deadline = now_ns() + uint64_t(timeout_ms) * 1000000u;
    while (true) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const uint64_t now = now_ns();
      if (now >= deadline) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, int((deadline - now) / 1000000u) + 1) <= 0) continue;
      char chunk[4096];
      const ssize_t n = read(out_, chunk, sizeof(chunk));
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, size_t(n));
    }
  }

  // Waits for the child to exit; returns its exit status (or -1).
  int wait() {
    if (pid_ <= 0) return status_;
    int st = 0;
    if (waitpid(pid_, &st, 0) == pid_) status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    pid_ = -1;
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int status_ = -1;
  std::string buffer_;
};

// For the child side: writes one line to stdout with a single write() (no stdio buffering).
inline void write_line(const std::string& line) {
  const std::string s = line + "\n";
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
    if (n <= 0) return;
    done += size_t(n);
  }
}

}  // namespace reqbus::bench
