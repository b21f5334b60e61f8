#include "node/config.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>

#include <filesystem>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "reqbus/bus_options.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus::node {
namespace {

struct Reader {
  const toml::table& table;
  std::string prefix;  // "bus." for keys of [bus]
  std::string error;

  std::string key(std::string_view k) const { return prefix + std::string(k); }
  std::string where(const toml::node& n) const {
    return n.source().begin ? std::to_string(n.source().begin.line) + ": " : std::string();
  }
  bool fail(const toml::node& n, std::string_view k, const std::string& what) {
    if (error.empty()) error = where(n) + key(k) + ": " + what;
    return false;
  }
  void string(std::string_view k, std::string& out) {
    if (const toml::node* n = table.get(k)) {
      if (auto v = n->value<std::string>(); v && n->is_string()) out = *v;
      else fail(*n, k, "must be a string");
    }
  }
  // A string of min..max bytes (what the library would refuse later, naming its C++ field).
  void string(std::string_view k, std::string& out, size_t min, size_t max) {
    const toml::node* n = table.get(k);
    if (!n) return;
    std::string v;
    string(k, v);
    if (!error.empty()) return;
    if (v.size() < min || v.size() > max)
      fail(*n, k, "must be " + std::to_string(min) + ".." + std::to_string(max) + " bytes (it is " + std::to_string(v.size()) + ")");
    else out = std::move(v);
  }
  // A tcp://HOST:PORT endpoint; a bind names no key, a peer may name its server's after '#'.
  void endpoint(std::string_view k, std::string& out) {
    const toml::node* n = table.get(k);
    if (!n) return;
    string(k, out);
    if (error.empty() && !out.empty())
      if (auto why = tcp_endpoint_problem(out); !why.empty()) fail(*n, k, why);
  }
  void endpoints(std::string_view k, std::vector<std::string>& out) {
    const toml::node* n = table.get(k);
    if (!n) return;
    strings(k, out);
    if (!error.empty()) return;
    const toml::array& a = *n->as_array();  // strings() checked it is one
    for (size_t i = 0; i < a.size(); ++i)
      if (auto why = peer_endpoint_problem(out[i]); !why.empty()) return void(fail(a[i], k, why));
  }
  template <class Int>
  void integer(std::string_view k, Int& out, int64_t min, int64_t max) {
    if (const toml::node* n = table.get(k)) {
      if (!n->is_integer()) {
        fail(*n, k, "must be an integer");
        return;
      }
      const int64_t v = *n->value<int64_t>();
      if (v < min || v > max) fail(*n, k, "must be in " + std::to_string(min) + ".." + std::to_string(max));
      else out = Int(v);
    }
  }
  void millis(std::string_view k, std::chrono::milliseconds& out, int64_t max = 86'400'000) {
    int64_t v = out.count();
    integer(k, v, 0, max);
    out = std::chrono::milliseconds(v);
  }
  void boolean(std::string_view k, bool& out) {
    if (const toml::node* n = table.get(k)) {
      if (n->is_boolean()) out = *n->value<bool>();
      else fail(*n, k, "must be true or false");
    }
  }
  void strings(std::string_view k, std::vector<std::string>& out) {
    if (const toml::node* n = table.get(k)) {
      const toml::array* a = n->as_array();
      if (!a) {
        fail(*n, k, "must be an array of strings");
        return;
      }
      out.clear();
      for (const toml::node& e : *a) {
        if (!e.is_string()) {
          fail(e, k, "must be an array of strings");
          return;
        }
        out.push_back(*e.value<std::string>());
      }
    }
  }
  // A "HOST:PORT" string; the error keeps the line like every other.
  void listen(std::string_view k, std::string& host, int& port) {
    std::string v;
    string(k, v);
    if (v.empty() || !error.empty()) return;
    if (auto e = parse_listen(v, key(k), host, port); !e.empty()) {
      const toml::node* n = table.get(k);
      error = where(*n) + e;
    }
  }
  void overflow(std::string_view k, Overflow& out) {
    std::string v;
    string(k, v);
    if (v.empty()) return;
    if (v == "block") out = Overflow::block;
    else if (v == "drop_newest") out = Overflow::drop_newest;
    else if (v == "drop_oldest") out = Overflow::drop_oldest;
    else fail(*table.get(k), k, "must be \"block\", \"drop_newest\" or \"drop_oldest\"");
  }
  // Unknown keys are errors: a typo must not silently fall back to a default.
  void only(std::initializer_list<std::string_view> known) {
    const std::set<std::string_view> allowed(known);
    for (const auto& [k, n] : table)
      if (!allowed.count(k.str())) fail(n, k.str(), "unknown key");
  }
  const toml::table* sub(std::string_view k) {
    const toml::node* n = table.get(k);
    if (!n) return nullptr;
    if (!n->is_table()) {
      fail(*n, k, "must be a table ([" + std::string(k) + "])");
      return nullptr;
    }
    return n->as_table();
  }
};

// Reads a config or key file of at most `max` bytes into `out`; "" or why not. Only a regular
// file or a pipe (`--config <(...)`): a device such as /dev/zero read whole exhausted memory.
// Read without blocking, and a pipe's writer gets 10 s: `reqbus` blocks SIGINT/SIGTERM from its
// start, so a FIFO nobody writes to hung it for good.
std::string read_small_file(const std::string& path, size_t max, std::string& out) {
  struct ::stat st {};
  if (::stat(path.c_str(), &st) != 0) return "cannot open the file: " + std::string(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return "is a directory, not a file";
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) return "is not a regular file or a pipe";
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return "cannot open the file: " + std::string(std::strerror(errno));
  out.clear();
  char buf[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string error;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, size_t(n));
      if (out.size() > max) {
        error = "file larger than " + std::to_string(max >> 20) + " MiB";
        break;
      }
      continue;
    }
    if (n == 0) break;  // the end (a FIFO without a writer reads as empty)
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      error = "cannot read the file: " + std::string(std::strerror(errno));
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) == 0) {
      error = "the pipe's writer sent no end within 10 s";
      break;
    }
  }
  ::close(fd);
  return error;
}

// Which key a line of a TOML document belongs to, for toml++'s parse errors, which name only
// the line and column ("'99999999999999999999' is not representable in 64 bits" could be any
// key). Reads the lines above the error as TOML (toml++ got past them, so they are valid): the
// last [table] header (or [[array]] header), and whether a value (an array, a multi-line string)
// is still open. The error's line belongs to that open value's key, or to its own if it is a
// `key = ...` line (a bare, quoted or dotted key); else to none.
class TomlLineKeys {
 public:
  // The key with its table ("batcher.flush_at", `bus."odd key"`) of 1-based `line` of `text`;
  // "" when that line is a header, blank, a comment, past the end or not TOML. Cut to kMaxKey
  // bytes and "...", control characters replaced by '?': it goes into a one-line error.
  static std::string of(std::string_view text, size_t line) {
    if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a BOM
    TomlLineKeys keys;
    size_t pos = 0;
    for (size_t n = 1; n <= line && pos <= text.size(); ++n) {
      const size_t eol = text.find('\n', pos);
      std::string_view l = text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
      pos = eol == std::string_view::npos ? text.size() + 1 : eol + 1;
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);  // CRLF
      if (n < line) {
        keys.scan(l);
        continue;
      }
      if (keys.open()) return keys.qualified(keys.key_);
      std::string key;
      return key_equals(l, key) == std::string_view::npos ? std::string() : keys.qualified(key);
    }
    return {};
  }

 private:
  static constexpr size_t kMaxKey = 100;
  std::string table_;  // the last header's key, as written without blanks ("bus", "a.\"b c\"")
  std::string key_;    // the key of the last `key = ...` line, whose value may still be open
  int depth_ = 0;      // [ and { open in that value
  char multi_ = 0;     // '"' or '\'' inside a multi-line string

  bool open() const { return depth_ > 0 || multi_ != 0; }

  static size_t skip_blanks(std::string_view l, size_t i) {
    while (i < l.size() && (l[i] == ' ' || l[i] == '\t')) ++i;
    return i;
  }
  // The index after the one-line string starting at l[i] (a quote); npos when the line ends first.
  static size_t string_end(std::string_view l, size_t i) {
    const char q = l[i];
    for (size_t j = i + 1; j < l.size(); ++j) {
      if (q == '"' && l[j] == '\\') ++j;
      else if (l[j] == q) return j + 1;
    }
    return std::string_view::npos;
  }
  // A key at l[i]: segments bare or quoted, joined by dots with blanks around them; written into
  // `out` without those blanks. The index after it, or npos when there is none.
  static size_t parse_key(std::string_view l, size_t i, std::string& out) {
    out.clear();
    for (;;) {
      i = skip_blanks(l, i);
      if (i >= l.size()) return std::string_view::npos;
      size_t end = i;
      if (l[i] == '"' || l[i] == '\'') {
        end = string_end(l, i);
        if (end == std::string_view::npos) return end;
      } else {
        while (end < l.size() && (std::isalnum(static_cast<unsigned char>(l[end])) || l[end] == '_' || l[end] == '-')) ++end;
        if (end == i) return std::string_view::npos;
      }
      out.append(l.substr(i, end - i));
      i = skip_blanks(l, end);
      if (i >= l.size() || l[i] != '.') return i;
      out += '.';
      ++i;
    }
  }
  // A `key = ...` line: its key, and the index after the '='; npos when it is not one.
  static size_t key_equals(std::string_view l, std::string& key) {
    const size_t i = parse_key(l, 0, key);
    return i != std::string_view::npos && i < l.size() && l[i] == '=' ? i + 1 : std::string_view::npos;
  }

  std::string qualified(const std::string& key) const {
    std::string q = table_.empty() ? key : table_ + "." + key;
    if (q.size() > kMaxKey) {
      size_t cut = kMaxKey;
      while (cut > 0 && (static_cast<unsigned char>(q[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
      q = q.substr(0, cut) + "...";
    }
    for (char& c : q)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return q;
  }

  // A line above the error's.
  void scan(std::string_view l) {
    size_t i = 0;
    if (!open()) {
      i = skip_blanks(l, 0);
      if (i >= l.size() || l[i] == '#') return;
      if (l[i] == '[') {  // [table] or [[array]]
        const size_t name = i + 1 < l.size() && l[i + 1] == '[' ? i + 2 : i + 1;
        if (parse_key(l, name, table_) == std::string_view::npos) table_.clear();
        return;
      }
      i = key_equals(l, key_);
      if (i == std::string_view::npos) return;
    }
    scan_value(l, i);
  }
  // The rest of a line inside a value: strings, comments, brackets.
  void scan_value(std::string_view l, size_t i) {
    while (i < l.size()) {
      if (multi_) {  // up to its closing quotes (and the up to 2 quotes the string may end with)
        const std::string_view close = multi_ == '"' ? "\"\"\"" : "'''";
        for (; i < l.size(); ++i) {
          if (multi_ == '"' && l[i] == '\\') {
            ++i;
          } else if (l.substr(i, 3) == close) {
            i += 3;
            for (int extra = 0; extra < 2 && i < l.size() && l[i] == multi_; ++extra) ++i;
            multi_ = 0;
            break;
          }
        }
        continue;
      }
      const char c = l[i];
      if (c == '#') return;
      if (c == '"' || c == '\'') {
        if (l.substr(i, 3) == std::string_view(c == '"' ? "\"\"\"" : "'''")) {
          multi_ = c;
          i += 3;
          continue;
        }
        i = string_end(l, i);
        if (i == std::string_view::npos) return;
        continue;
      }
      if (c == '[' || c == '{') ++depth_;
      else if ((c == ']' || c == '}') && depth_ > 0) --depth_;
      ++i;
    }
  }
};

}  // namespace

std::string parse_listen(std::string_view value, std::string_view key, std::string& host, int& port) {
  const size_t colon = value.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::string(key) + ": '" + std::string(value) + "' is not HOST:PORT";
  const std::string_view digits = value.substr(colon + 1);
  int p = -1;  // digits only: no sign, no space (" 80" and "+80" are no ports)
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || digits[0] == '-') p = -1;
  if (p < 0 || p > 65535) return std::string(key) + ": port in '" + std::string(value) + "' is not 0..65535";
  host = std::string(value.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  port = p;
  return {};
}

std::string read_curve_key(const std::string& key_or_file, std::string_view which, std::string_view key,
                           std::string& out) {
  auto z85 = [](std::string_view v) {
    static constexpr std::string_view alphabet =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    return v.size() == 40 && v.find_first_not_of(alphabet) == std::string_view::npos;
  };
  std::error_code ec;  // a 40-character path can also be valid Z85: an existing file wins
  if (z85(key_or_file) && !std::filesystem::is_regular_file(key_or_file, ec)) {
    out = key_or_file;
    return {};
  }
  std::string text;
  if (auto why = read_small_file(key_or_file, 1 << 20, text); !why.empty())
    return std::string(key) + ": '" + key_or_file.substr(0, 80) + "' is neither a 40-character Z85 key nor a readable key file (" +
           why + ")";
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (z85(line)) {
      out = line;
      return {};
    }
    const size_t q = line.find('"');
    if (line.rfind(std::string(which), 0) == 0 && q != std::string::npos && line.size() >= q + 42 && line[q + 41] == '"' &&
        z85(std::string_view(line).substr(q + 1, 40))) {
      out = line.substr(q + 1, 40);
      return {};
    }
  }
  return std::string(key) + ": " + key_or_file + " holds no " + std::string(which) + " (see `reqbus keygen`)";
}

std::string apply_config(std::string_view text, std::string_view source_name, NodeOptions& o) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    // Worded like the other errors, "FILE:LINE: KEY: what", when the line belongs to a key.
    const std::string key = TomlLineKeys::of(text, e.source().begin.line);
    return std::string(source_name) + ":" + std::to_string(e.source().begin.line) + ": " + (key.empty() ? "" : key + ": ") +
           std::string(e.description());
  }
  std::string error;
  auto done = [&](Reader& r) {
    if (error.empty() && !r.error.empty()) error = std::string(source_name) + ":" + r.error;
  };
  Reader top{root, "", {}};
  top.only({"node_id", "store", "spool_dir", "bus", "http", "batcher", "counters", "syslog", "security"});
  top.string("node_id", o.bus.node_id, 0, RequestLogLimits::node_id);  // "" = hostname-pid
  top.string("store", o.store);
  // The kind of store is checked here, at its line; the node checks the rest when it opens it.
  if (const toml::node* n = root.get("store"); n && top.error.empty() && o.store.rfind("sqlite:", 0) != 0 &&
                                                o.store.rfind("postgres:", 0) != 0 && o.store != "none")
    top.fail(*n, "store", "'" + o.store + "' is not sqlite:PATH, postgres:CONNINFO or none");
  top.string("spool_dir", o.spool_dir);
  if (const toml::table* t = top.sub("bus")) {
    Reader r{*t, "bus.", {}};
    r.only({"name", "bind", "peers", "publish_to", "peer_state_file", "peer_unreachable_after_ms", "peer_unreachable_repeat_ms",
            "peer_connect_timeout_ms",
            "queue_max_events", "queue_max_bytes", "overflow", "block_timeout_ms", "publish_linger_us", "max_events_per_frame",
            "inproc_hwm", "tcp_hwm", "max_message_bytes"});
    r.string("name", o.bus.name, 1, 64);
    r.endpoint("bind", o.bus.bind);
    r.endpoints("peers", o.bus.peers);
    r.endpoints("publish_to", o.bus.publish_to);
    r.string("peer_state_file", o.bus.peer_state_file);
    int64_t unreachable_ms = o.bus.peer_unreachable_after.count();
    r.integer("peer_unreachable_after_ms", unreachable_ms, 1, 86'400'000);
    o.bus.peer_unreachable_after = std::chrono::milliseconds(unreachable_ms);
    r.millis("peer_unreachable_repeat_ms", o.bus.peer_unreachable_repeat);
    r.millis("peer_connect_timeout_ms", o.bus.peer_connect_timeout, 3'600'000);
    if (const toml::node* n = t->get("peer_connect_timeout_ms");
        n && o.bus.peer_connect_timeout.count() > 0 && o.bus.peer_connect_timeout.count() < 100)
      r.fail(*n, "peer_connect_timeout_ms", "must be 0 (the system's) or 100..3600000");
    r.integer("queue_max_events", o.bus.queue_max_events, 1, 1LL << 30);
    r.integer("queue_max_bytes", o.bus.queue_max_bytes, 65536, 1LL << 40);
    r.overflow("overflow", o.bus.overflow);
    r.millis("block_timeout_ms", o.bus.block_timeout);
    int64_t linger_us = o.bus.publish_linger.count();
    r.integer("publish_linger_us", linger_us, 0, 1'000'000);
    o.bus.publish_linger = std::chrono::microseconds(linger_us);
    r.integer("max_events_per_frame", o.bus.max_events_per_frame, 1, 4096);
    r.integer("inproc_hwm", o.bus.inproc_hwm, 1, 1 << 24);
    r.integer("tcp_hwm", o.bus.tcp_hwm, 0, 1 << 24);
    r.integer("max_message_bytes", o.bus.max_message_bytes, 8192, 1LL << 30);
    // The frames this node sends must fit what it takes: not settable here, so kept 4 KiB under
    // (the Bus refused a smaller max_message_bytes as "BusOptions.max_frame_bytes: ...").
    o.bus.max_frame_bytes = std::min(o.bus.max_frame_bytes, o.bus.max_message_bytes - 4096);
    done(r);
  }
  if (const toml::table* t = top.sub("security")) {  // docs/CLUSTER.md
    Reader r{*t, "security.", {}};
    r.only({"secret_key", "secret_key_file", "allowed_clients", "insecure_plaintext"});
    std::string secret, file;
    std::vector<std::string> allowed;
    r.string("secret_key", secret);
    r.string("secret_key_file", file);
    r.strings("allowed_clients", allowed);
    r.boolean("insecure_plaintext", o.bus.insecure_plaintext);
    if (r.error.empty() && !secret.empty() && !file.empty())
      r.fail(*t->get("secret_key"), "secret_key", "set both secret_key and secret_key_file; choose one");
    if (r.error.empty() && !secret.empty())
      if (auto e = read_curve_key(secret, "secret_key", "security.secret_key", o.bus.curve_secret_key); !e.empty() ||
          secret.size() != 40)
        r.fail(*t->get("secret_key"), "secret_key", "must be a 40-character Z85 key");
    if (r.error.empty() && !file.empty())
      if (auto e = read_curve_key(file, "secret_key", "security.secret_key_file", o.bus.curve_secret_key); !e.empty())
        r.error = r.where(*t->get("secret_key_file")) + e;
    if (r.error.empty() && t->get("allowed_clients")) {
      o.bus.curve_allowed_clients.clear();
      for (const auto& a : allowed) {
        std::string key;
        if (auto e = read_curve_key(a, "public_key", "security.allowed_clients", key); !e.empty()) {
          r.error = r.where(*t->get("allowed_clients")) + e;
          break;
        }
        o.bus.curve_allowed_clients.push_back(key);
      }
    }
    done(r);
  }
  if (const toml::table* t = top.sub("http")) {
    Reader r{*t, "http.", {}};
    r.only({"enabled", "listen", "token", "write_keys", "max_body_bytes", "threads", "max_threads", "health_window_ms"});
    r.boolean("enabled", o.http_enabled);
    r.listen("listen", o.http.host, o.http.port);
    if (const toml::node* n = t->get("listen"); n && r.error.empty() && n->value_or(std::string_view("x")).empty())
      r.fail(*n, "listen", "empty: HOST:PORT (use enabled = false for no HTTP API)");  // was ignored
    r.string("token", o.http.bearer_token);
    r.strings("write_keys", o.http.write_keys);
    // An empty key would match a request without credentials: the endpoint would be open.
    if (std::find(o.http.write_keys.begin(), o.http.write_keys.end(), "") != o.http.write_keys.end())
      r.fail(*t->get("write_keys"), "write_keys", "must not contain an empty key");
    r.integer("max_body_bytes", o.http.max_body_bytes, 1024, 1LL << 32);
    r.integer("threads", o.http.threads, 2, 1024);
    r.integer("max_threads", o.http.max_threads, 2, 4096);
    if (const toml::node* n = t->get("max_threads"); n && r.error.empty() && o.http.max_threads < o.http.threads)
      r.fail(*n, "max_threads", "must be at least threads (" + std::to_string(o.http.threads) + ")");
    o.http.max_threads = std::max(o.http.max_threads, o.http.threads);  // threads = 512 alone raises it
    int64_t window = o.health.window.count();
    r.integer("health_window_ms", window, 1, 86'400'000);
    o.health.window = std::chrono::milliseconds(window);
    done(r);
  }
  if (const toml::table* t = top.sub("batcher")) {
    Reader r{*t, "batcher.", {}};
    r.only({"pool_size", "flush_at", "flush_interval_ms", "flush_jitter_ms", "max_batch_bytes", "flush_workers",
            "coalesce_max_events", "retry_max_attempts", "retry_base_backoff_ms", "import_timeout_ms", "stall_timeout_ms", "max_queued_events", "overflow",
            "replay_interval_ms", "replay_max_backoff_ms", "active", "debug"});
    r.integer("pool_size", o.batcher.pool_size, 1, 1024);
    r.integer("flush_at", o.batcher.flush_at, 1, 1 << 20);
    r.millis("flush_interval_ms", o.batcher.flush_interval);
    r.millis("flush_jitter_ms", o.batcher.flush_jitter);
    r.integer("max_batch_bytes", o.batcher.max_batch_bytes, 1024, 1LL << 32);
    r.integer("flush_workers", o.batcher.flush_workers, 1, 256);
    r.integer("coalesce_max_events", o.batcher.coalesce_max_events, 0, 1 << 24);
    r.integer("retry_max_attempts", o.batcher.retry_max_attempts, 1, 1000);
    r.millis("retry_base_backoff_ms", o.batcher.retry_base_backoff);
    r.millis("import_timeout_ms", o.batcher.import_timeout);
    r.millis("stall_timeout_ms", o.batcher.stall_timeout);
    int64_t replay_ms = o.batcher.replay_interval.count(), replay_max_ms = o.batcher.replay_max_backoff.count();
    // From 100 ms: a smaller interval is hundreds of connection attempts a second to a store
    // that is down.
    r.integer("replay_interval_ms", replay_ms, 100, 86'400'000);
    r.integer("replay_max_backoff_ms", replay_max_ms, 100, 86'400'000);
    o.batcher.replay_interval = std::chrono::milliseconds(replay_ms);
    o.batcher.replay_max_backoff = std::chrono::milliseconds(replay_max_ms);
    if (replay_max_ms < replay_ms) {  // named by the key the file sets
      if (const toml::node* max = t->get("replay_max_backoff_ms"))
        r.fail(*max, "replay_max_backoff_ms", "must be >= replay_interval_ms (" + std::to_string(replay_ms) + ")");
      else
        r.fail(*t->get("replay_interval_ms"), "replay_interval_ms",
               "must be <= replay_max_backoff_ms (" + std::to_string(replay_max_ms) + ")");
    }
    r.integer("max_queued_events", o.batcher.max_queued_events, 1, 1LL << 32);
    r.overflow("overflow", o.batcher.overflow);
    r.boolean("active", o.batcher.active);
    r.boolean("debug", o.batcher.debug);
    done(r);
  }
  if (const toml::table* t = top.sub("counters")) {
    Reader r{*t, "counters.", {}};
    r.only({"interval_ms", "jitter_ms", "backoff_ms", "timeout_ms", "max_keys"});
    r.millis("interval_ms", o.counters.interval);
    r.millis("jitter_ms", o.counters.jitter);
    r.millis("backoff_ms", o.counters.backoff);
    r.millis("timeout_ms", o.counters.timeout);
    r.integer("max_keys", o.counters.max_keys, 1, 1LL << 32);
    done(r);
  }
  if (const toml::table* t = top.sub("syslog")) {
    Reader r{*t, "syslog.", {}};
    r.only({"listen"});
    std::string host;  // checked here so a typo stops the node with the line, not at bind time
    int port = 0;
    r.listen("listen", host, port);
    if (r.error.empty()) r.string("listen", o.syslog_listen);
    done(r);
  }
  done(top);
  return error;
}

std::string apply_config_file(const std::string& path, NodeOptions& options) {
  std::string text;
  if (auto why = read_small_file(path, 1 << 20, text); !why.empty()) return path + ": " + why;
  return apply_config(text, path, options);
}

}  // namespace reqbus::node
