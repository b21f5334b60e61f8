#pragma once
// Private helpers of PostgresSink: binary array parameters, batch encoding and SQL text.
// Kept apart from postgres_sink.cpp (connection handling) so each file stays small.
// Thread-safety: pure functions and value types.
#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "analytics/sinks/schema.hpp"
#include "reqbus/counter_sink.hpp"
#include "reqbus/message.hpp"

namespace reqbus::postgres_detail {

struct PgResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// The parameters of one statement: each is a binary one-dimensional array (one per column).
struct ParamSet {
  uint64_t rows = 0;
  std::vector<std::string> buffers;  // PostgreSQL's binary array format
  std::vector<Oid> types;            // the array type of each parameter
  uint64_t replaced = 0;             // text values whose bytes text cannot hold became U+FFFD
};

// A batch split by table: rows sorted by primary key, so concurrent writers lock index entries
// in the same order and cannot deadlock on overlapping batches.
struct EncodedBatch {
  ParamSet requests;
  ParamSet events;
  std::vector<size_t> request_order, event_order;  // the batch's indices, in row order
};

// What PostgreSQL's text stores for `value`. Its text is UTF-8 without NUL: one byte outside
// that (a scanner's \xff in a path, a Latin-1 user agent, a NUL from JSON's \u0000) fails the
// whole statement (SQLSTATE 22021), and with it every other row of the batch, for good. So each
// NUL and each byte that starts no valid UTF-8 sequence becomes U+FFFD: `value` itself when
// nothing needs it (nearly always), else `scratch` filled with the copy, and *replaced set.
// The encoders write every text column through it; so ids compared with what the store
// returns must be too.
std::string_view text_value(std::string_view value, std::string& scratch, bool* replaced = nullptr);

EncodedBatch encode_batch(const std::vector<Message>& batch);

// The rows of a batch of one kind in COPY's binary format, sorted by primary key as above.
struct CopyData {
  bool requests = true;  // into requests, else into events
  uint64_t rows = 0;
  std::string bytes;
  uint64_t replaced = 0;  // as ParamSet::replaced
};
// nullopt when the batch is empty or holds both kinds (those go through insert_both_sql()).
std::optional<CopyData> encode_copy(const std::vector<Message>& batch);
// COPY <table> (<columns>) FROM STDIN (FORMAT binary)
std::string copy_sql(const schema::Table& table);
// Parameters of counter_flush_sql(): key[], window_start[], node_id[], count[], updated_at.
ParamSet encode_counter_flushes(const std::vector<CounterFlush>& flushes, int64_t now_us);
// a's parameters followed by b's.
ParamSet concat(const ParamSet& a, const ParamSet& b);

// INSERT INTO <table> (<columns>) SELECT * FROM unnest($first::type[], ...) ON CONFLICT DO
// NOTHING [RETURNING <returning>]
std::string insert_unnest_sql(const schema::Table& table, int first_param, std::string_view returning = {});
// Both tables in one statement (two data-modifying CTEs); returns a row for each row stored now:
// (0, request_id) or (1, message_id). Parameters: the requests' columns, then the events'.
std::string insert_both_sql();
// Inserts the flushes into counter_flushes, adds only the new ones to counters, and returns
// one row: the number of flushes applied.
std::string counter_flush_sql();

// SQLSTATEs worth retrying: connection (08), transaction rollback (40: serialization,
// deadlock), resources (53), operator intervention (57: shutdown, cancel, statement timeout),
// system (58), lock not available (55P03).
bool is_transient_sqlstate(const std::string& sqlstate);
// A connection failure that retrying will not fix: bad password, unknown role or database,
// no pg_hba.conf entry.
bool is_permanent_connect_error(const std::string& message);
// "postgres:<host>:<port>/<dbname>"; throws reqbus::Error(invalid_argument) when the conninfo
// does not parse.
std::string describe_conninfo(const std::string& conninfo);

}  // namespace reqbus::postgres_detail
