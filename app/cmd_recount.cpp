// reqbus recount: sets a store's daily counters from the rows it holds (node/daily_counters.hpp),
// for days a node's counters fell short of: a node killed with SIGKILL, a write abandoned at
// shutdown that the database committed anyway. Prints each day as it is committed, with each
// counter it changes; --dry-run only compares (exit 1 when something differs, like diff). A day
// whose counters a node flushed into within the last minute is refused without --force: the
// node still counts into it, and the increments it holds in memory would count twice.
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "node/config.hpp"
#include "node/daily_counters.hpp"
#include "node/node.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {
namespace {

struct RecountFlags {
  std::optional<std::string> store, config;
  std::vector<std::string> days;
  std::string from, to;
  bool dry_run = false, force = false;
  int timeout_ms = 60000;
};

constexpr int64_t kMaxDays = 3660;  // ten years a run

int64_t day_flag(const std::string& text, const char* flag) {
  if (auto day = node::parse_day(text)) return *day;
  throw Error(ErrorCode::invalid_argument, std::string("recount: ") + flag + " '" + text + "': not a day (YYYY-MM-DD, from 1970)");
}

// The days asked for, in order, once each.
std::vector<int64_t> days_of(const RecountFlags& f) {
  std::vector<int64_t> days;
  for (const auto& d : f.days) days.push_back(day_flag(d, "--day"));
  if (!f.from.empty() || !f.to.empty()) {
    if (f.from.empty() || f.to.empty()) throw Error(ErrorCode::invalid_argument, "recount: --from and --to go together");
    const int64_t from = day_flag(f.from, "--from"), to = day_flag(f.to, "--to");
    if (to < from) throw Error(ErrorCode::invalid_argument, "recount: --to " + f.to + " is before --from " + f.from);
    if (to - from >= kMaxDays) throw Error(ErrorCode::invalid_argument, "recount: --from .. --to spans more than 3660 days");
    for (int64_t d = from; d <= to; ++d) days.push_back(d);
  }
  if (days.empty()) throw Error(ErrorCode::invalid_argument, "recount: which days? --day YYYY-MM-DD (repeatable) or --from/--to");
  std::sort(days.begin(), days.end());
  days.erase(std::unique(days.begin(), days.end()), days.end());
  return days;
}

std::string signed_text(int64_t v) { return (v > 0 ? "+" : "") + std::to_string(v); }

}  // namespace

Run add_recount(CLI::App& app) {
  auto f = std::make_shared<RecountFlags>();
  app.add_option("--store", f->store, "The store: sqlite:PATH or postgres:CONNINFO (default: the config's, else sqlite:reqbus.db)");
  app.add_option("--config", f->config, "The node's TOML config: its store");
  app.add_option("--day", f->days, "A UTC day to recount, YYYY-MM-DD (repeatable)");
  app.add_option("--from", f->from, "First UTC day of a range to recount, YYYY-MM-DD");
  app.add_option("--to", f->to, "Last UTC day of the range (inclusive)");
  app.add_flag("--dry-run", f->dry_run, "Compare only: print what would change, write nothing (exit 1 if anything differs)");
  app.add_flag("--force", f->force,
               "Recount days a node flushed counters into within the last minute, and zero the counters of days without rows");
  app.add_option("--timeout-ms", f->timeout_ms, "Bound on each day's transaction (default 60000)")->check(CLI::Range(100, 3'600'000));
  return [f]() -> int {
    node::NodeOptions options;
    if (f->config) {
      if (auto e = node::apply_config_file(*f->config, options); !e.empty()) throw Error(ErrorCode::invalid_argument, e);
    }
    if (f->store) options.store = *f->store;
    const std::vector<int64_t> days = days_of(*f);
    const int64_t today = int64_t(std::time(nullptr)) / 86400;
    if (days.back() > today)
      throw Error(ErrorCode::invalid_argument, "recount: " + node::day_of(days.back() * node::kDayMicros) + " has not begun (UTC)");
    node::RecountOptions ro;
    ro.dry_run = f->dry_run;
    ro.force = f->force;
    ro.timeout = std::chrono::milliseconds(f->timeout_ms);
    size_t done = 0, counters = 0, changed = 0;
    const char* verb = f->dry_run ? "would change" : "changed";
    node::recount_days(options.store, options.counters.name, days, ro, [&](const node::DayRecount& d) {
      ++done;
      counters += d.counters.size();
      size_t day_changed = 0;
      for (const CounterChange& c : d.counters) day_changed += c.after != c.before;
      changed += day_changed;
      if (d.counters.empty()) return;  // nothing stored that day, no counters: the total says it
      std::printf("%s: %zu counters, %zu %s\n", node::day_of(d.day * node::kDayMicros).c_str(), d.counters.size(),
                  day_changed, verb);
      for (const CounterChange& c : d.counters)
        if (c.after != c.before)
          std::printf("  %s  %lld -> %lld (%s)\n", c.key.c_str(), (long long)c.before, (long long)c.after,
                      signed_text(c.after - c.before).c_str());
      std::fflush(stdout);  // each day as it is committed: a later failure does not hide it
    });
    std::printf("recount: %zu day(s), %zu counters, %zu %s%s\n", done, counters, changed, verb,
                f->dry_run ? " (dry run: nothing written)" : "");
    return f->dry_run && changed > 0 ? 1 : 0;
  };
}

}  // namespace reqbus::app
