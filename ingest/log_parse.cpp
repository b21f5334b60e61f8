#include "ingest/log_parse.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "analytics/request_json.hpp"
#include "analytics/segment_json.hpp"
#include "analytics/utf8.hpp"
#include "reqbus/user_agent.hpp"
#include "reqbus/uuid.hpp"

namespace reqbus::ingest {
namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t mix(uint64_t x) noexcept {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view bytes) noexcept {
  uint64_t h = kFnvOffset;
  for (unsigned char c : bytes) h = (h ^ c) * kFnvPrime;
  return h;
}

// A line's bytes as 64 bits for its derived id, read 8 bytes at a time: byte-at-a-time FNV is
// one multiply per byte in a dependent chain, 215 ns for a 229-byte line here against 85 ns for
// this (parsing the line takes ~330). Little-endian by definition, not the host's order, so
// every machine derives the same ids.
uint64_t hash_line(std::string_view bytes) noexcept {
  auto le64 = [](const char* p, size_t n) {
    uint64_t w = 0;
    for (size_t i = 0; i < n; ++i) w |= uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
    return w;
  };
  uint64_t h = kFnvOffset ^ bytes.size();
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    h = (h ^ le64(bytes.data() + i, 8)) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
  }
  return mix(h ^ le64(bytes.data() + i, bytes.size() - i));
}

bool digits(std::string_view s, size_t pos, size_t n, int& out) noexcept {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

int month_index(std::string_view m) noexcept {
  static const char* names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i)
    if (m == names[i]) return i + 1;
  return 0;
}

bool civil_us(int y, int mo, int d, int h, int mi, int s, int64_t& out) noexcept {
  const std::chrono::year_month_day date{std::chrono::year(y), std::chrono::month(unsigned(mo)),
                                        std::chrono::day(unsigned(d))};
  if (!date.ok() || h > 23 || mi > 59 || s > 60) return false;  // 31 Feb is no day (it read as 3 Mar)
  out = ((int64_t(std::chrono::sys_days(date).time_since_epoch().count()) * 24 + h) * 60 + mi) * 60 + s;
  out *= 1000000;
  return true;
}

// "[+-]hhmm" or "[+-]hh:mm" or "Z" -> offset in seconds.
bool tz_offset(std::string_view z, int64_t& seconds) noexcept {
  if (z == "Z") {
    seconds = 0;
    return true;
  }
  if (z.size() < 5 || (z[0] != '+' && z[0] != '-')) return false;
  int h = 0, m = 0;
  const size_t mpos = z[3] == ':' ? 4 : 3;
  if (!digits(z, 1, 2, h) || !digits(z, mpos, 2, m) || z.size() != mpos + 2) return false;
  seconds = (h * 3600 + m * 60) * (z[0] == '-' ? -1 : 1);
  return true;
}

// Finds the double-quoted field starting at s[pos] == '"'; `out` is its text still escaped (a
// backslash escapes the next byte, so Apache's \" does not end the field; unescape() decodes).
// On failure `pos` is left where it was: a backslash as the last byte would otherwise step past
// the end, and the next token()'s substr would throw out_of_range out of parse() (found by
// fuzz/log_line_fuzz.cpp: one unterminated "\ in a syslog datagram terminated the process).
bool quoted(std::string_view s, size_t& pos, std::string_view& out) noexcept {
  if (pos >= s.size() || s[pos] != '"') return false;
  const size_t start = pos + 1;
  size_t end = start;
  while (end < s.size() && s[end] != '"') end += s[end] == '\\' ? 2 : 1;
  if (end >= s.size()) return false;
  out = s.substr(start, end - start);
  pos = end + 1;
  return true;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
  return -1;
}

// Decodes the escapes web servers write inside quoted fields into `out` (replacing it):
//   nginx (log_format escape=default): \xHH for '"', '\\' and bytes < 0x20 or >= 0x7f;
//   Apache (mod_log_config): \" and \\, \b \n \r \t \v, and \xHH for other control bytes.
// Anything else after a backslash (\q, \x2 at the end, \xZZ) is kept as written, and so is
// \x00: a NUL byte cannot be stored in a PostgreSQL TEXT column, the literal text can.
// Each escape is 2 or 4 bytes for 1, so the result is never longer than `raw`: the field
// limits (validate()) apply to the decoded value and no decoding can push a field past them.
void unescape(std::string_view raw, std::string& out) {
  out.clear();
  out.reserve(raw.size());
  size_t i = 0;
  for (;;) {
    const size_t backslash = raw.find('\\', i);
    if (backslash == std::string_view::npos) break;
    out.append(raw.substr(i, backslash - i));
    i = backslash + 1;  // past the backslash; now decode what follows, if we know it
    if (i >= raw.size()) {
      out.push_back('\\');
      break;
    }
    char decoded = 0;
    size_t length = 1;
    switch (raw[i]) {
      case '"': decoded = '"'; break;
      case '\\': decoded = '\\'; break;
      case 'b': decoded = '\b'; break;
      case 'n': decoded = '\n'; break;
      case 'r': decoded = '\r'; break;
      case 't': decoded = '\t'; break;
      case 'v': decoded = '\v'; break;
      case 'x':
        if (i + 2 < raw.size()) {
          const int hi = hex_digit(raw[i + 1]), lo = hex_digit(raw[i + 2]);
          if (hi >= 0 && lo >= 0) decoded = char(hi * 16 + lo);
          length = 3;
        }
        break;
      default: break;
    }
    if (decoded == 0) {  // unknown or malformed: keep the backslash; what follows is plain text
      out.push_back('\\');
      continue;
    }
    out.push_back(decoded);
    i += length;
  }
  out.append(raw.substr(i));
}

std::string_view token(std::string_view s, size_t& pos) noexcept {
  const size_t start = pos;
  while (pos < s.size() && s[pos] != ' ') ++pos;
  std::string_view t = s.substr(start, pos - start);
  while (pos < s.size() && s[pos] == ' ') ++pos;
  return t;
}

std::string_view dash_empty(std::string_view v) noexcept { return v == "-" ? std::string_view{} : v; }

// "GET /path?q HTTP/1.1" -> method, path (query stripped).
std::string split_request(std::string_view request, RequestLog& out) {
  const size_t sp1 = request.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return "request: not \"METHOD target PROTOCOL\"";
  out.method.assign(request.substr(0, sp1));
  std::string_view target = request.substr(sp1 + 1);
  if (const size_t sp2 = target.rfind(' '); sp2 != std::string_view::npos) target = target.substr(0, sp2);
  if (const size_t q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  if (target.empty()) return "request: empty target";
  out.path.assign(target);
  return {};
}

void fill_derived(RequestLog& out, std::string_view line, uint64_t source, uint64_t offset) {
  if (out.device_type.empty()) out.device_type = to_string(classify_user_agent(out.user_agent));
  if (out.request_id.empty()) {
    // The line's own bytes are part of the id, not only its place: sources that share a name
    // (every stdin is "stdin") have lines at the same offsets in the same second (combined logs
    // have whole seconds), and the store keeps the first of equal ids, silently.
    const uint64_t h = mix(mix(source ^ mix(offset + 0x9E3779B97F4A7C15ull)) ^ hash_line(line));
    out.request_id = uuid_v7_from(out.inserted_at / 1000, h >> 52, mix(h));
  }
}

const nlohmann::json* find(const nlohmann::json& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}

// nginx JSON logs write numbers either bare or as strings ("status":"200").
bool json_number(const nlohmann::json* v, double& out) {
  if (!v) return false;
  if (v->is_number()) {
    out = v->get<double>();
    return true;
  }
  if (v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  }
  return false;
}

std::string json_string(const nlohmann::json* v) {
  if (!v) return {};
  if (v->is_string()) return v->get<std::string>();
  return v->dump();
}

std::string parse_nginx_json(const nlohmann::json& o, RequestLog& out) {
  if (!o.is_object()) return "line: not a JSON object";
  out.remote_ip = json_string(find(o, "remote_addr"));
  out.user_agent = json_string(find(o, "http_user_agent"));
  out.referer = std::string(dash_empty(json_string(find(o, "http_referer"))));
  out.request_id = json_string(find(o, "request_id"));
  double status = 0, seconds = 0;
  if (!json_number(find(o, "status"), status)) return "status: missing or not a number";
  out.status_code = uint16_t(status >= 0 && status <= 65535 ? status : 0);
  if (json_number(find(o, "request_time"), seconds)) out.duration_ms = seconds * 1000.0;
  if (const auto* r = find(o, "request"); r && r->is_string()) {
    if (auto e = split_request(r->get_ref<const std::string&>(), out); !e.empty()) return e;
  } else {
    out.method = json_string(find(o, "request_method"));
    std::string uri = json_string(find(o, "request_uri"));
    if (uri.empty()) uri = json_string(find(o, "uri"));
    if (const size_t q = uri.find('?'); q != std::string::npos) uri.resize(q);
    out.path = uri;
  }
  double msec = 0;
  if (const auto* t = find(o, "time_iso8601"); t && t->is_string()) {
    if (!parse_iso8601(t->get_ref<const std::string&>(), out.inserted_at)) return "time_iso8601: not ISO 8601";
  } else if (const auto* t2 = find(o, "time_local"); t2 && t2->is_string()) {
    if (!parse_clf_time(t2->get_ref<const std::string&>(), out.inserted_at)) return "time_local: not [dd/Mon/yyyy:hh:mm:ss zone]";
  } else if (json_number(find(o, "msec"), msec)) {
    // Converting a double outside int64's range is undefined behaviour (UBSan, log_line_fuzz).
    if (!(std::fabs(msec) < 9.2e12)) return "msec: not a time in seconds since the epoch";
    out.inserted_at = int64_t(msec * 1e6);
  }
  return {};
}

}  // namespace

const char* to_string(LogFormat f) noexcept {
  switch (f) {
    case LogFormat::auto_detect: return "auto";
    case LogFormat::combined: return "combined";
    case LogFormat::nginx_json: return "nginx_json";
    case LogFormat::ndjson: return "ndjson";
  }
  return "?";
}

bool parse_format(std::string_view name, LogFormat& out) noexcept {
  for (LogFormat f : {LogFormat::auto_detect, LogFormat::combined, LogFormat::nginx_json, LogFormat::ndjson})
    if (name == to_string(f)) {
      out = f;
      return true;
    }
  return false;
}

uint64_t source_id(std::string_view name) noexcept { return mix(fnv1a(name)); }

bool unwrap_syslog(std::string_view d, std::string_view& message) noexcept {
  // <PRI>
  if (d.size() < 4 || d[0] != '<') return false;
  size_t pos = 1;
  while (pos < d.size() && pos < 5 && d[pos] >= '0' && d[pos] <= '9') ++pos;
  if (pos == 1 || pos >= d.size() || d[pos] != '>') return false;
  ++pos;
  // "Mmm dd hh:mm:ss " (15 chars + space), then "host " unless nginx's `nohostname` left it out,
  // then "tag: ". A hostname never ends with ':', so a first token that does is the tag.
  if (d.size() < pos + 16 || d[pos + 15] != ' ') return false;
  pos += 16;
  const size_t first_end = d.find(' ', pos);
  if (first_end == std::string_view::npos) return false;
  size_t tag_end = first_end - 1;
  if (first_end == pos || d[tag_end] != ':') {
    tag_end = d.find(": ", first_end + 1);
    if (tag_end == std::string_view::npos) return false;
  }
  message = d.substr(tag_end + 2);
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) message.remove_suffix(1);
  return true;
}

bool parse_clf_time(std::string_view t, int64_t& unix_us) noexcept {
  // 10/Oct/2000:13:55:36 -0700
  if (t.size() != 26 || t[2] != '/' || t[6] != '/' || t[11] != ':' || t[20] != ' ') return false;
  int d = 0, y = 0, h = 0, mi = 0, s = 0;
  const int mo = month_index(t.substr(3, 3));
  int64_t off = 0;
  if (!mo || !digits(t, 0, 2, d) || !digits(t, 7, 4, y) || !digits(t, 12, 2, h) ||
      !digits(t, 15, 2, mi) || !digits(t, 18, 2, s) || !tz_offset(t.substr(21), off))
    return false;
  int64_t us = 0;
  if (!civil_us(y, mo, d, h, mi, s, us)) return false;
  unix_us = us - off * 1000000;
  return true;
}

bool parse_iso8601(std::string_view t, int64_t& unix_us) noexcept {
  // 2000-10-10T13:55:36[.fff][Z|+hh:mm]
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != ' ') ||
      t[13] != ':' || t[16] != ':' || !digits(t, 0, 4, y) || !digits(t, 5, 2, mo) ||
      !digits(t, 8, 2, d) || !digits(t, 11, 2, h) || !digits(t, 14, 2, mi) || !digits(t, 17, 2, s))
    return false;
  size_t pos = 19;
  int64_t frac_us = 0;
  if (pos < t.size() && t[pos] == '.') {
    int64_t scale = 100000;
    for (++pos; pos < t.size() && t[pos] >= '0' && t[pos] <= '9'; ++pos, scale /= 10)
      frac_us += (t[pos] - '0') * scale;
  }
  int64_t off = 0, us = 0;
  if (!tz_offset(t.substr(pos), off) || !civil_us(y, mo, d, h, mi, s, us)) return false;
  unix_us = us + frac_us - off * 1000000;
  return true;
}

std::string LineParser::parse_combined(std::string_view line, RequestLog& out) {
  size_t pos = 0;
  out.remote_ip.assign(token(line, pos));
  token(line, pos);  // ident
  // The user may be "-" or a name; the time field starts at the next '['.
  const size_t open = line.find('[', pos);
  const size_t close = open == std::string_view::npos ? open : line.find(']', open);
  if (close == std::string_view::npos) return "time: missing [dd/Mon/yyyy:hh:mm:ss zone]";
  const std::string_view time_text = line.substr(open + 1, close - open - 1);
  // The cache starts empty: an empty time text ("[]") must not match it and take its 0.
  if (time_text != cached_time_text_ || cached_time_text_.empty()) {
    if (!parse_clf_time(time_text, cached_time_us_)) return "time: not dd/Mon/yyyy:hh:mm:ss zone";
    cached_time_text_.assign(time_text);
  }
  out.inserted_at = cached_time_us_;
  pos = close + 1;
  while (pos < line.size() && line[pos] == ' ') ++pos;
  std::string_view request;
  if (!quoted(line, pos, request)) return "request: missing \"METHOD target PROTOCOL\"";
  unescape(request, request_scratch_);
  if (auto e = split_request(request_scratch_, out); !e.empty()) return e;
  while (pos < line.size() && line[pos] == ' ') ++pos;
  const std::string_view status = token(line, pos);
  unsigned code = 0;
  auto [p, ec] = std::from_chars(status.data(), status.data() + status.size(), code);
  if (ec != std::errc() || p != status.data() + status.size()) return "status: not a number";
  out.status_code = uint16_t(code > 65535 ? 0 : code);
  token(line, pos);  // body bytes
  // Referer and user agent are optional, but a field that opens must close: a line cut inside one
  // (a writer caught mid-line, a truncated copy) is not a request with half a user agent.
  std::string_view referer, agent;
  if (pos < line.size() && line[pos] == '"') {
    if (!quoted(line, pos, referer)) return "referer: unterminated quoted field";
    unescape(dash_empty(referer), out.referer);
    while (pos < line.size() && line[pos] == ' ') ++pos;
    if (pos < line.size() && line[pos] == '"') {
      if (!quoted(line, pos, agent)) return "user_agent: unterminated quoted field";
      unescape(dash_empty(agent), out.user_agent);
    }
    while (pos < line.size() && line[pos] == ' ') ++pos;
  }
  // Optional $request_time (seconds, e.g. 0.012) right after the user agent.
  const std::string_view rt = token(line, pos);
  double seconds = 0;
  if (!rt.empty()) {
    auto [q, ec2] = std::from_chars(rt.data(), rt.data() + rt.size(), seconds);
    if (ec2 == std::errc() && q == rt.data() + rt.size() && seconds >= 0) out.duration_ms = seconds * 1000.0;
  }
  return {};
}

std::string LineParser::parse(std::string_view line, uint64_t source, uint64_t offset, RequestLog& out) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (line.empty()) return "line: empty";
  out = RequestLog{};
  LogFormat format = format_;
  if (format == LogFormat::auto_detect) format = line.front() == '{' ? LogFormat::nginx_json : LogFormat::combined;
  std::string error;
  if (format == LogFormat::combined) {
    error = parse_combined(line, out);
  } else {
    // nlohmann's parser does not recurse, but dump() (json_string of an array or object) does,
    // ~150 bytes of stack a level: a 117 KB line of 58,000 '[' crashed `reqbus ingest`, and a
    // syslog datagram (~32,000 levels) would take the node's listener thread down with it.
    // nginx's JSON lines are flat objects and reqbus's NDJSON one level deep.
    if (segment::nested_too_deep(line))
      return "line: JSON nested deeper than " + std::to_string(segment::kMaxJsonDepth) + " levels";
    // nginx's escape=json escapes '"', '\\' and control bytes but writes bytes >= 0x80 as they
    // come: a scanner's GET /\xff or a Latin-1 user agent made the line invalid JSON, and the
    // request was lost (helper-54). Such bytes become U+FFFD, a run of them one.
    std::string valid;
    if (!utf8::valid(line)) valid = utf8::replace_invalid(line, /*collapse_runs=*/true);
    nlohmann::json value = nlohmann::json::parse(valid.empty() ? line : std::string_view(valid), nullptr,
                                                 /*allow_exceptions=*/false);
    if (value.is_discarded()) return "line: invalid JSON";
    // reqbus's own NDJSON has "path"; nginx's variables never produce that key.
    if (format == LogFormat::ndjson || (format_ == LogFormat::auto_detect && value.is_object() && value.contains("path"))) {
      error = json::from_json(value, out);
      if (error.empty()) error = json::input_time_problem(out);
    } else
      error = parse_nginx_json(value, out);
  }
  if (!error.empty()) return error;
  // A log's own time, when it has one (an NDJSON line's inserted_at was checked above).
  if (out.inserted_at != 0 && !plausible_input_time(out.inserted_at)) return "time: outside the years 2000..2999";
  fill_derived(out, line, source, offset);
  return validate(out);
}

}  // namespace reqbus::ingest
