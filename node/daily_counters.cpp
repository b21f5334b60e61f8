#include "node/daily_counters.hpp"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "reqbus/error.hpp"
#include "reqbus/postgres_sink.hpp"
#include "reqbus/sqlite_sink.hpp"
#include "reqbus/user_agent.hpp"

namespace reqbus::node {
namespace {

constexpr const char* kFamilies[] = {"requests:", "status:", "device:", "events:"};

}  // namespace

// The calendar is std::chrono's (C++20 year_month_day), not one more copy of the civil-date
// arithmetic segment_json.cpp and log_parse.cpp carry.
std::string day_of(int64_t unix_us) {
  using namespace std::chrono;
  const year_month_day ymd{floor<days>(sys_time<microseconds>(microseconds(unix_us)))};
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02u", int(ymd.year()), unsigned(ymd.month()), unsigned(ymd.day()));
  return buf;
}

std::optional<int64_t> parse_day(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  auto number = [&](size_t at, size_t len, unsigned& out) {
    const char* end = text.data() + at + len;
    auto [p, ec] = std::from_chars(text.data() + at, end, out);
    return ec == std::errc() && p == end;
  };
  unsigned y = 0, m = 0, d = 0;
  if (!number(0, 4, y) || !number(5, 2, m) || !number(8, 2, d) || y < 1970) return std::nullopt;
  using namespace std::chrono;
  const year_month_day ymd{year(int(y)), month(m), day(d)};
  if (!ymd.ok()) return std::nullopt;  // 2026-02-30, month 13, day 0
  return sys_days(ymd).time_since_epoch().count();
}

CounterRecount daily_recount(const std::string& buffer, int64_t day) {
  CounterRecount r;
  r.from_us = day * kDayMicros;
  r.to_us = r.from_us + kDayMicros;
  r.key_prefix = buffer + "/";
  r.key_suffix = ":" + day_of(r.from_us);
  r.owns = [prefix = r.key_prefix, suffix = r.key_suffix](std::string_view key) {
    if (!key.starts_with(prefix) || !key.ends_with(suffix)) return false;
    const std::string_view name = key.substr(prefix.size());
    for (const char* family : kFamilies)
      if (name.starts_with(family)) return true;
    return false;
  };
  r.plan = [prefix = r.key_prefix, suffix = r.key_suffix](const StoredCounts& rows) {
    std::map<std::string, int64_t> out;
    for (const StoredCounts::Requests& g : rows.requests) {
      out[prefix + "requests" + suffix] += g.rows;
      out[prefix + "status:" + std::to_string(unsigned(uint16_t(g.status_code))) + suffix] += g.rows;
      out[prefix + "device:" + device_label(g.device_type) + suffix] += g.rows;
    }
    for (const auto& [type, n] : rows.events)
      if (type == "identify" || type == "group" || type == "track") out[prefix + "events:" + type + suffix] += n;
    return out;
  };
  return r;
}

void recount_days(const std::string& store, const std::string& buffer, const std::vector<int64_t>& days,
                  const RecountOptions& options, const std::function<void(const DayRecount&)>& done) {
  std::shared_ptr<CounterSink> sink;
  if (store.rfind("sqlite:", 0) == 0) {
    SqliteSinkOptions so;
    so.path = store.substr(7);
    so.create = false;  // a wrong path or another database is an error, never a new store
    std::error_code ec;
    if (so.path.empty() || !std::filesystem::is_regular_file(so.path, ec))
      throw Error(ErrorCode::invalid_argument, "recount: " + store + ": no such database file");
    auto sqlite = std::make_shared<SqliteSink>(so);
    if (auto r = sqlite->open(options.timeout); !r.ok()) throw Error(ErrorCode::storage, "recount: " + r.reason);
    sink = sqlite;
  } else if (store.rfind("postgres:", 0) == 0) {
    PostgresSinkOptions po;
    po.conninfo = store.substr(9);
    po.connections = 1;
    po.create_schema = false;  // a mistyped database gets no schema
    sink = std::make_shared<PostgresSink>(po);
  } else {
    throw Error(ErrorCode::invalid_argument, "recount: store '" + store + "' is not sqlite:PATH or postgres:CONNINFO");
  }
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  for (const int64_t day : days) {
    DayRecount d{day, {}};
    CounterRecount recount = daily_recount(buffer, day);
    recount.dry_run = options.dry_run;
    recount.allow_zeroing = options.force;
    if (!options.force)
      recount.refuse_if_flushed_since_us = now_us - std::chrono::duration_cast<std::chrono::microseconds>(options.quiet).count();
    // options.timeout bounds the day, retries included: each attempt gets what is left.
    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    WriteResult r;
    for (int attempt = 1;; ++attempt) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      r = sink->recount(recount, d.counters, std::max(left, std::chrono::milliseconds(1)));
      const auto pause = std::chrono::milliseconds(100 << std::min(attempt, 5));
      if (r.kind != WriteResult::Kind::retry || std::chrono::steady_clock::now() + pause >= deadline) break;
      std::this_thread::sleep_for(pause);
    }
    if (!r.ok()) throw Error(ErrorCode::storage, "recount: " + day_of(day * kDayMicros) + ": " + r.reason);
    done(d);
  }
}

}  // namespace reqbus::node
