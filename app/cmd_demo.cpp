// reqbus demo: the main job on embedded defaults. A node (inproc bus, SQLite file, dashboard),
// the example web server publishing one RequestLog per request, realistic traffic over real
// HTTP for --duration, a progress line, and a summary read back from the database.
// demo empties --db before it starts (unless --keep), so it only ever takes a file that is
// missing, empty, or a database demo made itself (marked in its header, see kDemoApplicationId):
// anything else is somebody's data, and demo refuses it (exit 2).
#include <sqlite3.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "app/commands.hpp"
#include "app/node_flags.hpp"
#include "app/traffic.hpp"
#include "node/config.hpp"
#include "examples/bind_server.hpp"
#include "examples/demo_site.hpp"
#include "examples/request_logger.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {
namespace {

struct DemoFlags {
  double duration_s = 15;
  std::string db = "reqbus-demo.db";
  std::string http = "127.0.0.1:7480";
  double rate = 1500;
  int clients = 4;
  bool keep = false;
};

// Read-only queries for the summary.
class Db {
 public:
  explicit Db(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
      throw Error(ErrorCode::storage, "demo: cannot open " + path + " to read the summary");
  }
  ~Db() { sqlite3_close(db_); }
  template <class F>
  void rows(const std::string& sql, const std::string& node, F f) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
      throw Error(ErrorCode::storage, std::string("demo: ") + sqlite3_errmsg(db_));
    sqlite3_bind_text(st, 1, node.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) f(st);
    sqlite3_finalize(st);
  }
  int64_t scalar(const std::string& sql, const std::string& node) {
    int64_t v = 0;
    rows(sql, node, [&](sqlite3_stmt* st) { v = sqlite3_column_int64(st, 0); });
    return v;
  }
  double percentile(const std::string& node, int64_t n, double q) {
    double v = 0;
    const int64_t offset = std::max<int64_t>(0, int64_t(std::ceil(q * double(n))) - 1);
    rows("SELECT duration_ms FROM requests WHERE node_id = ?1 ORDER BY duration_ms LIMIT 1 OFFSET " +
             std::to_string(offset), node, [&](sqlite3_stmt* st) { v = sqlite3_column_double(st, 0); });
    return v;
  }

 private:
  sqlite3* db_ = nullptr;
};

// demo's mark in the header of the databases it makes (PRAGMA application_id, "RQDM"): a
// reqbus store of `serve` or any other SQLite file lacks it. A header field, so it survives
// whatever rows are written, and it is set before any traffic runs.
constexpr int32_t kDemoApplicationId = 0x5251444D;

// One value of `sql` on a read-only connection to `path`; nullopt when it cannot be read.
std::optional<int64_t> read_only_scalar(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  std::optional<int64_t> v;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return v;
}

// "" when demo may empty or add to `path`: it does not exist, is empty, is an SQLite database
// without any table, or is one demo made. Else why not, for the refusal.
std::string why_not_demos(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) return "";
  if (!std::filesystem::is_regular_file(status)) return "is not a regular file";
  if (std::filesystem::file_size(path, ec) == 0 && !ec) return "";
  std::ifstream in(path, std::ios::binary);
  char header[16] = {};
  if (!in) return "cannot be read to check what it is";
  if (!in.read(header, sizeof header) || std::memcmp(header, "SQLite format 3", sizeof header) != 0)  // 15 + '\0'
    return "is not an SQLite database";
  if (read_only_scalar(path, "PRAGMA application_id") == kDemoApplicationId) return "";
  if (read_only_scalar(path, "SELECT count(*) FROM sqlite_master") == 0) return "";  // holds nothing
  return "is an SQLite database that demo did not make (another node's store, another program's data)";
}

// Marks the database at `path` (just created by the node's store) as demo's.
void mark_as_demos(const std::string& path) {
  sqlite3* db = nullptr;
  char* error = nullptr;
  const std::string sql = "PRAGMA application_id = " + std::to_string(kDemoApplicationId);
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);  // the node's store holds the file open too
    rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  }
  const std::string why = error ? error : db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  sqlite3_free(error);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw Error(ErrorCode::storage, "demo: cannot mark " + path + " as demo's database: " + why);
}

std::string text(sqlite3_stmt* st, int col) {
  const auto* p = sqlite3_column_text(st, col);
  return p ? reinterpret_cast<const char*>(p) : "";
}

void print_summary(const std::string& db_path, const std::string& node_id, const TrafficStats& traffic,
                   const node::NodeReport& report, double seconds) {
  Db db(db_path);
  const int64_t rows = db.scalar("SELECT count(*) FROM requests WHERE node_id = ?1", node_id);
  std::printf("\n== reqbus demo summary (read back from the database) ==\n");
  std::printf("  requests sent by the traffic generator  %llu in %.1f s (%.0f/s), %llu answered, %llu failed\n",
              (unsigned long long)traffic.sent, seconds, double(traffic.sent) / seconds,
              (unsigned long long)traffic.answered, (unsigned long long)traffic.failed);
  std::printf("  events published on the bus             %llu\n", (unsigned long long)report.bus.published);
  std::printf("  rows persisted for this run             %lld\n", (long long)rows);
  std::printf("  dropped / spooled / gaps                %llu / %llu / %llu\n",
              (unsigned long long)(report.bus.dropped_newest + report.bus.dropped_oldest + report.bus.dropped_timeout +
                                   report.bus.dropped_close_deadline + report.batcher.dropped.total()),
              (unsigned long long)report.batcher.spooled, (unsigned long long)report.bus.gaps);
  std::printf("  latency p50 / p95 / p99                 %.2f / %.2f / %.2f ms\n", db.percentile(node_id, rows, 0.50),
              db.percentile(node_id, rows, 0.95), db.percentile(node_id, rows, 0.99));
  std::printf("  top paths:\n");
  db.rows("SELECT path, count(*) AS n FROM requests WHERE node_id = ?1 GROUP BY path ORDER BY n DESC, path LIMIT 8",
          node_id, [](sqlite3_stmt* st) {
            std::printf("    %8lld  %s\n", (long long)sqlite3_column_int64(st, 1), text(st, 0).c_str());
          });
  std::printf("  status codes:\n   ");
  db.rows("SELECT status_code, count(*) FROM requests WHERE node_id = ?1 GROUP BY status_code ORDER BY status_code",
          node_id, [](sqlite3_stmt* st) {
            std::printf(" %lld: %lld ", (long long)sqlite3_column_int64(st, 0), (long long)sqlite3_column_int64(st, 1));
          });
  std::printf("\n  devices:\n   ");
  db.rows("SELECT device_type, count(*) FROM requests WHERE node_id = ?1 GROUP BY device_type ORDER BY 2 DESC",
          node_id, [](sqlite3_stmt* st) {
            std::printf(" %s: %lld ", text(st, 0).empty() ? "unknown" : text(st, 0).c_str(), (long long)sqlite3_column_int64(st, 1));
          });
  std::printf("\n  database: %s (table requests, node_id = '%s')\n", std::filesystem::absolute(db_path).c_str(),
              node_id.c_str());
  if (rows != int64_t(report.bus.published))
    std::printf("  NOTE: %lld rows for %llu published events — see dropped/spooled above\n", (long long)rows,
                (unsigned long long)report.bus.published);
}

}  // namespace

Run add_demo(CLI::App& app) {
  auto f = std::make_shared<DemoFlags>();
  app.add_option("-d,--duration", f->duration_s, "Seconds of traffic (default 15)")->check(finite_range(0.5, 86400));
  app.add_option("--db", f->db, "SQLite file to store into (default reqbus-demo.db)");
  app.add_option("--http", f->http, "Dashboard address HOST:PORT (default 127.0.0.1:7480; busy -> any free port)");
  app.add_option("--rate", f->rate, "Requests per second to generate (default 1500; 0 = as fast as possible)")
      ->check(finite_range(0, 1e7));
  app.add_option("--clients", f->clients, "Concurrent HTTP clients (default 4)")->check(CLI::Range(1, 256));
  app.add_flag("--keep", f->keep, "Keep the rows of earlier runs in --db (default: start from an empty file)");
  return [f]() -> int {
    if (const std::string why = why_not_demos(f->db); !why.empty()) {
      std::fprintf(stderr, "reqbus: demo: --db %s %s, so demo will not %s it: give another --db path, or remove the file\n",
                   f->db.c_str(), why.c_str(), f->keep ? "write into" : "overwrite");
      return 2;
    }
    if (!f->keep) {
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(f->db + suffix);
    }
    node::NodeOptions options;
    options.store = "sqlite:" + f->db;
    options.spool_dir = f->db + ".spool";
    options.bus.node_id = "demo-" + std::to_string(::getpid());
    options.bus.overflow = Overflow::drop_newest;  // a web server must never block on the bus
    options.batcher.flush_interval = std::chrono::milliseconds(1000);
    options.batcher.flush_jitter = std::chrono::milliseconds(200);
    options.batcher.flush_at = 500;
    options.counters.interval = std::chrono::milliseconds(2000);
    if (auto e = node::parse_listen(f->http, "--http", options.http.host, options.http.port); !e.empty())
      throw Error(ErrorCode::invalid_argument, e);
    std::unique_ptr<node::Node> n;
    try {
      n = std::make_unique<node::Node>(options);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::transport || options.http.port == 0) throw;
      std::fprintf(stderr, "demo: %s; using a free port instead\n", e.what());
      options.http.port = 0;
      n = std::make_unique<node::Node>(options);
    }
    mark_as_demos(f->db);

    // The example web server, publishing through the node's bus; it trusts the loopback
    // proxy's X-Forwarded-For (the traffic generator plays the proxy).
    httplib::Server web;
    examples::RequestLoggerOptions lo;
    lo.trusted_proxies = {"127.0.0.1"};
    examples::RequestLogger logger(n->bus(), lo);
    examples::install_demo_site(web);
    web.Post("/api/checkout", [counter = std::make_shared<std::atomic<uint64_t>>(0)](const httplib::Request&, httplib::Response& res) {
      const uint64_t k = counter->fetch_add(1);
      res.status = k % 50 == 7 ? 503 : k % 40 == 3 ? 500 : 201;  // a flaky payment provider
      res.set_content(res.status == 201 ? "{\"order\":\"ok\"}" : "{\"error\":\"payment provider\"}", "application/json");
    });
    logger.install(web);
    web.set_tcp_nodelay(true);
    const int web_port = examples::bind_server(web, "127.0.0.1", 0);
    if (web_port <= 0) throw Error(ErrorCode::transport, "demo: cannot bind the web server");
    std::thread web_thread([&] { web.listen_after_bind(); });

    std::printf("reqbus demo: node %s, web server http://127.0.0.1:%d/, store %s\n", n->bus().node_id().c_str(),
                web_port, n->store_description().c_str());
    std::printf("  live dashboard: http://%s:%d/   (metrics: /metrics)\n", options.http.host.c_str(), n->http_port());
    std::printf("  driving %g s of traffic (%d clients, %s)...\n", f->duration_s, f->clients,
                f->rate > 0 ? (std::to_string(int(f->rate)) + " req/s").c_str() : "unpaced");
    std::fflush(stdout);

    TrafficOptions to;
    to.port = web_port;
    to.clients = f->clients;
    to.rate = f->rate;
    TrafficGenerator traffic(to);
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::milliseconds(int64_t(f->duration_s * 1000));
    traffic.start();
    uint64_t last_sent = 0;
    bool interrupted = false;
    while (std::chrono::steady_clock::now() < end) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      if (wait_for_signal(std::min(left, std::chrono::milliseconds(1000))) != 0) {
        interrupted = true;
        break;
      }
      const auto s = n->stats_json();
      const uint64_t sent = traffic.stats().sent;
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const ProgressLine line = progress_line();
      std::fprintf(stderr, "%s  %5.1fs  %6llu req/s  published %llu  persisted %llu  dropped %llu%s", line.begin,
                   elapsed, (unsigned long long)(sent - last_sent), (unsigned long long)s.value("published", 0ull),
                   (unsigned long long)s.value("persisted", 0ull), (unsigned long long)s.value("dropped", 0ull),
                   line.end);
      last_sent = sent;
    }
    if (progress_line().in_place()) std::fprintf(stderr, "\n");
    traffic.stop();
    web.stop();
    web_thread.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("  traffic stopped%s; flushing to the database (Ctrl-C cuts it short)...\n",
                interrupted ? " (interrupted)" : "");
    std::fflush(stdout);
    int hurried_by = 0;
    const node::NodeReport report = [&] {
      const ShutdownSignals impatient("reqbus demo", [&] { n->hurry(); }, hurry_text(n->options()),
                                      forced_exit_text(n->options()));
      const node::NodeReport r = n->close(std::chrono::seconds(30));
      hurried_by = impatient.hurried_by();
      return r;
    }();
    const std::string node_id = n->bus().node_id();
    n.reset();
    print_summary(f->db, node_id, traffic.stats(), report, seconds);
    return hurried_by ? 128 + hurried_by : 0;
  };
}

}  // namespace reqbus::app
