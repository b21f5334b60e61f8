#pragma once
// The JSON form of a RequestLog: one object whose keys are the schema's column names
// (request_id, method, path, status_code, duration_ms, user_agent, remote_ip, referer,
// device_type, session_id, session_page_views, inserted_at, node_id, seq). Used by the NDJSON
// sink, the HTTP sink, `reqbus tail`, `POST /v1/requests` and NDJSON ingest.
// Thread-safety: pure functions.
#include <nlohmann/json.hpp>
#include <string>

#include "reqbus/request_log.hpp"

namespace reqbus::json {

// JSON strings are UTF-8: in a field that is not valid UTF-8, each byte outside a valid sequence
// becomes U+FFFD (3 bytes; each run of them one, when one each would pass the field's
// RequestLogLimits limit), and the field is then cut to that limit on a character boundary, so that what reqbus writes is always accepted back by from_json()
// (NDJSON sink or `reqbus tail` -> `reqbus ingest --format ndjson`). Valid UTF-8 is kept as is.
// *replaced (when given) says whether any field was replaced.
nlohmann::json to_json(const RequestLog& log, bool* replaced = nullptr);
// One line of NDJSON (no trailing newline), escaped so any byte sequence stays valid JSON.
void append_ndjson(std::string& out, const RequestLog& log);

// Strict: `value` must be an object; method, path and status_code are required; every known
// key must have its type (strings, integers, numbers); unknown keys are ignored. The result
// must pass validate(). Returns "" or "<field>: <reason>".
[[nodiscard]] std::string from_json(const nlohmann::json& value, RequestLog& out);
// For input (HTTP bodies, files to ingest): "" when out.inserted_at is 0 ("now") or a time in
// 2000..2999 (plausible_input_time), else "inserted_at: ..." naming the likely unit slip.
// from_json itself takes any time the bus takes, so what reqbus writes reads back.
[[nodiscard]] std::string input_time_problem(const RequestLog& log);

}  // namespace reqbus::json
