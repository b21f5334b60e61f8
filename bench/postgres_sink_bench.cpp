// PostgreSQL sink benchmark (issue 3 point 6): the real PostgresSink::write path (idempotent:
// ON CONFLICT DO NOTHING) against a naive baseline of one autocommitted INSERT per event, in the
// same run, on a private PostgreSQL 15 server this program starts (durable settings: fsync on).
// Also measured, to justify the sink's design: the sink with COPY off (INSERT ... unnest ... ON
// CONFLICT for every batch), COPY (text) -> temp table -> INSERT ... SELECT ... ON CONFLICT DO
// NOTHING in one transaction (the other idempotent bulk loader), and a plain text COPY into
// the table (fastest, not idempotent).
//
//   postgres_sink_bench [--events N] [--runs N] [--batch N] [--no-fsync] [--locale L] [--json] [--quick]
// --no-fsync starts the server with fsync/synchronous_commit off: what the loaders cost in CPU
// and round trips alone, without the disk's commit latency. --locale L creates the cluster with
// that locale (default C; en_US.UTF-8 is what a Debian server set up in English has). The cases
// pg_sink_{write,replay}_key_collation_c compare pg_sink_write and pg_sink_replay_duplicates
// with the same loads into a table whose key has the database's collation instead of "C" (the
// schema before migration 3): baseline_value is that figure, ratio C / database.
// Medians over runs; every run loads into freshly truncated tables.
#include <libpq-fe.h>

#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "analytics/sinks/schema.hpp"
#include "bench/bench_util.hpp"
#include "bench/sample_events.hpp"
#include "reqbus/postgres_sink.hpp"
#include "reqbus/uuid.hpp"
#include "tests/support/postgres_server.hpp"

namespace {

using namespace reqbus;
using namespace reqbus::bench;

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

class Db {
 public:
  explicit Db(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    check(PQstatus(conn_) == CONNECTION_OK, std::string("connect: ") + PQerrorMessage(conn_));
  }
  ~Db() { PQfinish(conn_); }
  PGconn* get() const { return conn_; }
  void exec(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    const auto st = PQresultStatus(r);
    std::string error = PQresultErrorMessage(r);
    PQclear(r);
    check(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, sql + ": " + error);
  }
  long count(const std::string& table) {
    PGresult* r = PQexec(conn_, ("SELECT count(*) FROM " + table).c_str());
    check(PQresultStatus(r) == PGRES_TUPLES_OK, PQresultErrorMessage(r));
    long n = std::atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
  }

 private:
  PGconn* conn_;
};

std::vector<Message> make_messages(size_t count) {
  std::vector<Message> out;
  uint64_t seq = 0;
  for (RequestLog& log : sample_request_logs(count)) {
    Message m;
    log.request_id = uuid_v7();
    log.node_id = "bench-node";
    log.seq = ++seq;
    m.request = std::move(log);
    out.push_back(std::move(m));
  }
  return out;
}

double seconds_since(uint64_t start_ns) { return double(now_ns() - start_ns) / 1e9; }

// The sink: `threads` writers share one PostgresSink with that many connections; `copy` false
// makes it load every batch with INSERT ... unnest ... ON CONFLICT DO NOTHING.
double sink_rows_per_s(const std::string& conninfo, const std::vector<Message>& rows, size_t batch,
                       int threads, bool copy = true) {
  PostgresSinkOptions options;
  options.conninfo = conninfo;
  options.connections = uint32_t(threads);
  options.copy = copy;
  PostgresSink sink(options);
  check(sink.write({rows.front()}, std::chrono::seconds(30)).ok(), "warm-up write failed");
  const uint64_t start = now_ns();
  std::vector<std::future<void>> writers;
  for (int t = 0; t < threads; ++t) {
    writers.push_back(std::async(std::launch::async, [&, t] {
      for (size_t first = size_t(t) * batch; first < rows.size(); first += size_t(threads) * batch) {
        std::vector<Message> part(rows.begin() + long(first),
                                  rows.begin() + long(std::min(rows.size(), first + batch)));
        WriteResult r = sink.write(part, std::chrono::seconds(30));
        check(r.ok(), "PostgresSink::write: " + r.reason);
      }
    }));
  }
  for (auto& w : writers) w.get();
  return double(rows.size()) / seconds_since(start);
}

std::string copy_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
  return out;
}

// Hand-written text COPY loaders, one connection. `via_temp`: the other idempotent design, COPY
// into a temp table then INSERT ... SELECT ... ON CONFLICT DO NOTHING in one transaction. Else
// COPY straight into requests: the raw speed of the server's loader, not idempotent (the
// issue's reference figure for COPY).
double copy_text_rows_per_s(const std::string& conninfo, const std::vector<Message>& rows, size_t batch,
                            bool via_temp) {
  Db db(conninfo);
  if (via_temp) db.exec("CREATE TEMP TABLE load_requests (LIKE requests) ON COMMIT DELETE ROWS");
  const std::string columns = schema::column_list(schema::requests_table());
  const std::string insert = "INSERT INTO requests (" + columns + ") SELECT " + columns +
                             " FROM load_requests ON CONFLICT DO NOTHING";
  const std::string copy = "COPY " + std::string(via_temp ? "load_requests" : "requests") + " (" +
                           columns + ") FROM STDIN";
  const uint64_t start = now_ns();
  std::string buf;
  char number[64];
  for (size_t first = 0; first < rows.size(); first += batch) {
    if (via_temp) db.exec("BEGIN");
    PGresult* r = PQexec(db.get(), copy.c_str());
    check(PQresultStatus(r) == PGRES_COPY_IN, PQerrorMessage(db.get()));
    PQclear(r);
    buf.clear();
    for (size_t i = first; i < std::min(rows.size(), first + batch); ++i) {
      const RequestLog& l = rows[i].request;
      buf += copy_escape(l.request_id) + '\t' + copy_escape(l.method) + '\t' + copy_escape(l.path) + '\t';
      std::snprintf(number, sizeof number, "%u\t%.17g\t", unsigned(l.status_code), l.duration_ms);
      buf += number;
      buf += copy_escape(l.user_agent) + '\t' + copy_escape(l.remote_ip) + '\t' + copy_escape(l.referer) +
             '\t' + copy_escape(l.device_type) + '\t' + copy_escape(l.session_id) + '\t';
      std::snprintf(number, sizeof number, "%u\t%lld\t", l.session_page_views, (long long)l.inserted_at);
      buf += number + copy_escape(l.node_id) + '\t' + std::to_string(l.seq) + '\n';
    }
    check(PQputCopyData(db.get(), buf.data(), int(buf.size())) == 1, PQerrorMessage(db.get()));
    check(PQputCopyEnd(db.get(), nullptr) == 1, PQerrorMessage(db.get()));
    while ((r = PQgetResult(db.get())) != nullptr) {
      check(PQresultStatus(r) == PGRES_COMMAND_OK, PQresultErrorMessage(r));
      PQclear(r);
    }
    if (via_temp) {
      db.exec(insert);
      db.exec("COMMIT");
    }
  }
  return double(rows.size()) / seconds_since(start);
}

// The naive baseline: one autocommitted INSERT ... ON CONFLICT DO NOTHING per event.
double naive_rows_per_s(const std::string& conninfo, const std::vector<Message>& rows) {
  Db db(conninfo);
  const std::string sql = schema::insert_ignore_sql(schema::requests_table(), schema::Dialect::postgres);
  const uint64_t start = now_ns();
  for (const Message& m : rows) {
    const RequestLog& l = m.request;
    char duration[32];
    std::snprintf(duration, sizeof duration, "%.17g", l.duration_ms);
    const std::string status = std::to_string(l.status_code), views = std::to_string(l.session_page_views),
                      at = std::to_string(l.inserted_at), seq = std::to_string(l.seq);
    const char* values[] = {l.request_id.c_str(), l.method.c_str(), l.path.c_str(), status.c_str(),
                            duration, l.user_agent.c_str(), l.remote_ip.c_str(), l.referer.c_str(),
                            l.device_type.c_str(), l.session_id.c_str(), views.c_str(), at.c_str(),
                            l.node_id.c_str(), seq.c_str()};
    PGresult* r = PQexecParams(db.get(), sql.c_str(), 14, nullptr, values, nullptr, nullptr, 0);
    check(PQresultStatus(r) == PGRES_COMMAND_OK, PQresultErrorMessage(r));
    PQclear(r);
  }
  return double(rows.size()) / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const CommonFlags flags = parse_common_flags(argc, argv, 20000);
    size_t batch = 1000;
    bool durable = true;
    std::string locale = "C";
    for (size_t i = 0; i < flags.rest.size(); ++i) {
      if (flags.rest[i] == "--batch" && i + 1 < flags.rest.size()) {
        batch = std::strtoul(flags.rest[++i].c_str(), nullptr, 10);
      } else if (flags.rest[i] == "--no-fsync") {
        durable = false;
      } else if (flags.rest[i] == "--locale" && i + 1 < flags.rest.size()) {
        locale = flags.rest[++i];
      } else {
        throw std::invalid_argument("unknown argument: " + flags.rest[i]);
      }
    }
    if (batch == 0) throw std::invalid_argument("--batch: expected a positive integer");
    test::PostgresServerOptions server_options;
    server_options.database = "bench";
    server_options.durable = durable;  // default: PostgreSQL's defaults, fsync on
    server_options.locale = locale;
    test::PostgresServer server(server_options);
    const std::string conninfo = server.conninfo();
    const size_t n = flags.events;
    const size_t naive_n = std::max<size_t>(1000, n / 40);
    const std::vector<Message> rows = make_messages(n);
    const std::vector<Message> naive_rows(rows.begin(), rows.begin() + long(std::min(n, naive_n)));

    std::vector<double> sink1, sink2, sink100, replay, insert2, copy_temp, copy_direct, naive, db_keys,
        db_keys_replay;
    Db admin(conninfo);
    auto fresh = [&] {
      admin.exec("TRUNCATE requests");
      admin.exec("CHECKPOINT");
    };
    for (int run = 0; run < flags.runs; ++run) {
      if (run == 0) {  // creates the schema
        PostgresSinkOptions o;
        o.conninfo = conninfo;
        check(PostgresSink(o).write({rows.front()}, std::chrono::seconds(30)).ok(), "schema");
      }
      fresh();
      sink1.push_back(sink_rows_per_s(conninfo, rows, batch, 1));
      check(admin.count("requests") == long(n), "sink stored a wrong number of rows");
      replay.push_back(sink_rows_per_s(conninfo, rows, batch, 1));  // every row a duplicate
      check(admin.count("requests") == long(n), "replay changed the row count");
      fresh();
      sink2.push_back(sink_rows_per_s(conninfo, rows, batch, 2));
      fresh();
      sink100.push_back(sink_rows_per_s(conninfo, rows, 100, 1));
      fresh();
      insert2.push_back(sink_rows_per_s(conninfo, rows, batch, 2, false));
      check(admin.count("requests") == long(n), "sink (INSERT) stored a wrong number of rows");
      fresh();
      copy_temp.push_back(copy_text_rows_per_s(conninfo, rows, batch, true));
      check(admin.count("requests") == long(n), "copy->temp stored a wrong number of rows");
      fresh();
      copy_direct.push_back(copy_text_rows_per_s(conninfo, rows, batch, false));
      check(admin.count("requests") == long(n), "copy stored a wrong number of rows");
      // The key with the database's collation (before migration 3), loaded and replayed as above.
      fresh();
      admin.exec("ALTER TABLE requests ALTER COLUMN request_id TYPE TEXT COLLATE \"default\"");
      db_keys.push_back(sink_rows_per_s(conninfo, rows, batch, 1));
      check(admin.count("requests") == long(n), "sink (database collation) stored a wrong number of rows");
      db_keys_replay.push_back(sink_rows_per_s(conninfo, rows, batch, 1));
      admin.exec("TRUNCATE requests");
      admin.exec("ALTER TABLE requests ALTER COLUMN request_id TYPE TEXT COLLATE \"C\"");
      fresh();
      naive.push_back(naive_rows_per_s(conninfo, naive_rows));
      check(admin.count("requests") == long(naive_rows.size()), "naive stored a wrong number of rows");
    }
    const double naive_median = median(naive);
    const double copy_median = median(copy_temp);
    auto sink_case = [&](const std::string& name, const std::vector<double>& v, size_t b, int threads) {
      Result r{name, median(v), "rows/s", "pg_naive_autocommit", ratio(median(v), naive_median), {}};
      r.add("batch", double(b)).add("threads", double(threads)).add("rows", double(n));
      r.add("vs_copy_temp", ratio(median(v), copy_median));
      r.add("min", *std::min_element(v.begin(), v.end())).add("max", *std::max_element(v.begin(), v.end()));
      return r;
    };
    std::vector<Result> results;
    results.push_back(sink_case("pg_sink_write", sink1, batch, 1));
    results.push_back(sink_case("pg_sink_write_2conn", sink2, batch, 2));
    results.push_back(sink_case("pg_sink_write_batch100", sink100, 100, 1));
    results.push_back(sink_case("pg_sink_replay_duplicates", replay, batch, 1));
    results.push_back(sink_case("pg_sink_insert_2conn", insert2, batch, 2));
    // Baselines the schema before migration 3: the same loads with the key in the database's
    // collation (ratio > 1: "C" is faster).
    for (const auto& [name, c_keys, db] :
         {std::tuple{"pg_sink_write", &sink1, &db_keys}, std::tuple{"pg_sink_replay", &replay, &db_keys_replay}}) {
      Result r{std::string(name) + "_key_collation_c", median(*c_keys), "rows/s",
               std::string(name) + "_key_collation_database", ratio(median(*c_keys), median(*db)), {}};
      r.add("baseline_value", median(*db)).add("locale", locale).add("batch", double(batch)).add("rows", double(n));
      results.push_back(r);
    }
    for (const auto& [name, v] : {std::pair{"pg_copy_temp_on_conflict", &copy_temp},
                                  std::pair{"pg_copy_text_not_idempotent", &copy_direct}}) {
      Result copy{name, median(*v), "rows/s", "pg_naive_autocommit", ratio(median(*v), naive_median), {}};
      copy.add("batch", double(batch)).add("rows", double(n));
      results.push_back(copy);
    }
    Result base{"pg_naive_autocommit", naive_median, "rows/s", "", std::nan(""), {}};
    base.add("rows", double(naive_rows.size())).add("fsync", durable);
    results.push_back(base);
    print_results(results, flags.json);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "postgres_sink_bench: %s\n", e.what());
    return 1;
  }
}
