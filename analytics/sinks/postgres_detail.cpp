#include "analytics/sinks/postgres_detail.hpp"

#include <algorithm>
#include <bit>
#include <numeric>
#include <string_view>
#include <tuple>

#include "analytics/utf8.hpp"
#include "reqbus/error.hpp"

namespace reqbus::postgres_detail {
namespace {

using schema::ColumnType;

// Element and array type OIDs (pg_type.dat): fixed since PostgreSQL 7.
constexpr Oid kTextOid = 25, kInt4Oid = 23, kInt8Oid = 20, kFloat8Oid = 701;
constexpr Oid kTextArrayOid = 1009, kInt4ArrayOid = 1007, kInt8ArrayOid = 1016,
              kFloat8ArrayOid = 1022;

void put32(std::string& out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(bytes, 4);
}
void put64(std::string& out, uint64_t v) {
  put32(out, static_cast<uint32_t>(v >> 32));
  put32(out, static_cast<uint32_t>(v));
}

// A text value, length first, as text_value() makes it; counted in `replaced` when changed.
void put_text(std::string& out, std::string_view value, uint64_t& replaced) {
  std::string scratch;
  bool changed = false;
  const std::string_view text = text_value(value, scratch, &changed);
  replaced += changed;
  put32(out, static_cast<uint32_t>(text.size()));
  out.append(text);
}

Oid element_oid(ColumnType type) {
  switch (type) {
    case ColumnType::text:
    case ColumnType::json: return kTextOid;
    case ColumnType::int32: return kInt4Oid;
    case ColumnType::int64: return kInt8Oid;
    case ColumnType::float64: return kFloat8Oid;
  }
  return kTextOid;
}
Oid array_oid(ColumnType type) {
  switch (type) {
    case ColumnType::text:
    case ColumnType::json: return kTextArrayOid;
    case ColumnType::int32: return kInt4ArrayOid;
    case ColumnType::int64: return kInt8ArrayOid;
    case ColumnType::float64: return kFloat8ArrayOid;
  }
  return kTextArrayOid;
}
const char* array_type_name(ColumnType type) {
  switch (type) {
    case ColumnType::text:
    case ColumnType::json: return "text[]";
    case ColumnType::int32: return "int4[]";
    case ColumnType::int64: return "int8[]";
    case ColumnType::float64: return "float8[]";
  }
  return "text[]";
}

// Builds one parameter per column of `table`, in PostgreSQL's binary array format:
// ndim, has_null, element oid, (length, lower bound), then per element its length (-1 = NULL)
// and bytes. The null flag is patched in at the end.
class TableEncoder {
 public:
  TableEncoder(const schema::Table& table, size_t rows) : table_(table) {
    params_.rows = rows;
    for (const schema::Column& column : table.columns) {
      std::string buf;
      buf.reserve(20 + rows * (column.type == ColumnType::text ? 32 : 12));
      put32(buf, rows ? 1 : 0);
      put32(buf, 0);
      put32(buf, element_oid(column.type));
      if (rows) {
        put32(buf, static_cast<uint32_t>(rows));
        put32(buf, 1);
      }
      params_.buffers.push_back(std::move(buf));
      params_.types.push_back(array_oid(column.type));
    }
  }
  void text(int column, std::string_view value) {
    std::string& buf = params_.buffers[column];
    if (value.empty() && table_.columns[column].type == ColumnType::json) {
      put32(buf, 0xFFFFFFFFu);  // "" is stored as NULL in JSON columns (schema.hpp)
      buf[7] = 1;               // has_null
      return;
    }
    put_text(buf, value, params_.replaced);
  }
  void int32(int column, int32_t value) {
    put32(params_.buffers[column], 4);
    put32(params_.buffers[column], static_cast<uint32_t>(value));
  }
  void int64(int column, int64_t value) {
    put32(params_.buffers[column], 8);
    put64(params_.buffers[column], static_cast<uint64_t>(value));
  }
  void float64(int column, double value) {
    put32(params_.buffers[column], 8);
    put64(params_.buffers[column], std::bit_cast<uint64_t>(value));
  }
  ParamSet take() { return std::move(params_); }

 private:
  const schema::Table& table_;
  ParamSet params_;
};

// Indices of batch's messages of one family, sorted by their primary key.
template <typename Pred, typename Key>
std::vector<size_t> sorted_indices(const std::vector<Message>& batch, Pred pred, Key key) {
  std::vector<size_t> out;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (pred(batch[i])) out.push_back(i);
  }
  if (!std::is_sorted(out.begin(), out.end(),
                      [&](size_t a, size_t b) { return key(batch[a]) < key(batch[b]); })) {
    std::stable_sort(out.begin(), out.end(),
                     [&](size_t a, size_t b) { return key(batch[a]) < key(batch[b]); });
  }
  return out;
}

// The columns of one row, in table order, through an encoder with TableEncoder's interface.
template <typename Encoder>
void encode_row(Encoder& r, const RequestLog& log) {
  namespace s = schema;
  r.text(s::kRequestId, log.request_id);
  r.text(s::kMethod, log.method);
  r.text(s::kPath, log.path);
  r.int32(s::kStatusCode, log.status_code);
  r.float64(s::kDurationMs, log.duration_ms);
  r.text(s::kUserAgent, log.user_agent);
  r.text(s::kRemoteIp, log.remote_ip);
  r.text(s::kReferer, log.referer);
  r.text(s::kDeviceType, log.device_type);
  r.text(s::kSessionId, log.session_id);
  r.int64(s::kSessionPageViews, log.session_page_views);
  r.int64(s::kInsertedAt, log.inserted_at);
  r.text(s::kRequestNodeId, log.node_id);
  r.int64(s::kRequestSeq, static_cast<int64_t>(log.seq));  // BIGINT: wraps past 2^63
}
template <typename Encoder>
void encode_row(Encoder& e, const Message& m) {
  namespace s = schema;
  const AnalyticsEvent& ev = m.analytics;
  e.text(s::kMessageId, ev.message_id);
  e.text(s::kType, to_string(m.kind));
  e.text(s::kUserId, ev.user_id);
  e.int64(s::kTimestamp, ev.timestamp);
  e.text(s::kEvent, ev.event);
  e.text(s::kEmail, ev.email);
  e.text(s::kTimezone, ev.timezone);
  e.text(s::kAccountId, ev.account_id);
  e.text(s::kName, ev.name);
  e.text(s::kTraits, ev.traits_json);
  e.text(s::kProperties, ev.properties_json);
  e.text(s::kEventNodeId, ev.node_id);
  e.int64(s::kEventSeq, static_cast<int64_t>(ev.seq));
}

// COPY's binary format, row by row: the signature, flags and header extension; per row the
// field count, then per field its length (-1 = NULL) and bytes; a -1 field count at the end.
class CopyEncoder {
 public:
  CopyEncoder(const schema::Table& table, size_t rows) : table_(table) {
    data_.rows = rows;
    data_.bytes.reserve(21 + rows * 300);
    data_.bytes.append("PGCOPY\n\377\r\n\0", 11);
    put32(data_.bytes, 0);  // flags: no OIDs
    put32(data_.bytes, 0);  // header extension length
  }
  void begin_row() { put16(static_cast<uint16_t>(table_.columns.size())); }
  void text(int column, std::string_view value) {
    if (value.empty() && table_.columns[column].type == ColumnType::json) {
      put32(data_.bytes, 0xFFFFFFFFu);  // as TableEncoder: "" is NULL in JSON columns
      return;
    }
    put_text(data_.bytes, value, data_.replaced);
  }
  void int32(int, int32_t value) {
    put32(data_.bytes, 4);
    put32(data_.bytes, static_cast<uint32_t>(value));
  }
  void int64(int, int64_t value) {
    put32(data_.bytes, 8);
    put64(data_.bytes, static_cast<uint64_t>(value));
  }
  void float64(int, double value) {
    put32(data_.bytes, 8);
    put64(data_.bytes, std::bit_cast<uint64_t>(value));
  }
  CopyData take() {
    put16(0xFFFF);
    return std::move(data_);
  }

 private:
  void put16(uint16_t v) {
    const char bytes[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
    data_.bytes.append(bytes, 2);
  }
  const schema::Table& table_;
  CopyData data_;
};

bool is_request(const Message& m) { return m.kind == MessageKind::request_sent; }
const std::string& request_key(const Message& m) { return m.request.request_id; }
const std::string& event_key(const Message& m) { return m.analytics.message_id; }

}  // namespace

std::string_view text_value(std::string_view value, std::string& scratch, bool* replaced) {
  bool plain = true;  // ASCII without NUL: by far the usual case, checked without decoding
  for (const char c : value) plain &= static_cast<unsigned char>(c - 1) < 0x7f;
  if (plain || (value.find('\0') == std::string_view::npos && utf8::valid(value))) return value;
  if (replaced) *replaced = true;
  scratch.clear();
  for (size_t i = 0; i < value.size();) {
    const size_t n = value[i] == '\0' ? 0 : utf8::sequence(value, i);
    scratch.append(n ? value.substr(i, n) : utf8::kReplacement);
    i += n ? n : 1;
  }
  return scratch;
}

EncodedBatch encode_batch(const std::vector<Message>& batch) {
  const auto requests = sorted_indices(batch, is_request, request_key);
  const auto events = sorted_indices(batch, [](const Message& m) { return !is_request(m); }, event_key);
  TableEncoder r(schema::requests_table(), requests.size());
  for (size_t i : requests) encode_row(r, batch[i].request);
  TableEncoder e(schema::events_table(), events.size());
  for (size_t i : events) encode_row(e, batch[i]);
  return EncodedBatch{r.take(), e.take(), requests, events};
}

std::optional<CopyData> encode_copy(const std::vector<Message>& batch) {
  if (batch.empty()) return std::nullopt;
  const bool requests = is_request(batch.front());
  for (const Message& m : batch) {
    if (is_request(m) != requests) return std::nullopt;  // both kinds: one INSERT statement
  }
  const auto order = requests ? sorted_indices(batch, is_request, request_key)
                              : sorted_indices(batch, [](const Message&) { return true; }, event_key);
  CopyEncoder c(requests ? schema::requests_table() : schema::events_table(), order.size());
  for (size_t i : order) {
    c.begin_row();
    if (requests) {
      encode_row(c, batch[i].request);
    } else {
      encode_row(c, batch[i]);
    }
  }
  CopyData out = c.take();
  out.requests = requests;
  return out;
}

ParamSet encode_counter_flushes(const std::vector<CounterFlush>& flushes, int64_t now_us) {
  namespace s = schema;
  std::vector<size_t> order(flushes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const CounterFlush& x = flushes[a];
    const CounterFlush& y = flushes[b];
    return std::tie(x.key, x.window_start, x.node_id) < std::tie(y.key, y.window_start, y.node_id);
  });
  TableEncoder t(s::counter_flushes_table(), flushes.size());
  for (size_t i : order) {
    t.text(s::kFlushKey, flushes[i].key);
    t.int64(s::kWindowStart, flushes[i].window_start);
    t.text(s::kFlushNodeId, flushes[i].node_id);
    t.int64(s::kFlushCount, flushes[i].count);
  }
  ParamSet params = t.take();
  std::string now;
  put64(now, static_cast<uint64_t>(now_us));
  params.buffers.push_back(std::move(now));
  params.types.push_back(kInt8Oid);
  return params;
}

ParamSet concat(const ParamSet& a, const ParamSet& b) {
  ParamSet out = a;
  out.rows += b.rows;
  out.replaced += b.replaced;
  out.buffers.insert(out.buffers.end(), b.buffers.begin(), b.buffers.end());
  out.types.insert(out.types.end(), b.types.begin(), b.types.end());
  return out;
}

std::string insert_unnest_sql(const schema::Table& table, int first_param, std::string_view returning) {
  std::string sql = "INSERT INTO " + std::string(table.name) + " (" + schema::column_list(table) +
                    ") SELECT * FROM unnest(";
  for (size_t i = 0; i < table.columns.size(); ++i) {
    if (i) sql += ", ";
    sql += '$';  // not "$" + std::to_string(...): g++ 12 -O3 warns falsely (-Wrestrict)
    sql += std::to_string(first_param + static_cast<int>(i));
    sql += "::";
    sql += array_type_name(table.columns[i].type);
  }
  sql += ") ON CONFLICT DO NOTHING";
  if (!returning.empty()) sql.append(" RETURNING ").append(returning);
  return sql;
}

std::string copy_sql(const schema::Table& table) {
  return "COPY " + std::string(table.name) + " (" + schema::column_list(table) +
         ") FROM STDIN (FORMAT binary)";
}

std::string insert_both_sql() {
  const int events_first = static_cast<int>(schema::requests_table().columns.size()) + 1;
  // The ids stored now: 0 and a request_id, 1 and a message_id (rows already there return none).
  return "WITH r AS (" + insert_unnest_sql(schema::requests_table(), 1, "request_id") + "), e AS (" +
         insert_unnest_sql(schema::events_table(), events_first, "message_id") +
         ") SELECT 0, request_id FROM r UNION ALL SELECT 1, message_id FROM e";
}

std::string counter_flush_sql() {
  // ORDER BY key: concurrent flushes of the same keys update `counters` rows in one order.
  return "WITH new AS (" +
         insert_unnest_sql(schema::counter_flushes_table(), 1) +
         " RETURNING key, count), "
         "added AS (INSERT INTO counters (key, value, updated_at) "
         "SELECT key, sum(count), $5 FROM new GROUP BY key ORDER BY key "
         "ON CONFLICT (key) DO UPDATE SET value = counters.value + excluded.value, "
         "updated_at = excluded.updated_at RETURNING 1) "
         "SELECT count(*) FROM new";
}

bool is_transient_sqlstate(const std::string& sqlstate) {
  if (sqlstate.size() != 5) return false;
  const std::string_view cls(sqlstate.data(), 2);
  // 25006: a read-only session (a primary demoted in a failover, default_transaction_read_only):
  // the store being down, not a bad batch, so retried (and spooled by a Batcher) until it is
  // writable, rather than set aside for good. (Not 42501: PostgreSQL also names a row that a
  // row-level security policy refuses so, which no retry fixes.)
  return cls == "08" || cls == "40" || cls == "53" || cls == "57" || cls == "58" ||
         sqlstate == "55P03" || sqlstate == "25006";
}

bool is_permanent_connect_error(const std::string& message) {
  for (const char* marker : {"authentication failed", "does not exist", "no pg_hba.conf entry",
                             "password is missing", "no password supplied", "permission denied",
                             "invalid connection option", "not permitted to log in"}) {
    if (message.find(marker) != std::string::npos) return true;
  }
  return false;
}

std::string describe_conninfo(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (parsed == nullptr) {
    std::string why = error ? error : "out of memory";
    PQfreemem(error);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    throw Error(ErrorCode::invalid_argument, "PostgresSinkOptions.conninfo: " + why);
  }
  std::string host, port, dbname, user;
  for (PQconninfoOption* o = parsed; o->keyword; ++o) {
    const std::string_view key = o->keyword;
    const std::string value = o->val ? o->val : "";
    if (key == "host" || (key == "hostaddr" && host.empty())) host = value;
    if (key == "port") port = value;
    if (key == "dbname") dbname = value;
    if (key == "user") user = value;
  }
  PQconninfoFree(parsed);
  if (dbname.empty()) dbname = user;
  return "postgres:" + (host.empty() ? std::string("localhost") : host) + ":" +
         (port.empty() ? std::string("5432") : port) + "/" + dbname;
}

}  // namespace reqbus::postgres_detail
