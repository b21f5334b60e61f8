// reqbus top: a terminal dashboard of a node, refreshed every second from its /api/stats.
// A node that cannot be reached at the first refresh is an error (a wrong address fails fast);
// once it has answered, a node that goes away (a restart: no connection, a broken one, a 5xx
// answer) is shown as unreachable and asked again every --interval until it is back. An answer
// that retrying will not change (401/403/404, a body that is not JSON) is an error at any time.
#include <httplib.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "app/terminal_text.hpp"
#include "node/config.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {

std::string http_error_text(httplib::Error e);  // below: ingest_sender.cpp uses it too

namespace {

struct TopFlags {
  std::string node_addr = "127.0.0.1:7480";
  std::string token;
  std::string filter;  // a node id, "" = whole cluster
  int iterations = 0;  // 0 = until interrupted
  double interval_s = 1.0;
};

// Local HH:MM:SS of a unix time.
std::string local_hms(time_t t) {
  struct tm local {};
  char hms[16] = "?";
  if (::localtime_r(&t, &local)) std::strftime(hms, sizeof(hms), "%H:%M:%S", &local);
  return hms;
}

// One line for each of the node's tcp peers and publish_to endpoints that is not connected:
// while one is down, the cluster view lacks what comes through it.
std::string links_down(const nlohmann::json& s) {
  std::string out;
  for (const char* field : {"peers", "uplinks"}) {
    if (!s.contains(field) || !s[field].is_array()) continue;
    for (const auto& p : s[field]) {
      if (!p.is_object() || p.value("connected", true)) continue;
      out += std::string("! ") + (std::string_view(field) == "peers" ? "peer " : "publish_to ") +
             terminal_text(p.value("endpoint", std::string()), 80) + " not connected since " +
             local_hms(time_t(p.value("since", int64_t(0))));
      const uint64_t failures = p.value("connect_failures", uint64_t(0));
      const std::string last = terminal_text(p.value("last_failure", std::string()), 40);
      if (failures > 0)
        out += " (" + std::to_string(failures) + (failures == 1 ? " failed attempt" : " failed attempts") + ", last: " + last + ")";
      else if (!last.empty()) out += " (" + last + ")";
      if (const uint64_t unsent = p.value("events_unsent", uint64_t(0)); unsent > 0)
        out += "; " + std::to_string(unsent) + " events not sent to it";
      out += "\n";
    }
  }
  return out;
}

void render(const nlohmann::json& s, bool tty) {
  std::string out;
  if (tty) out += "\x1b[H\x1b[2J";
  char line[512];
  const nlohmann::json no_series = nlohmann::json::array();
  const nlohmann::json& series = s.contains("series") ? s["series"] : no_series;
  double rps = 0;
  int n = 0;
  for (size_t i = series.size() > 11 ? series.size() - 11 : 0; i + 1 < series.size(); ++i, ++n) rps += series[i][1].get<double>();
  rps = n ? rps / n : 0;
  const nlohmann::json no_latency = nlohmann::json::object();
  const nlohmann::json& lat = s.contains("latency_ms") ? s["latency_ms"] : no_latency;
  std::snprintf(line, sizeof(line), "reqbus top — node %s%s   requests/s %.1f   total %llu   dropped %llu\n",
                terminal_text(s.value("self", std::string("?")), 64).c_str(),
                s.value("node", std::string()).empty() ? " (cluster)"
                                                        : (" (filter " + terminal_text(s.value("node", std::string()), 64) + ")").c_str(),
                rps, (unsigned long long)s.value("total", 0ull), (unsigned long long)s.value("dropped", 0ull));
  out += line;
  std::snprintf(line, sizeof(line), "latency p50 %.2f  p95 %.2f  p99 %.2f ms   visitors (5 min) %llu   bots %llu / humans %llu\n",
                lat.value("p50", 0.0), lat.value("p95", 0.0), lat.value("p99", 0.0),
                (unsigned long long)s.value("visitors_active", 0ull), (unsigned long long)s.value("bots", 0ull),
                (unsigned long long)s.value("humans", 0ull));
  out += line;
  out += links_down(s) + "\n";
  out += "status codes: ";
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& status = s.contains("status") ? s["status"] : empty;
  for (auto it = status.begin(); it != status.end(); ++it)
    out += it.key() + "=" + std::to_string(it.value().get<uint64_t>()) + "  ";
  out += "\n\n  requests  top paths\n";
  const nlohmann::json no_rows = nlohmann::json::array();
  const nlohmann::json& paths = s.contains("top_paths") ? s["top_paths"] : no_rows;
  for (const auto& row : paths) {
    std::snprintf(line, sizeof(line), "  %8llu  %s\n", (unsigned long long)row[1].get<uint64_t>(), terminal_text(row[0].get<std::string>(), 90).c_str());
    out += line;
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

// A refresh that failed in a way a later one can get past.
struct Failure {
  std::string message;  // the whole story, for the error when the first refresh fails
  std::string reason;   // the short one, for the status line of an outage
};

// One GET of `path`: the stats, or nullopt and `failed` for a failure a restarting node gives (no
// connection, a broken one, a 5xx answer, a 429 from a proxy in front of it). Throws for an answer that a later try will not change
// (401/403/404 and other 4xx: a wrong token, address or --filter; a body that is not a JSON
// object: not a reqbus node).
std::optional<nlohmann::json> fetch(httplib::Client& http, const std::string& path, const std::string& addr,
                                    Failure& failed) {
  auto res = http.Get(path);
  if (!res) {
    failed.reason = http_error_text(res.error());
    failed.message = "cannot reach http://" + addr + ": " + failed.reason;
    return std::nullopt;
  }
  if (res->status >= 500 || res->status == 429) {
    failed.reason = "answered " + std::to_string(res->status);
    failed.message = addr + " " + failed.reason;
    return std::nullopt;
  }
  if (res->status != 200) throw Error(ErrorCode::transport, "top: " + addr + " answered " + std::to_string(res->status));
  auto json = nlohmann::json::parse(res->body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) throw Error(ErrorCode::decode, "top: /api/stats did not return a JSON object");
  return json;
}

// A run of failed refreshes after the node had answered.
struct Outage {
  std::string since;  // local HH:MM:SS of its first failed refresh; "" = the node answers
  bool shown = false;  // its line was printed (once into a pipe or file)
};

// Shows that the node stopped answering, instead of its stats: one line, as a frame of its own on
// a terminal that clears the screen (redrawn at every try), else printed once per outage, so that
// a log of `top > file` does not get the same line every --interval.
void show_outage(Outage& outage, const std::string& reason, double interval_s, bool tty) {
  if (outage.since.empty()) outage.since = local_hms(::time(nullptr));
  if (outage.shown && !tty) return;
  outage.shown = true;
  std::printf("%sreqbus top — node unreachable since %s (%s); retrying every %g s\n", tty ? "\x1b[H\x1b[2J" : "",
              outage.since.c_str(), reason.c_str(), interval_s);
  std::fflush(stdout);
}

// Whether frames may start by clearing the screen (ESC[H ESC[2J): only on a terminal that
// understands it. TERM=dumb (Emacs shell buffers, some CI consoles) or no TERM at all means a
// terminal that prints escapes as text: plain frames, as into a pipe.
bool clears_screen() {
  if (::isatty(STDOUT_FILENO) != 1) return false;
  const char* term = std::getenv("TERM");
  return term != nullptr && *term != '\0' && std::string_view(term) != "dumb";
}

}  // namespace

// httplib names its errors tersely ("Connection"); say what happened.
std::string http_error_text(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection: return "connection refused or unreachable";
    case httplib::Error::ConnectionTimeout: return "connection timed out";
    case httplib::Error::Read: return "the connection broke while reading the answer";
    case httplib::Error::Write: return "the connection broke while sending";
    default: return "HTTP error " + httplib::to_string(e);
  }
}

Run add_top(CLI::App& app) {
  auto f = std::make_shared<TopFlags>();
  app.add_option("--node-addr", f->node_addr, "The node's HTTP address HOST:PORT (default 127.0.0.1:7480)");
  app.add_option("--token", f->token, "Bearer token, if the node requires one");
  app.add_option("--filter", f->filter, "Show one origin node only");
  app.add_option("--iterations", f->iterations, "Refresh this many times (failed tries count), then exit (0 = until Ctrl-C)")->check(CLI::Range(0, 1 << 30));
  app.add_option("--interval", f->interval_s, "Seconds between refreshes (default 1)")->check(finite_range(0.1, 3600));
  return [f]() -> int {
    std::string host;
    int port = 0;
    if (auto e = node::parse_listen(f->node_addr, "--node-addr", host, port); !e.empty())
      throw Error(ErrorCode::invalid_argument, e);
    httplib::Client http(host, port);
    http.set_connection_timeout(2, 0);
    http.set_read_timeout(5, 0);
    if (!f->token.empty()) http.set_bearer_token_auth(f->token.c_str());
    const bool tty = clears_screen();
    std::string path = "/api/stats";
    if (!f->filter.empty()) path += "?node=" + httplib::detail::encode_query_param(f->filter);
    bool answered = false;  // at least one refresh succeeded: a failure from now on is an outage
    Outage outage;
    for (int i = 0; f->iterations == 0 || i < f->iterations; ++i) {
      Failure failed;
      if (auto stats = fetch(http, path, f->node_addr, failed)) {
        answered = true;
        outage = {};
        render(*stats, tty);
      } else if (!answered) {
        throw Error(ErrorCode::transport, "top: " + failed.message);
      } else {
        show_outage(outage, failed.reason, f->interval_s, tty);
      }
      if (f->iterations && i + 1 >= f->iterations) break;
      if (wait_for_signal(std::chrono::milliseconds(int64_t(f->interval_s * 1000))) != 0) break;
    }
    return 0;
  };
}

}  // namespace reqbus::app
