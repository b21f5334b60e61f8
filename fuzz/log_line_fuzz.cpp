// Fuzzes access-log ingest: LineParser::parse in every LogFormat (combined, nginx JSON, reqbus
// NDJSON, auto-detect), the RFC 3164 envelope (unwrap_syslog, then the line inside it) and the
// two time parsers on their own.
// Invariants: a parsed line gives a RequestLog that passes validate(); it survives the wire
// codec unchanged (append -> decode) and the NDJSON that reqbus writes for it (the NDJSON sink,
// `reqbus tail`) is accepted by `reqbus ingest --format ndjson`, unchanged when its strings are
// valid UTF-8 (JSON cannot carry other bytes: they become U+FFFD, cut back to the field's
// limit); a time that parses formats back (segment::format_timestamp) to a text that parses
// to the same instant (years 0000-9999).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "analytics/request_json.hpp"
#include "analytics/segment_json.hpp"
#include "fuzz/fuzz_check.hpp"
#include "ingest/log_parse.hpp"
#include "reqbus/codec.hpp"

namespace reqbus::fuzz::log_line {

inline bool valid_utf8_strings(const RequestLog& log) {
  bool replaced = false;
  (void)json::to_json(log, &replaced);  // replaces (and reports) invalid UTF-8
  return !replaced;
}

inline void check_parsed(const RequestLog& log) {
  REQBUS_FUZZ_CHECK(validate(log).empty(), validate(log));

  std::string wire;
  codec::append(wire, log);
  Message decoded;
  const auto error = codec::decode(wire.data(), wire.size(), decoded);
  REQBUS_FUZZ_CHECK(!error, std::string("parsed line does not survive the codec: ") + codec::to_string(*error));
  REQBUS_FUZZ_CHECK(decoded.request == log, "parsed line differs after the codec");

  // JSON cannot carry invalid UTF-8: append_ndjson writes U+FFFD (3 bytes) for each such byte
  // and cuts the field back to its limit, so the line is always accepted again (it once was
  // not: fuzz/crashes/log_line/invalid_utf8_*), but equal to the original only for valid UTF-8.
  std::string line;
  json::append_ndjson(line, log);
  ingest::LineParser ndjson(ingest::LogFormat::ndjson);
  RequestLog again;
  const std::string why = ndjson.parse(line, 1, 0, again);
  REQBUS_FUZZ_CHECK(why.empty(), "reqbus's own NDJSON for a parsed line is refused: " + why + " in " + line);
  if (!valid_utf8_strings(log)) return;
  REQBUS_FUZZ_CHECK(again == log, "parsed line differs after NDJSON: " + line);
}

inline void check_line(std::string_view line) {
  using ingest::LogFormat;
  for (LogFormat format : {LogFormat::auto_detect, LogFormat::combined, LogFormat::nginx_json, LogFormat::ndjson}) {
    ingest::LineParser parser(format);
    RequestLog log;
    if (parser.parse(line, 7, 42, log).empty()) {
      check_parsed(log);
      // A second parse of the same line by the same parser (its time cache now warm) must agree.
      RequestLog again;
      REQBUS_FUZZ_CHECK(parser.parse(line, 7, 42, again).empty() && again == log,
                        "LineParser gives another result with a warm cache");
    }
  }
}

// Instants a four-digit ISO year can write: 0000-01-01T00:00:00Z up to 9999-12-31T23:59:59Z.
// The parsers accept a year 0000/9999 time with an offset that moves it just outside; those
// have no ISO text to round-trip through, and no web server writes them.
inline constexpr int64_t kYear0Us = -62'167'219'200'000'000;
inline constexpr int64_t kYear10000Us = 253'402'300'800'000'000;

inline void check_time(std::string_view text) {
  int64_t us = 0, again = 0;
  if (ingest::parse_clf_time(text, us) && us >= kYear0Us && us < kYear10000Us) {
    const std::string iso = segment::format_timestamp(us);
    REQBUS_FUZZ_CHECK(ingest::parse_iso8601(iso, again) && again == us,
                      "CLF time " + std::string(text) + " formats to " + iso + " which does not parse back");
  }
  if (ingest::parse_iso8601(text, us) && us >= kYear0Us && us < kYear10000Us) {
    const std::string iso = segment::format_timestamp(us);
    REQBUS_FUZZ_CHECK(ingest::parse_iso8601(iso, again) && again == us,
                      "ISO time " + std::string(text) + " formats to " + iso + " which does not parse back");
  }
}

inline void run(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_line(input);
  std::string_view inner;
  if (ingest::unwrap_syslog(input, inner)) check_line(inner);
  check_time(input);
}

}  // namespace reqbus::fuzz::log_line

REQBUS_FUZZ_ENTRY(reqbus::fuzz::log_line::run)
