// reqbus ingest: read access logs (combined, nginx JSON, NDJSON RequestLogs) from a file or
// stdin and publish them to a node through its HTTP API (POST /v1/requests, NDJSON batches).
// --follow keeps reading a growing file and follows it across rotation (rename + new file, or
// truncation), like `tail -F`. Request ids are derived from (file identity, byte offset), so
// ingesting the same file twice stores each line once.
#include <httplib.h>
#include <sys/stat.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "analytics/request_json.hpp"
#include "app/commands.hpp"
#include "ingest/log_parse.hpp"
#include "node/config.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace reqbus::app {

std::string http_error_text(httplib::Error e);  // cmd_top.cpp

namespace {

struct IngestFlags {
  std::string input = "-";
  std::string node_addr = "127.0.0.1:7480";
  std::string token;
  std::string format = "auto";
  bool follow = false;
  size_t batch = 2000;
  int retries = 5;
  bool dry_run = false;
};

struct Counts {
  uint64_t lines = 0, parsed = 0, parse_errors = 0, accepted = 0, rejected = 0, bytes = 0;
};

class Sender {
 public:
  Sender(const IngestFlags& f, Counts& counts) : f_(f), counts_(counts) {
    std::string host;
    int port = 0;
    if (auto e = node::parse_listen(f.node_addr, "--node-addr", host, port); !e.empty())
      throw Error(ErrorCode::invalid_argument, e);
    http_ = std::make_unique<httplib::Client>(host, port);
    http_->set_keep_alive(true);
    http_->set_tcp_nodelay(true);
    http_->set_connection_timeout(5, 0);
    http_->set_read_timeout(30, 0);
    if (!f.token.empty()) http_->set_bearer_token_auth(f.token.c_str());
  }
  void add(const RequestLog& r) {
    json::append_ndjson(body_, r);
    body_.push_back('\n');
    if (++pending_ >= f_.batch) send();
  }
  void send() {
    if (pending_ == 0) return;
    if (!f_.dry_run) post();
    else counts_.accepted += pending_;
    body_.clear();
    pending_ = 0;
  }

 private:
  void post() {
    std::string why;
    for (int attempt = 0; attempt <= f_.retries; ++attempt) {
      if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));  // backoff
      auto res = http_->Post("/v1/requests", body_, "application/x-ndjson");
      if (!res) {
        why = "cannot reach http://" + f_.node_addr + " (" + http_error_text(res.error()) + ")";
        continue;
      }
      if (res->status == 202) {
        auto j = nlohmann::json::parse(res->body, nullptr, false);
        if (j.is_object()) {
          counts_.accepted += j.value("accepted", 0ull);
          counts_.rejected += j.value("rejected", 0ull);
          for (const auto& e : j.value("errors", nlohmann::json::array()))
            limit_.log(LogLevel::warn, "ingest: the node rejected a line: " + e.value("error", std::string("?")));
        }
        return;
      }
      why = "the node answered " + std::to_string(res->status) + ": " + res->body.substr(0, 200);
      if (res->status >= 400 && res->status < 500 && res->status != 429) break;  // will not get better
    }
    throw Error(ErrorCode::transport, "ingest: " + why);
  }

  const IngestFlags& f_;
  Counts& counts_;
  std::unique_ptr<httplib::Client> http_;
  std::string body_;
  size_t pending_ = 0;
  RateLimiter limit_;
};

// Reads lines from `file`, calling on_line(line, offset); keeps a partial last line for later.
class LineReader {
 public:
  template <class F>
  bool read_available(std::FILE* file, F on_line) {
    bool any = false;
    char chunk[1 << 16];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof(chunk), file)) > 0) {
      any = true;
      buffer_.append(chunk, n);
      size_t start = 0, nl;
      while ((nl = buffer_.find('\n', start)) != std::string::npos) {
        on_line(std::string_view(buffer_.data() + start, nl - start), offset_ + start);
        start = nl + 1;
      }
      buffer_.erase(0, start);
      offset_ += start;
    }
    std::clearerr(file);  // so a later read after growth works
    return any;
  }
  template <class F>
  void finish(F on_line) {
    if (!buffer_.empty()) on_line(std::string_view(buffer_), offset_);
    buffer_.clear();
  }
  void reset() {
    buffer_.clear();
    offset_ = 0;
  }

 private:
  std::string buffer_;
  uint64_t offset_ = 0;
};

}  // namespace

Run add_ingest(CLI::App& app) {
  auto f = std::make_shared<IngestFlags>();
  app.add_option("input", f->input, "Log file to read, or - for stdin (default -)");
  app.add_option("--node-addr", f->node_addr, "The node's HTTP address HOST:PORT (default 127.0.0.1:7480)");
  app.add_option("--token", f->token, "Bearer token, if the node requires one");
  app.add_option("--format", f->format, "auto, combined, nginx_json or ndjson (default auto: per line)")
      ->check(CLI::IsMember({"auto", "combined", "nginx_json", "ndjson"}));
  app.add_flag("-f,--follow", f->follow, "Keep reading as the file grows, across rotation");
  app.add_option("--batch", f->batch, "Lines per HTTP request (default 2000)")->check(CLI::Range(1, 100000));
  app.add_option("--retries", f->retries, "Retries of a failed HTTP request (default 5)")->check(CLI::Range(0, 100));
  app.add_flag("--dry-run", f->dry_run, "Parse and count only; publish nothing");
  return [f]() -> int {
    ingest::LogFormat format = ingest::LogFormat::auto_detect;
    ingest::parse_format(f->format, format);
    const bool from_stdin = f->input == "-";
    if (from_stdin && f->follow) throw Error(ErrorCode::invalid_argument, "--follow needs a file, not stdin");
    Counts counts;
    Sender sender(*f, counts);
    ingest::LineParser parser(format);
    RateLimiter parse_log;
    LineReader reader;
    uint64_t source = ingest::source_id("stdin");
    std::FILE* file = stdin;
    struct stat st {};
    auto open_file = [&]() -> bool {
      file = std::fopen(f->input.c_str(), "rb");
      if (!file) return false;
      fstat(fileno(file), &st);
      // The file's identity (device, inode) is part of every id: a rotated file is a new source.
      source = ingest::source_id(f->input + ":" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
      reader.reset();
      return true;
    };
    if (!from_stdin && !open_file()) throw Error(ErrorCode::invalid_argument, "ingest: cannot open " + f->input);
    RequestLog log;
    auto on_line = [&](std::string_view line, uint64_t offset) {
      ++counts.lines;
      counts.bytes += line.size() + 1;
      if (line.empty() || (line.size() == 1 && line[0] == '\r')) return;
      const std::string why = parser.parse(line, source, offset, log);
      if (!why.empty()) {
        ++counts.parse_errors;
        parse_log.log(LogLevel::warn, "ingest: line at byte " + std::to_string(offset) + ": " + why);
        return;
      }
      ++counts.parsed;
      sender.add(log);
    };
    const auto start = std::chrono::steady_clock::now();
    auto last_progress = start;
    auto progress = [&](bool final) {
      const auto now = std::chrono::steady_clock::now();
      if (!final && now - last_progress < std::chrono::seconds(1)) return;
      last_progress = now;
      const double s = std::max(1e-3, std::chrono::duration<double>(now - start).count());
      const ProgressLine line = progress_line();
      std::fprintf(stderr, "%sreqbus ingest: %llu lines (%.0f/s), %llu accepted, %llu rejected by the node, %llu unparsable%s",
                   line.begin, (unsigned long long)counts.lines, double(counts.lines) / s,
                   (unsigned long long)counts.accepted, (unsigned long long)counts.rejected,
                   (unsigned long long)counts.parse_errors, final ? "\n" : line.end);
    };
    bool stop = false;
    while (!stop) {
      const bool got = reader.read_available(file, on_line);
      progress(false);
      if (!f->follow) break;
      if (!got) {
        sender.send();  // don't sit on a partial batch while the file is quiet
        if (wait_for_signal(std::chrono::milliseconds(250)) != 0) break;
        struct stat now {};
        const bool rotated = ::stat(f->input.c_str(), &now) == 0 && (now.st_ino != st.st_ino || now.st_dev != st.st_dev);
        const bool truncated = fstat(fileno(file), &now) == 0 && uint64_t(now.st_size) < uint64_t(ftell(file));
        if (rotated || truncated) {
          reader.read_available(file, on_line);  // what was written before the rename
          reader.finish(on_line);
          std::fclose(file);
          if (!open_file()) {
            file = nullptr;
            while (!file && wait_for_signal(std::chrono::milliseconds(250)) == 0) open_file();
            if (!file) break;
          }
        }
      }
      (void)stop;
    }
    if (file) reader.finish(on_line);
    sender.send();
    if (file && file != stdin) std::fclose(file);
    progress(true);
    return counts.parse_errors > 0 && counts.parsed == 0 ? 1 : 0;
  };
}

}  // namespace reqbus::app
