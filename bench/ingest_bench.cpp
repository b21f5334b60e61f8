// ingest_bench: reqbus's access-log ingest against GoAccess on the same combined-format log, in
// the same run (issue 4 point 5).
//
//   ingest_bench [--lines N] [--runs N] [--json] [--quick] [--log FILE] [--keep-log]
//                [--flush-at N] [--coalesce N] [--dir DIR]
//
// It writes a realistic combined-format log with $request_time (bench/combined_log_gen.hpp,
// fixed seed; 1,000,000 lines ≈ 200 MiB) into a temporary directory, then, run after run, in
// this order:
//   goaccess       Debian's goaccess on the file, `-o report.json`, wall time; its JSON's
//                  valid_requests must equal the lines written
//   parse_only     reqbus::ingest::LineParser on every line, nothing else (for information)
//   parse_publish  parse every line and broadcast() it onto an in-process Bus (block policy); a
//                  local_only handler subscription counts every event; timed until close()
//                  has delivered everything; received must equal parsed (zero loss)
//   e2e_sqlite     parse -> Bus -> local_only subscription -> Batcher -> SqliteSink (WAL, the
//                  sink's defaults) on a fresh file, the Batcher as `reqbus serve` has it
//                  (flush_at 100, coalesce_max_events 10000; --flush-at, --coalesce change
//                  them; --coalesce 0 is the seed's one write per batch); timed until
//                  Batcher::close() returns;
//                  `SELECT count(*) FROM requests` must equal the parsed lines
//   e2e_node       parse -> the Bus of a whole reqbus::node::Node, as `reqbus serve` runs it on
//                  SQLite (persisting subscription, Batcher, the daily counters counted from the
//                  store's writes into a StatBuffer, the dashboard's live subscription; no HTTP);
//                  timed until Node::close() returns; the rows and the counters' `requests:`
//                  total must both equal the parsed lines
// Results are lines/s, medians over runs; ratio = median of the per-run ratios to goaccess.
// The program installs nothing: it exits 2 with a message if goaccess is not on PATH, and 1 if
// any check fails (a line GoAccess or reqbus did not take, an event lost, a row missing).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "bench/combined_log_gen.hpp"
#include "ingest/log_parse.hpp"
#include "node/node.hpp"
#include "reqbus/batcher.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/error.hpp"
#include "reqbus/sqlite_sink.hpp"

using namespace reqbus;
using namespace reqbus::bench;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kGoAccessLogFormat = R"(%h %^[%d:%t %^] "%r" %s %b "%R" "%u" %T)";

struct Options {
  uint64_t lines = 1000000;
  int runs = 3;
  bool json = false;
  std::string log;       // existing log to use instead of generating one
  bool keep_log = false;
  size_t flush_at = BatcherOptions{}.flush_at;
  size_t coalesce = 10000;  // BatcherOptions::coalesce_max_events, as `reqbus serve` sets it
  std::string dir = "/tmp";
};

// One run of one case.
struct Sample {
  double lines_per_s = 0;
  double cpu_ns_per_line = 0;
  double seconds = 0;
  uint64_t lines = 0;
  double rss_mib = 0;  // goaccess only
};

// A failed check or setup step: main() reports it, removes the temporary files, exits 1.
[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');)
    if (!d.empty() && access((d + "/" + program).c_str(), X_OK) == 0) return d + "/" + program;
  return {};
}

uint64_t generate_log(const std::string& path, uint64_t lines) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("cannot create " + path);
  CombinedLogGenerator gen;
  std::string chunk;
  chunk.reserve(8 << 20);
  uint64_t bytes = 0;
  for (uint64_t i = 0; i < lines; ++i) {
    gen.append_line(chunk);
    if (chunk.size() >= (8u << 20) - 4096 || i + 1 == lines) {
      if (std::fwrite(chunk.data(), 1, chunk.size(), f) != chunk.size()) fail("write failed: " + path);
      bytes += chunk.size();
      chunk.clear();
    }
  }
  if (std::fclose(f) != 0) fail("write failed: " + path);
  return bytes;
}

// Calls fn(line, byte offset) for every line of the file, read with read() in 4 MiB chunks.
void for_each_line(const std::string& path, const std::function<void(std::string_view, uint64_t)>& fn) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open " + path);
  std::vector<char> buf(4 << 20);
  size_t have = 0;
  uint64_t base = 0;  // file offset of buf[0]
  while (true) {
    const ssize_t n = ::read(fd, buf.data() + have, buf.size() - have);
    if (n < 0) fail("read failed: " + path);
    have += size_t(n);
    size_t start = 0;
    while (start < have) {
      const void* nl = std::memchr(buf.data() + start, '\n', have - start);
      if (!nl) break;
      const size_t end = size_t(static_cast<const char*>(nl) - buf.data());
      fn(std::string_view(buf.data() + start, end - start), base + start);
      start = end + 1;
    }
    if (n == 0) {  // a last line without '\n'
      if (start < have) fn(std::string_view(buf.data() + start, have - start), base + start);
      break;
    }
    std::memmove(buf.data(), buf.data() + start, have - start);
    have -= start;
    base += start;
    if (have == buf.size()) fail("a line longer than 4 MiB in " + path);
  }
  ::close(fd);
}

// --- goaccess ---------------------------------------------------------------------------------

Sample run_goaccess(const std::string& goaccess, const std::string& log, const std::string& dir,
                    uint64_t expected_lines) {
  const std::string report = dir + "/goaccess-report.json";
  const std::string output = dir + "/goaccess-output.txt";
  std::vector<std::string> args = {goaccess, log, std::string("--log-format=") + kGoAccessLogFormat,
                                   "--date-format=%d/%b/%Y", "--time-format=%T", "-o", report};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  fs::remove(report);
  pid_t pid = -1;
  const uint64_t start = now_ns();
  const int rc = posix_spawn(&pid, goaccess.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) fail("cannot start goaccess: " + std::string(std::strerror(rc)));
  int status = 0;
  rusage usage{};
  if (wait4(pid, &status, 0, &usage) != pid) fail("wait for goaccess failed");
  const uint64_t took = now_ns() - start;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream out(output);
    std::stringstream text;
    text << out.rdbuf();
    fail("goaccess failed (status " + std::to_string(status) + "): " + text.str());
  }
  // The report must show that GoAccess took every line; otherwise the comparison is void.
  std::ifstream in(report);
  std::stringstream json;
  json << in.rdbuf();
  const std::string text = json.str();
  const size_t key = text.find("\"valid_requests\"");
  if (key == std::string::npos) fail("goaccess report has no valid_requests: " + report);
  const uint64_t valid = std::strtoull(text.c_str() + text.find(':', key) + 1, nullptr, 10);
  if (valid != expected_lines)
    fail("goaccess took " + std::to_string(valid) + " of " + std::to_string(expected_lines) +
         " lines: the log format does not match");
  Sample s;
  s.lines = valid;
  s.seconds = double(took) / 1e9;
  s.lines_per_s = double(valid) / s.seconds;
  const double cpu_s = double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  s.cpu_ns_per_line = cpu_s * 1e9 / double(valid);
  s.rss_mib = double(usage.ru_maxrss) / 1024.0;
  return s;
}

// --- reqbus -----------------------------------------------------------------------------------

Sample finish(uint64_t lines, uint64_t start, uint64_t cpu_start) {
  Sample s;
  s.lines = lines;
  s.seconds = double(now_ns() - start) / 1e9;
  s.lines_per_s = double(lines) / s.seconds;
  s.cpu_ns_per_line = double(cpu_now_ns() - cpu_start) / double(lines);
  return s;
}

// Parses every line of `log`, calling `sink(log)` for each parsed one. Returns lines parsed;
// fails on any line the parser rejects (the generated log has none).
uint64_t parse_file(const std::string& log, const std::function<void(const RequestLog&)>& sink) {
  ingest::LineParser parser(ingest::LogFormat::combined);
  const uint64_t source = ingest::source_id(log);
  RequestLog event;
  uint64_t parsed = 0, rejected = 0;
  std::string first_error;
  for_each_line(log, [&](std::string_view line, uint64_t offset) {
    std::string error = parser.parse(line, source, offset, event);
    if (!error.empty()) {
      if (rejected++ == 0) first_error = error + ": " + std::string(line);
      return;
    }
    ++parsed;
    sink(event);
  });
  if (rejected) fail("the parser rejected " + std::to_string(rejected) + " lines, first: " + first_error);
  return parsed;
}

Sample run_parse_only(const std::string& log) {
  const uint64_t start = now_ns(), cpu = cpu_now_ns();
  uint64_t checksum = 0;
  const uint64_t lines = parse_file(log, [&](const RequestLog& e) { checksum += e.status_code; });
  if (checksum == 0) fail("parse_only: nothing parsed");
  return finish(lines, start, cpu);
}

BusOptions bench_bus(const std::string& name) {
  BusOptions o;
  o.name = name;
  o.node_id = "ingest-bench";
  // Lossless back-pressure: a reader of a file can wait for the bus, it must not drop.
  o.block_timeout = 30s;
  return o;
}

Sample run_parse_publish(const std::string& log, int run) {
  Bus bus(bench_bus("ingest-publish-" + std::to_string(run)));
  SubscribeOptions so;
  so.scope = Scope::local_only;
  so.name = "count";
  std::atomic<uint64_t> received{0};
  Subscription sub = bus.subscribe(so, [&](const Message& m) {
    if (m.kind == MessageKind::request_sent) received.fetch_add(1, std::memory_order_relaxed);
  });
  const uint64_t start = now_ns(), cpu = cpu_now_ns();
  uint64_t not_ok = 0;
  const uint64_t lines = parse_file(log, [&](const RequestLog& e) {
    if (bus.broadcast(e) != PublishStatus::ok) ++not_ok;
  });
  const CloseReport report = bus.close(120s);  // returns once every accepted event is delivered
  Sample s = finish(lines, start, cpu);
  sub.close();
  if (not_ok || report.deadline_reached || received.load() != lines)
    fail("parse_publish lost events: parsed " + std::to_string(lines) + ", broadcast not ok " +
         std::to_string(not_ok) + ", received " + std::to_string(received.load()));
  return s;
}

// The one integer `sql` selects from the database at `db_path`.
int64_t select_int(const std::string& db_path, const char* sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    fail("cannot open " + db_path);
  sqlite3_stmt* stmt = nullptr;
  int64_t value = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW)
    value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

int64_t count_rows(const std::string& db_path) { return select_int(db_path, "SELECT count(*) FROM requests"); }

void remove_db(const std::string& db_path) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db_path + suffix, ec);
}

Sample run_e2e_sqlite(const std::string& log, const std::string& dir, int run, const Options& opt,
                      uint64_t& db_bytes) {
  const std::string db_path = dir + "/e2e-" + std::to_string(run) + ".db";
  const std::string spool = dir + "/spool-" + std::to_string(run);
  SqliteSinkOptions sink_options;
  sink_options.path = db_path;
  auto sink = std::make_shared<SqliteSink>(sink_options);
  if (auto r = sink->open(30s); !r.ok()) fail("SqliteSink open: " + r.reason);  // schema, off the clock
  BatcherOptions bo;
  bo.flush_at = opt.flush_at;
  bo.coalesce_max_events = opt.coalesce;
  bo.spool_dir = spool;
  bo.block_timeout = 30s;  // lossless back-pressure, as for the bus
  auto batcher = std::make_unique<Batcher>(sink, bo);
  Bus bus(bench_bus("ingest-e2e-" + std::to_string(run)));
  SubscribeOptions so;
  so.scope = Scope::local_only;
  so.name = "persist";
  std::atomic<uint64_t> refused{0};
  Subscription sub = bus.subscribe_views(so, [&](const MessageView& m) {  // as node/node.cpp reads it
    if (batcher->enqueue(m.to_message()) != EnqueueStatus::ok) refused.fetch_add(1, std::memory_order_relaxed);
  });

  const uint64_t start = now_ns(), cpu = cpu_now_ns();
  uint64_t not_ok = 0;
  const uint64_t lines = parse_file(log, [&](const RequestLog& e) {
    if (bus.broadcast(e) != PublishStatus::ok) ++not_ok;
  });
  const CloseReport bus_report = bus.close(300s);
  sub.close();
  const BatcherReport report = batcher->close(300s);
  Sample s = finish(lines, start, cpu);
  batcher.reset();
  sink->close();

  const int64_t rows = count_rows(db_path);
  std::error_code ec;
  db_bytes = fs::file_size(db_path, ec);
  if (not_ok || bus_report.deadline_reached || refused.load() || report.deadline_reached ||
      report.spooled || report.dropped.total() || report.delivered != lines || rows != int64_t(lines))
    fail("e2e_sqlite: parsed " + std::to_string(lines) + ", broadcast not ok " + std::to_string(not_ok) +
         ", refused by batcher " + std::to_string(refused.load()) + ", delivered " +
         std::to_string(report.delivered) + ", spooled " + std::to_string(report.spooled) +
         ", dropped " + std::to_string(report.dropped.total()) + ", rows " + std::to_string(rows));
  remove_db(db_path);
  fs::remove_all(spool, ec);
  return s;
}

Sample run_e2e_node(const std::string& log, const std::string& dir, int run, const Options& opt) {
  const std::string db_path = dir + "/node-" + std::to_string(run) + ".db";
  node::NodeOptions no;
  no.bus = bench_bus("ingest-node-" + std::to_string(run));
  no.store = "sqlite:" + db_path;
  no.spool_dir = dir + "/node-spool-" + std::to_string(run);
  no.batcher.flush_at = opt.flush_at;
  no.batcher.coalesce_max_events = opt.coalesce;
  no.batcher.block_timeout = 30s;  // lossless back-pressure, as above
  no.http_enabled = false;
  auto node = std::make_unique<node::Node>(no);  // opens the store and its schema, off the clock

  const uint64_t start = now_ns(), cpu = cpu_now_ns();
  uint64_t not_ok = 0;
  const uint64_t lines = parse_file(log, [&](const RequestLog& e) {
    if (node->bus().broadcast(e) != PublishStatus::ok) ++not_ok;
  });
  const node::NodeReport report = node->close(300s);
  Sample s = finish(lines, start, cpu);
  node.reset();

  const int64_t rows = count_rows(db_path);
  const int64_t counted =
      select_int(db_path, "SELECT coalesce(sum(value), 0) FROM counters WHERE key LIKE '%/requests:%'");
  if (not_ok || report.deadline_reached || report.batcher.spooled || report.batcher.dropped.total() ||
      report.batcher.delivered != lines || rows != int64_t(lines) || counted != int64_t(lines))
    fail("e2e_node: parsed " + std::to_string(lines) + ", broadcast not ok " + std::to_string(not_ok) +
         ", delivered " + std::to_string(report.batcher.delivered) + ", spooled " +
         std::to_string(report.batcher.spooled) + ", dropped " + std::to_string(report.batcher.dropped.total()) +
         ", rows " + std::to_string(rows) + ", counted " + std::to_string(counted));
  remove_db(db_path);
  std::error_code ec;
  fs::remove_all(no.spool_dir, ec);
  return s;
}

Options parse_options(int argc, char** argv) {
  // --lines is this benchmark's name for the common --events.
  std::vector<std::string> args(argv, argv + argc);
  for (auto& a : args)
    if (a == "--lines") a = "--events";
  std::vector<char*> raw;
  for (auto& a : args) raw.push_back(a.data());
  const bool runs_given = std::find(args.begin(), args.end(), "--runs") != args.end();
  CommonFlags common = parse_common_flags(int(raw.size()), raw.data(), 50000);
  Options o;
  o.lines = common.events;
  o.runs = common.quick || runs_given ? common.runs : 3;
  o.json = common.json;
  for (size_t i = 0; i < common.rest.size(); ++i) {
    const std::string& a = common.rest[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= common.rest.size()) throw std::invalid_argument(a + ": missing value");
      return common.rest[++i];
    };
    if (a == "--log") o.log = value();
    else if (a == "--keep-log") o.keep_log = true;
    else if (a == "--dir") o.dir = value();
    else if (a == "--flush-at") {
      const std::string v = value();
      o.flush_at = std::strtoull(v.c_str(), nullptr, 10);
      if (o.flush_at == 0) throw std::invalid_argument("--flush-at: not a positive number: " + v);
    } else if (a == "--coalesce") {
      const std::string v = value();
      char* end = nullptr;
      o.coalesce = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0') throw std::invalid_argument("--coalesce: not a number: " + v);
    } else {
      throw std::invalid_argument("unknown argument " + a);
    }
  }
  return o;
}

Result summarise(const std::string& name, const std::vector<Sample>& runs, const std::vector<Sample>& base,
                 double target_ratio) {
  std::vector<double> rate, cpu, ratios, secs;
  for (size_t i = 0; i < runs.size(); ++i) {
    rate.push_back(runs[i].lines_per_s);
    cpu.push_back(runs[i].cpu_ns_per_line);
    secs.push_back(runs[i].seconds);
    if (i < base.size() && &runs != &base) ratios.push_back(runs[i].lines_per_s / base[i].lines_per_s);
  }
  Result r;
  r.name = name;
  r.value = std::round(median(rate));
  r.unit = "lines/s";
  if (&runs != &base) {
    r.baseline = "goaccess";
    r.ratio = median(ratios);
  }
  r.add("min", std::round(*std::min_element(rate.begin(), rate.end())))
      .add("max", std::round(*std::max_element(rate.begin(), rate.end())))
      .add("seconds", median(secs))
      .add("cpu_ns_per_line", std::round(median(cpu)))
      .add("lines", double(runs.front().lines))
      .add("runs", double(runs.size()));
  if (target_ratio > 0) r.add("target_ratio", target_ratio).add("meets_target", r.ratio >= target_ratio);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  try {
    opt = parse_options(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ingest_bench: %s\nusage: ingest_bench [--lines N] [--runs N] [--json] [--quick] "
                         "[--log FILE] [--keep-log] [--flush-at N] [--coalesce N] [--dir DIR]\n", e.what());
    return 2;
  }
  const std::string goaccess = find_on_path("goaccess");
  if (goaccess.empty()) {
    std::fprintf(stderr, "ingest_bench: goaccess is not on PATH; it is the baseline of this benchmark "
                         "(Debian: apt-get install goaccess)\n");
    return 2;
  }

  std::string tmpl = opt.dir + "/reqbus-ingest-bench-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    std::fprintf(stderr, "ingest_bench: cannot create a directory under %s\n", opt.dir.c_str());
    return 1;
  }
  const std::string dir = tmpl;
  std::string log = opt.log;
  uint64_t log_bytes = 0;
  int exit_code = 0;
  try {
  if (log.empty()) {
    log = dir + "/access.log";
    const uint64_t t0 = now_ns();
    log_bytes = generate_log(log, opt.lines);
    std::fprintf(stderr, "ingest_bench: wrote %llu lines, %.1f MiB to %s in %.1f s\n",
                 static_cast<unsigned long long>(opt.lines), double(log_bytes) / 1048576.0, log.c_str(),
                 double(now_ns() - t0) / 1e9);
  } else {
    log_bytes = fs::file_size(log);
  }

    std::vector<Sample> go, parse, publish, e2e, e2e_node;
    uint64_t db_bytes = 0;
    for (int run = 0; run < opt.runs; ++run) {
      publish.push_back(run_parse_publish(log, run));  // first: also warms the page cache
      go.push_back(run_goaccess(goaccess, log, dir, publish.back().lines));
      parse.push_back(run_parse_only(log));
      e2e.push_back(run_e2e_sqlite(log, dir, run, opt, db_bytes));
      e2e_node.push_back(run_e2e_node(log, dir, run, opt));
      std::fprintf(stderr,
                   "run %d/%d: goaccess %.0f lines/s (%.1f s) | parse_only %.0f | parse_publish %.0f (%.1fx) | "
                   "e2e_sqlite %.0f (%.1fx) | e2e_node %.0f (%.1fx) | load %s\n",
                   run + 1, opt.runs, go.back().lines_per_s, go.back().seconds, parse.back().lines_per_s,
                   publish.back().lines_per_s, publish.back().lines_per_s / go.back().lines_per_s,
                   e2e.back().lines_per_s, e2e.back().lines_per_s / go.back().lines_per_s,
                   e2e_node.back().lines_per_s, e2e_node.back().lines_per_s / go.back().lines_per_s,
                   load_average().c_str());
    }
    const std::string load = load_average();
    std::vector<Result> results;
    results.push_back(summarise("goaccess", go, go, 0));
    std::vector<double> rss;
    for (const auto& s : go) rss.push_back(s.rss_mib);
    results.back().add("rss_mib", std::round(median(rss))).add("log_mib", double(log_bytes) / 1048576.0);
    results.push_back(summarise("parse_only", parse, go, 0));
    results.push_back(summarise("parse_publish", publish, go, 10));
    results.back().add("lost", 0.0);
    results.push_back(summarise("e2e_sqlite", e2e, go, 4));
    results.back().add("flush_at", double(opt.flush_at)).add("coalesce_max_events", double(opt.coalesce)).add("db_mib", double(db_bytes) / 1048576.0);
    results.push_back(summarise("e2e_node", e2e_node, go, 4));
    for (auto& r : results) r.add("loadavg", load);
    print_results(results, opt.json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ingest_bench: %s\n", e.what());
    exit_code = 1;
  }
  std::error_code ec;
  if (opt.keep_log) std::fprintf(stderr, "ingest_bench: kept %s\n", log.c_str());
  else fs::remove_all(dir, ec);
  return exit_code;
}
