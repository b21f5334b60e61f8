#pragma once
// JSON encodings shared by the ingestion Client, the HTTP sink and (later) the node's HTTP API:
//  - identify / group / track as Segment HTTP Tracking API messages, and whole /v1/batch bodies
//    ({"batch":[...],"sentAt":"..."}), written and strictly parsed;
//  - arrays of RequestLogs, each object in analytics/request_json.hpp's mapping (the schema's
//    field names), which this file reuses rather than repeats.
//
// Field mapping of an AnalyticsEvent (Segment's conventions):
//   type -> "type", user_id -> "userId", message_id -> "messageId",
//   timestamp (µs) -> "timestamp" (ISO-8601 UTC with microseconds, omitted when 0),
//   event -> "event" (track), account_id -> "groupId" (group),
//   traits_json -> "traits" (identify/group), properties_json -> "properties" (track),
//   email -> traits.email (identify), name -> traits.name (group),
//   timezone -> context.timezone, node_id/seq -> context.reqbus.{nodeId,seq} (when node_id set).
// Parsing moves traits.email / traits.name back into their fields (removing them from
// traits_json) so encode -> parse is the identity on events whose traits do not themselves
// carry "email"/"name".
//
// Strictness: the parsers reject invalid JSON, text nested deeper than kMaxJsonDepth, bodies
// over the size limit, a wrong JSON type for any known field, a missing required field (userId;
// event for track; groupId for group) and anything reqbus::validate() refuses, with a message
// that names the item and the field ("batch[2].userId: missing (required)"). Unknown fields are ignored, so Segment clients that
// send context, integrations, anonymousId... are accepted. Strings must be valid UTF-8 (JSON);
// when encoding, invalid UTF-8 bytes are replaced by U+FFFD since JSON cannot carry raw bytes.
//
// Thread-safety: free functions without shared state.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reqbus/analytics_event.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus::segment {

// Nesting the parsers accept (arrays and objects inside one another, the body included);
// deeper text is refused as a whole: "body: nested deeper than 64 levels".
inline constexpr size_t kMaxJsonDepth = 64;

struct ParseLimits {
  size_t max_body_bytes = 500 * 1024;  // bytes; Segment's documented /v1/batch limit (500 KB)
  size_t max_items = 10'000;           // items per batch or array
};

// One rejected item of a batch or array, with the reason naming the field.
struct ItemError {
  size_t index = 0;
  std::string message;
};

struct ParsedBatch {
  std::vector<AnalyticsEvent> events;  // the valid items, in order
  std::vector<ItemError> rejected;     // the invalid ones, with why
  int64_t sent_at = 0;                 // "sentAt" in µs since the epoch; 0 when absent
};

struct ParsedRequestLogs {
  std::vector<RequestLog> logs;
  std::vector<ItemError> rejected;
};

// --- encoding -------------------------------------------------------------------------------
// Appends one Segment message object. Returns "" or why it cannot be encoded (traits or
// properties that are not a JSON object: "traits: ..."); `out` is unchanged on error.
[[nodiscard]] std::string append_json(std::string& out, const AnalyticsEvent& event);

// {"batch":[<messages...>],"sentAt":"<ISO-8601>"} from already-encoded message objects.
std::string batch_body(const std::vector<std::string>& encoded_messages, int64_t sent_at_us);
// Same from events; returns "" in `error` on success.
std::string batch_body(const std::vector<AnalyticsEvent>& events, int64_t sent_at_us,
                       std::string& error);
// [<RequestLog objects...>]
std::string request_logs_body(const std::vector<RequestLog>& logs);

// "2023-11-14T22:13:20.123456Z"; a time after the year 9999 (no validation bounds one from the
// bus) as 9999-12-31T23:59:59.999999Z, the last one four-digit years can write.
std::string format_timestamp(int64_t unix_us);
// ISO-8601 / RFC 3339 date-time: fraction of 0..9 digits, "Z" or a ±hh:mm offset. Returns false
// for anything else.
[[nodiscard]] bool parse_timestamp(std::string_view text, int64_t& unix_us);

// --- parsing (strict; see the header comment) -------------------------------------------------
// A /v1/batch body. Returns "" when the body itself is acceptable (then `out` holds the valid
// events and the per-item rejections), else why the whole body is refused (invalid JSON, too
// large, not an object, no "batch" array, too many items).
[[nodiscard]] std::string parse_batch(std::string_view body, ParsedBatch& out,
                                      const ParseLimits& limits = {});
// One Segment message object (as text).
[[nodiscard]] std::string parse_event(std::string_view json, AnalyticsEvent& out);

// A JSON array of RequestLog objects; same contract as parse_batch.
[[nodiscard]] std::string parse_request_logs(std::string_view body, ParsedRequestLogs& out,
                                             const ParseLimits& limits = {});
// One RequestLog object (as text), by json::from_json's rules (method, path, status_code
// required). Item errors are prefixed "[i].".
[[nodiscard]] std::string parse_request_log(std::string_view json, RequestLog& out);

// Whether JSON text nests arrays and objects deeper than kMaxJsonDepth: one pass over its bytes
// (brackets inside strings are text), before it is parsed. The parsers here refuse such text
// themselves; this is for other parsers of JSON lines (reqbus ingest, the syslog listener).
[[nodiscard]] bool nested_too_deep(std::string_view text);

// Checks that `text` is "" or a JSON object; returns "" or a message starting with `field`.
[[nodiscard]] std::string check_json_object(std::string_view field, std::string_view text);

}  // namespace reqbus::segment
