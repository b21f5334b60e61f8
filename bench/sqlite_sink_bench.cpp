// SQLite sink benchmark (issue 3 point 6): the real SqliteSink::write path (WAL,
// synchronous=NORMAL, one transaction and cached prepared statements per batch, idempotent
// INSERT ... ON CONFLICT DO NOTHING, UUIDv7 request_ids) against a naive baseline of one
// autocommitted INSERT per event with SQLite's default settings (rollback journal,
// synchronous=FULL), in the same run, on files in a temporary directory on disk.
// Also measured: replaying the same events through the sink (every row a duplicate), the
// cost of idempotency when the Batcher retries or the spool replays; and the whole persistence
// path, bus -> Batcher -> SQLite (pipeline_bus_batcher_sqlite, baseline: the sink alone).
//
//   sqlite_sink_bench [--events N] [--naive-events N] [--batch N] [--runs N] [--dir PATH]
//                     [--pipeline-only] [--flush-at N] [--coalesce N] [--json] [--quick]
// Defaults: 1,000,000 events in batches of 1000, naive baseline on 5,000 events (at ~1k rows/s
// it would take minutes on more), 5 runs, medians; every run uses a fresh database file.
// --pipeline-only runs just bus -> Batcher -> SQLite (for profiling that path alone). The
// pipeline's Batcher has flush_at 1000 and coalesce_max_events 10000 (as `reqbus serve`, whose
// flush_at is the seed's 100) unless --flush-at / --coalesce say otherwise.
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "analytics/sinks/schema.hpp"
#include "bench/bench_util.hpp"
#include "bench/sample_events.hpp"
#include "reqbus/batcher.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/sqlite_sink.hpp"
#include "reqbus/uuid.hpp"

namespace {

using namespace reqbus;
using namespace reqbus::bench;
namespace fs = std::filesystem;

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

// Events as the bus hands them to a subscriber: ids, node and seq filled in.
std::vector<Message> make_messages(size_t count) {
  std::vector<RequestLog> logs = sample_request_logs(count);
  std::vector<Message> out(count);
  for (size_t i = 0; i < count; ++i) {
    out[i].kind = MessageKind::request_sent;
    out[i].request = std::move(logs[i]);
    out[i].request.request_id = uuid_v7();
    out[i].request.node_id = "bench-node";
    out[i].request.seq = i + 1;
  }
  return out;
}

void remove_db(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::remove((path + suffix).c_str());
}

int64_t count_rows(const std::string& path) {
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db) == SQLITE_OK, "open " + path);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM requests", -1, &s, nullptr);
  int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

struct SinkRun {
  double rows_per_s;
  double replay_rows_per_s;
  double cpu_us_per_row;  // process CPU time per stored row: less sensitive to a busy machine
};

// The sink path: batches through SqliteSink::write, then the same batches again (all duplicates).
SinkRun run_sink(const std::string& path, const std::vector<Message>& events, size_t batch_size,
                 SqliteSinkOptions options) {
  remove_db(path);
  options.path = path;
  SqliteSink sink(options);
  check(sink.open(std::chrono::seconds(30)).ok(), "open sink");
  std::vector<std::vector<Message>> batches;
  for (size_t i = 0; i < events.size(); i += batch_size)
    batches.emplace_back(events.begin() + i, events.begin() + std::min(events.size(), i + batch_size));

  double cpu_us_per_row = 0;
  auto load = [&] {
    const uint64_t t0 = now_ns(), cpu0 = cpu_now_ns();
    for (const auto& b : batches) {
      WriteResult r = sink.write(b, std::chrono::seconds(30));
      check(r.ok(), "sink write: " + r.reason);
    }
    cpu_us_per_row = double(cpu_now_ns() - cpu0) / 1e3 / double(events.size());
    return double(events.size()) / (double(now_ns() - t0) / 1e9);
  };
  SinkRun run{};
  run.rows_per_s = load();
  run.cpu_us_per_row = cpu_us_per_row;
  run.replay_rows_per_s = load();
  const SqliteSinkStats s = sink.stats();
  check(s.rows_inserted == events.size(), "rows_inserted != events");
  check(s.duplicates == events.size(), "duplicates != events on replay");
  sink.close();
  check(count_rows(path) == int64_t(events.size()), "row count after the sink run");
  return run;
}

// The naive baseline: default settings, one autocommitted INSERT per event.
double run_naive(const std::string& path, const std::vector<Message>& events) {
  remove_db(path);
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db) == SQLITE_OK, "open naive db");
  for (const auto& m : schema::migrations(schema::Dialect::sqlite))
    for (const auto& sql : m.statements)
      check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK, sql);
  const std::string sql = schema::insert_ignore_sql(schema::requests_table(), schema::Dialect::sqlite);
  sqlite3_stmt* s = nullptr;
  check(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK, "prepare naive insert");
  auto text = [&](int col, const std::string& v) {
    sqlite3_bind_text(s, col + 1, v.data(), int(v.size()), SQLITE_STATIC);
  };
  const uint64_t t0 = now_ns();
  for (const Message& m : events) {
    const RequestLog& r = m.request;
    text(schema::kRequestId, r.request_id);
    text(schema::kMethod, r.method);
    text(schema::kPath, r.path);
    sqlite3_bind_int(s, schema::kStatusCode + 1, r.status_code);
    sqlite3_bind_double(s, schema::kDurationMs + 1, r.duration_ms);
    text(schema::kUserAgent, r.user_agent);
    text(schema::kRemoteIp, r.remote_ip);
    text(schema::kReferer, r.referer);
    text(schema::kDeviceType, r.device_type);
    text(schema::kSessionId, r.session_id);
    sqlite3_bind_int64(s, schema::kSessionPageViews + 1, r.session_page_views);
    sqlite3_bind_int64(s, schema::kInsertedAt + 1, r.inserted_at);
    text(schema::kRequestNodeId, r.node_id);
    sqlite3_bind_int64(s, schema::kRequestSeq + 1, int64_t(r.seq));
    check(sqlite3_step(s) == SQLITE_DONE, std::string("naive insert: ") + sqlite3_errmsg(db));
    sqlite3_reset(s);
  }
  const double rate = double(events.size()) / (double(now_ns() - t0) / 1e9);
  sqlite3_finalize(s);
  sqlite3_close(db);
  check(count_rows(path) == int64_t(events.size()), "row count after the naive run");
  return rate;
}

// bus -> Batcher -> SQLite, the node's persistence path end to end: broadcast() on this thread,
// a local_only subscription whose handler enqueues into a Batcher (2 buffers, 2 flush workers,
// PipelineOptions) writing through SqliteSink. Timed from the first broadcast until close()
// has stored everything; the row count is checked.
struct PipelineOptions {
  size_t flush_at = 1000;
  size_t coalesce = 10000;
};

struct PipelineRun {
  double events_per_s = 0;
  double cpu_us_per_event = 0;  // every thread of the process
};

PipelineRun run_pipeline(const std::string& path, const std::vector<RequestLog>& logs,
                         SqliteSinkOptions sink_options, const PipelineOptions& po) {
  remove_db(path);
  sink_options.path = path;
  auto sink = std::make_shared<SqliteSink>(sink_options);
  check(sink->open(std::chrono::seconds(30)).ok(), "open sink");
  BatcherOptions bo;
  bo.pool_size = 2;
  bo.flush_at = po.flush_at;
  bo.coalesce_max_events = po.coalesce;
  bo.flush_workers = 2;
  Batcher batcher(sink, bo);
  BusOptions options;
  options.name = "bench-pipeline";
  options.node_id = "bench-node";
  Bus bus(options);
  SubscribeOptions so;
  so.scope = Scope::local_only;
  so.name = "persist";
  std::atomic<uint64_t> refused{0};
  Subscription sub = bus.subscribe(so, [&](const Message& m) {
    if (batcher.enqueue(m) != EnqueueStatus::ok) refused.fetch_add(1, std::memory_order_relaxed);
  });
  const uint64_t t0 = now_ns(), cpu0 = cpu_now_ns();
  for (const RequestLog& log : logs) {
    PublishStatus st;
    while ((st = bus.broadcast(log)) == PublishStatus::timed_out) {  // back-pressure: try again
    }
    check(st == PublishStatus::ok, "broadcast");
  }
  const CloseReport bus_report = bus.close(std::chrono::seconds(60));
  check(!bus_report.deadline_reached, "bus close deadline");
  const BatcherReport report = batcher.close(std::chrono::seconds(60));
  PipelineRun run;
  run.events_per_s = double(logs.size()) / (double(now_ns() - t0) / 1e9);
  run.cpu_us_per_event = double(cpu_now_ns() - cpu0) / 1e3 / double(logs.size());
  check(refused.load() == 0 && report.dropped.total() == 0 && report.spooled == 0,
        "pipeline dropped or spooled events");
  check(count_rows(path) == int64_t(logs.size()), "row count after the pipeline run");
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    CommonFlags flags = parse_common_flags(argc, argv, 50'000);
    size_t batch = 1000, naive_events = flags.quick ? 200 : 5000;
    std::string dir_arg;
    bool pipeline_only = false;
    PipelineOptions pipeline_options;
    SqliteSinkOptions sink_options;  // the documented defaults unless a flag below says otherwise
    for (size_t i = 0; i < flags.rest.size(); ++i) {
      const std::string& a = flags.rest[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= flags.rest.size()) throw std::invalid_argument(a + ": missing value");
        return flags.rest[++i];
      };
      if (a == "--batch") batch = std::stoul(value());
      else if (a == "--naive-events") naive_events = std::stoul(value());
      else if (a == "--dir") dir_arg = value();
      else if (a == "--pipeline-only") pipeline_only = true;
      else if (a == "--flush-at") pipeline_options.flush_at = std::stoul(value());
      else if (a == "--coalesce") pipeline_options.coalesce = std::stoul(value());
      else if (a == "--synchronous") {
        const std::string v = value();
        check(v == "off" || v == "normal" || v == "full", "--synchronous: off, normal or full");
        sink_options.synchronous = v == "off"    ? SqliteSinkOptions::Synchronous::off
                                   : v == "full" ? SqliteSinkOptions::Synchronous::full
                                                 : SqliteSinkOptions::Synchronous::normal;
      }
      else throw std::invalid_argument("unknown argument: " + a);
    }
    check(batch > 0 && naive_events > 0 && pipeline_options.flush_at > 0,
          "--batch, --naive-events and --flush-at must be positive");

    // On disk: /var/tmp is not a tmpfs on usual systems (where fsync would cost nothing).
    std::string tmpl = (dir_arg.empty() ? fs::path("/var/tmp") : fs::path(dir_arg)).string() +
                       "/reqbus-sqlite-bench-XXXXXX";
    check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp in " + tmpl);
    const fs::path dir = tmpl;
    // The pipeline runs first, in a process that holds nothing else: a node does not keep a
    // million pre-built Messages beside its Batcher (measured: with them resident, glibc's
    // heap made the pipeline ~15 % slower and twice as noisy).
    std::vector<double> sink_rates, replay_rates, naive_rates, sink_cpu, pipeline_rates, pipeline_cpu;
    {
      const std::vector<RequestLog> logs = sample_request_logs(flags.events);
      for (int run = 0; run < flags.runs; ++run) {
        const PipelineRun p = run_pipeline((dir / "pipeline.db").string(), logs, sink_options, pipeline_options);
        pipeline_rates.push_back(p.events_per_s);
        pipeline_cpu.push_back(p.cpu_us_per_event);
        if (!flags.json)
          std::fprintf(stderr, "run %d: bus->Batcher->SQLite %.0f events/s (%.2f us CPU/event)\n",
                       run + 1, p.events_per_s, p.cpu_us_per_event);
      }
    }
    const std::vector<Message> events = pipeline_only ? std::vector<Message>{} : make_messages(flags.events);
    const std::vector<Message> naive(events.begin(),
                                     events.begin() + std::min(naive_events, events.size()));
    for (int run = 0; run < flags.runs && !pipeline_only; ++run) {
      SinkRun r = run_sink((dir / "sink.db").string(), events, batch, sink_options);
      sink_rates.push_back(r.rows_per_s);
      replay_rates.push_back(r.replay_rows_per_s);
      sink_cpu.push_back(r.cpu_us_per_row);
      naive_rates.push_back(run_naive((dir / "naive.db").string(), naive));
      if (!flags.json)
        std::fprintf(stderr,
                     "run %d: sink %.0f rows/s (%.2f us CPU/row), replay %.0f rows/s, naive %.0f rows/s\n",
                     run + 1, r.rows_per_s, r.cpu_us_per_row, r.replay_rows_per_s, naive_rates.back());
    }
    std::error_code ec;
    fs::remove_all(dir, ec);

    std::vector<Result> results;
    const double pipeline = median(pipeline_rates);
    auto pipeline_result = [&](double sink) {
      return Result{"pipeline_bus_batcher_sqlite", pipeline, "events/s", sink > 0 ? "sqlite_sink_batched" : "",
                    sink > 0 ? ratio(pipeline, sink) : std::nan(""), {}}
          .add("events", double(flags.events))
          .add("runs", double(flags.runs))
          .add("min", *std::min_element(pipeline_rates.begin(), pipeline_rates.end()))
          .add("max", *std::max_element(pipeline_rates.begin(), pipeline_rates.end()))
          .add("cpu_us_per_event", median(pipeline_cpu))
          .add("flush_at", double(pipeline_options.flush_at))
          .add("coalesce_max_events", double(pipeline_options.coalesce))
          .add("target_events_per_s", 250000.0)
          .add("pass", pipeline >= 250000.0)
          .add("load_average", load_average());
    };
    if (pipeline_only) {
      results.push_back(pipeline_result(0));
      print_results(results, flags.json);
      return 0;
    }
    const double sink = median(sink_rates), replay = median(replay_rates),
                 base = median(naive_rates);
    results.push_back(Result{"sqlite_naive_autocommit", base, "rows/s", "", std::nan(""), {}}
                          .add("rows", double(naive.size()))
                          .add("runs", double(flags.runs))
                          .add("settings", std::string_view("journal_mode=DELETE synchronous=FULL")));
    results.push_back(Result{"sqlite_sink_batched", sink, "rows/s", "sqlite_naive_autocommit",
                             ratio(sink, base), {}}
                          .add("rows", double(events.size()))
                          .add("batch", double(batch))
                          .add("runs", double(flags.runs))
                          .add("min", *std::min_element(sink_rates.begin(), sink_rates.end()))
                          .add("max", *std::max_element(sink_rates.begin(), sink_rates.end()))
                          .add("cpu_us_per_row", median(sink_cpu))
                          .add("rows_per_cpu_s", 1e6 / median(sink_cpu))
                          .add("target_rows_per_s", 300000.0)
                          .add("target_ratio", 100.0)
                          .add("settings", std::string_view("journal_mode=WAL synchronous=NORMAL"))
                          .add("load_average", load_average()));
    results.push_back(Result{"sqlite_sink_replay_duplicates", replay, "rows/s",
                             "sqlite_sink_batched", ratio(replay, sink), {}}
                          .add("rows", double(events.size()))
                          .add("batch", double(batch)));
    results.push_back(pipeline_result(sink));
    print_results(results, flags.json);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sqlite_sink_bench: %s\n", e.what());
    return 1;
  }
}
