// reqbus ingest: read access logs (combined, nginx JSON, NDJSON RequestLogs) from a file or
// stdin and publish them to a node through its HTTP API (POST /v1/requests, NDJSON batches).
// --follow keeps reading a growing file and follows it across rotation (rename + new file, or
// truncation), like `tail -F`. After a rename it also keeps reading the renamed file until that
// has been quiet for kRotationGrace: the web server writes there until it is told to reopen.
// Request ids are derived from (file identity, byte offset, time, the line's bytes), so ingesting
// the same file twice, under any spelling of its path, stores each line once.
// Lines the node's bus refuses (a full queue, a closing node) are posted again with a backoff.
// SIGINT/SIGTERM stop it between reads: the pending batch is sent and the counts printed.
// Exit status: 0; 1 on an error, when lines stayed refused by the node's bus, or when no line was
// usable at all (every one unparsable or invalid); 128 + the signal when a signal stopped it
// before the end of its input (not with --follow, which ends no other way).
#include <errno.h>
#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>
#include <vector>

#include "analytics/request_json.hpp"
#include "app/commands.hpp"
#include "ingest/log_parse.hpp"
#include "node/config.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace reqbus::app {

std::string http_error_text(httplib::Error e);  // cmd_top.cpp

namespace {

using Clock = std::chrono::steady_clock;

// How long a renamed log keeps being read after it last grew. nginx writes to the renamed file
// until logrotate's postrotate signals it to reopen its logs (50-500 ms later, more under load).
constexpr auto kRotationGrace = std::chrono::seconds(5);
// The longest one wait for input lasts before looking for SIGINT/SIGTERM (and rotation) again.
constexpr auto kPollInterval = std::chrono::milliseconds(250);
// Posting lines the bus refused again waits 200 ms, 400 ms, 800 ms, ... up to this.
constexpr auto kMaxResendBackoff = std::chrono::milliseconds(2000);

struct IngestFlags {
  std::string input = "-";
  std::string node_addr = "127.0.0.1:7480";
  std::string token;
  std::string format = "auto";
  bool follow = false;
  size_t batch = 2000;
  int retries = 5;  // of a failed HTTP request, and of posting lines the node's bus refused
  bool dry_run = false;
};

struct Counts {
  uint64_t lines = 0, parsed = 0, parse_errors = 0, accepted = 0, bytes = 0;
  uint64_t invalid = 0;     // lines the node rejected as invalid (never posted again)
  uint64_t refused = 0;     // lines the node's bus refused at every try: not stored
  uint64_t resent = 0;      // lines posted again after a refusal of the bus
  std::string refusal;      // the last refusal, e.g. "bus: dropped_newest"
  uint64_t unfinished = 0;  // partial last lines left unpublished when a signal stopped us
  uint64_t unfinished_bytes = 0;
};

std::chrono::milliseconds resend_backoff(int resend) {
  return resend >= 4 ? kMaxResendBackoff
                     : std::min<std::chrono::milliseconds>(std::chrono::milliseconds(200 << resend), kMaxResendBackoff);
}

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
    line_ends_.push_back(body_.size());
    if (line_ends_.size() >= f_.batch) send();
  }
  void send() {
    if (line_ends_.empty()) return;
    if (!f_.dry_run) publish();
    else counts_.accepted += line_ends_.size();
    body_.clear();
    line_ends_.clear();
  }

 private:
  // Posts the batch, then just the lines the node's bus refused, again and again with a growing
  // pause, --retries times at most. Ids are deterministic: a line that reaches the bus twice is
  // stored once.
  void publish() {
    std::vector<size_t> lines(line_ends_.size());  // indices into the batch
    std::iota(lines.begin(), lines.end(), size_t(0));
    std::string body;
    for (int resend = 0;; ++resend) {
      std::vector<size_t> refused = settle(post(resend == 0 ? body_ : body), lines);
      if (refused.empty()) return;
      if (resend == f_.retries) {
        counts_.refused += refused.size();
        return;
      }
      counts_.resent += refused.size();
      std::this_thread::sleep_for(resend_backoff(resend));
      lines = std::move(refused);
      body.clear();
      for (size_t i : lines) body.append(line(i));
    }
  }

  // Line i of the batch, with its '\n'.
  std::string_view line(size_t i) const {
    const size_t begin = i == 0 ? 0 : line_ends_[i - 1];
    return std::string_view(body_).substr(begin, line_ends_[i] - begin);
  }

  // Counts what the node made of `lines` (posted in this order) and returns the ones to post
  // again: those its bus refused ("bus: timed_out", "bus: dropped_newest", "bus: closed"), which
  // a later try can get in. Lines it found invalid will not get better: counted and logged.
  // The node lists only the first item errors (50), in order. When it refused more, which of the
  // lines after the last one listed got in is unknown: all of them are posted again and count
  // as accepted only then.
  std::vector<size_t> settle(const nlohmann::json& reply, const std::vector<size_t>& lines) {
    uint64_t accepted = reply.value("accepted", uint64_t(0));
    const uint64_t rejected = reply.value("rejected", uint64_t(0));
    std::vector<size_t> again;
    uint64_t listed = 0;
    size_t known = 0;  // what became of lines [0, known) is known
    for (const auto& e : reply.value("errors", nlohmann::json::array())) {
      if (!e.is_object()) continue;
      const size_t index = e.value("index", lines.size());
      if (index >= lines.size()) continue;
      ++listed;
      known = index + 1;
      const std::string why = e.value("error", std::string("?"));
      if (why.rfind("bus:", 0) == 0) {
        again.push_back(lines[index]);
        counts_.refusal = why;
      } else {
        ++counts_.invalid;
        limit_.log(LogLevel::warn, "ingest: the node rejected a line: " + why);
      }
    }
    if (rejected > listed) {
      const uint64_t unknown = lines.size() - known, refused_among = std::min<uint64_t>(unknown, rejected - listed);
      accepted -= std::min(accepted, unknown - refused_among);
      for (size_t i = known; i < lines.size(); ++i) again.push_back(lines[i]);
    }
    counts_.accepted += accepted;
    return again;
  }

  // POSTs `body` and returns the node's 202 answer. A failure a later try can fix (no answer,
  // 429, 5xx) is tried again --retries times; then, or at once for other 4xx, throws.
  nlohmann::json post(const std::string& body) {
    std::string why;
    for (int attempt = 0; attempt <= f_.retries; ++attempt) {
      if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));  // backoff
      auto res = http_->Post("/v1/requests", body, "application/x-ndjson");
      if (!res) {
        why = "cannot reach http://" + f_.node_addr + " (" + http_error_text(res.error()) + ")";
        continue;
      }
      if (res->status == 202) {
        auto j = nlohmann::json::parse(res->body, nullptr, false);
        if (j.is_object()) return j;
        throw Error(ErrorCode::transport, "ingest: the node answered 202 without its counts: " + res->body.substr(0, 200));
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
  std::vector<size_t> line_ends_;  // where each line of body_ ends (past its '\n')
  RateLimiter limit_;
};

// Splits what is read from a descriptor into lines, calling on_line(line, offset); keeps a
// partial last line for later.
class LineReader {
 public:
  // One read (up to 64 KiB), so the caller can look for signals between reads. Returns the bytes
  // read, 0 at the end of the data for now, or -1 on a read error (errno says which).
  template <class F>
  ssize_t read_chunk(int fd, F on_line) {
    char chunk[1 << 16];
    ssize_t n;
    do n = ::read(fd, chunk, sizeof(chunk));
    while (n < 0 && errno == EINTR);
    if (n <= 0) return n;
    buffer_.append(chunk, size_t(n));
    size_t start = 0, nl;
    while ((nl = buffer_.find('\n', start)) != std::string::npos) {
      on_line(std::string_view(buffer_.data() + start, nl - start), offset_ + start);
      start = nl + 1;
    }
    buffer_.erase(0, start);
    offset_ += start;
    return n;
  }
  // The input ended for good: its last line needs no newline.
  template <class F>
  void finish(F on_line) {
    if (!buffer_.empty()) on_line(std::string_view(buffer_), offset_);
    buffer_.clear();
  }
  void reset() {
    buffer_.clear();
    offset_ = 0;
  }
  size_t unfinished_bytes() const { return buffer_.size(); }
  uint64_t position() const { return offset_ + buffer_.size(); }  // bytes read so far

 private:
  std::string buffer_;
  uint64_t offset_ = 0;
};

// An open input (a file, or stdin for "-"): its descriptor, the source its ids derive from, and
// the reader of its lines.
class Input {
 public:
  // Opens `path`; nullptr and `why` when it cannot be read as a log.
  static std::unique_ptr<Input> open(const std::string& path, std::string& why) {
    const bool is_stdin = path == "-";
    const int fd = is_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      why = "cannot open " + path + ": " + std::strerror(errno);
      return nullptr;
    }
    std::unique_ptr<Input> in(new Input(is_stdin ? "stdin" : path, fd, !is_stdin));
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      why = path + " is a directory: name a log file in it";
      return nullptr;
    }
    in->dev_ = st.st_dev;
    in->ino_ = st.st_ino;
    // A file's identity (device, inode) is part of every id, not its path as typed: `access.log`
    // and `./access.log` give the same ids, and a rotated file is a new source.
    in->source_ = ingest::source_id(is_stdin ? std::string("stdin")
                                             : std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
    return in;
  }
  ~Input() {
    if (owned_) ::close(fd_);
  }
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;

  const std::string& name() const { return name_; }
  uint64_t source() const { return source_; }
  bool is(const struct stat& st) const { return st.st_dev == dev_ && st.st_ino == ino_; }
  // Data (or its end, or an error) can be read without blocking within `timeout`.
  bool readable(std::chrono::milliseconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, int(timeout.count())) == 1;
  }
  int fd() const { return fd_; }
  // copytruncate: the file is now shorter than what we read of it.
  bool truncated() const {
    struct stat st {};
    return ::fstat(fd_, &st) == 0 && uint64_t(st.st_size) < reader.position();
  }
  void rewind() {
    ::lseek(fd_, 0, SEEK_SET);
    reader.reset();
  }

  LineReader reader;
  Clock::time_point last_growth = Clock::now();

 private:
  Input(std::string name, int fd, bool owned) : name_(std::move(name)), fd_(fd), owned_(owned) {}
  std::string name_;
  int fd_;
  bool owned_;
  dev_t dev_{};
  ino_t ino_{};
  uint64_t source_ = 0;
};

// A read failed: the message names the input and the reason.
struct ReadError {
  std::string message;
};

ingest::LogFormat format_of(const IngestFlags& f) {
  ingest::LogFormat format = ingest::LogFormat::auto_detect;
  ingest::parse_format(f.format, format);  // CLI11 checked the name
  return format;
}

// One run of `reqbus ingest`.
class Ingest {
 public:
  explicit Ingest(const IngestFlags& f) : f_(f), sender_(f, counts_), parser_(format_of(f)) {
    std::string why;
    input_ = Input::open(f.input, why);
    if (!input_) throw Error(ErrorCode::invalid_argument, "ingest: " + why);
  }

  int run() {
    int signal = 0;
    try {
      signal = f_.follow ? follow() : read_to_end();
    } catch (const ReadError& e) {
      sender_.send();
      progress(true);
      throw Error(ErrorCode::storage, "ingest: " + e.message);
    }
    if (signal) {
      leave_unfinished(*input_);
      for (const auto& old : rotated_) leave_unfinished(*old);
    }
    sender_.send();
    report(signal);
    progress(true);
    return exit_status(signal);
  }

 private:
  // Reads the input to its end, a chunk at a time, looking for SIGINT/SIGTERM in between (main()
  // blocks them, so a blocked read would never see one). Returns the signal that stopped it, or 0.
  int read_to_end() {
    for (;;) {
      if (const int signal = wait_for_signal(std::chrono::milliseconds(0))) return signal;
      if (!input_->readable(kPollInterval)) {
        sender_.send();  // a quiet pipe: don't sit on a partial batch
        continue;
      }
      if (read(*input_) == 0) {
        finish(*input_);
        return 0;
      }
      progress(false);
    }
  }

  // --follow: reads as the file grows, across rotation, until SIGINT/SIGTERM (returned).
  int follow() {
    for (;;) {
      if (const int signal = wait_for_signal(std::chrono::milliseconds(0))) return signal;
      bool grew = input_->readable(std::chrono::milliseconds(0)) && read(*input_) > 0;
      grew = drain_rotated() || grew;
      progress(false);
      if (grew) continue;
      sender_.send();  // don't sit on a partial batch while the file is quiet
      if (const int signal = wait_for_signal(kPollInterval)) return signal;
      follow_rotation();
    }
  }

  // `tail -F`: when the path names another file (rename + create), read that one from its start
  // and keep draining this one (drain_rotated); when this file shrank (copytruncate), read it
  // again from its start. A path that is missing or cannot be opened yet is looked at again later.
  void follow_rotation() {
    struct stat now {};
    if (::stat(f_.input.c_str(), &now) == 0 && !input_->is(now)) {
      std::string why;
      if (auto next = Input::open(f_.input, why)) {
        input_->last_growth = Clock::now();
        rotated_.push_back(std::move(input_));
        input_ = std::move(next);
      }
      return;
    }
    if (input_->truncated()) {
      read(*input_);  // what was written before the truncation, if we can still see it
      finish(*input_);
      input_->rewind();
    }
  }

  // Reads on in the files rotated away; finishes and closes each once it has been quiet for
  // kRotationGrace (the web server has reopened its log by then). True if one grew.
  bool drain_rotated() {
    bool grew = false;
    const auto now = Clock::now();
    for (auto it = rotated_.begin(); it != rotated_.end();) {
      Input& old = **it;
      if (read(old) > 0) {
        old.last_growth = now;
        grew = true;
      } else if (now - old.last_growth >= kRotationGrace) {
        finish(old);
        it = rotated_.erase(it);
        continue;
      }
      ++it;
    }
    return grew;
  }

  // One chunk of `in`; throws ReadError when the read fails (EIO, EISDIR, ...) instead of taking
  // it for the end of the file.
  ssize_t read(Input& in) {
    const ssize_t n =
        in.reader.read_chunk(in.fd(), [&](std::string_view line, uint64_t offset) { on_line(line, in.source(), offset); });
    if (n < 0) throw ReadError{"cannot read " + in.name() + ": " + std::strerror(errno)};
    return n;
  }

  // `in` ended for good: its last line is published even without its newline.
  void finish(Input& in) {
    in.reader.finish([&](std::string_view line, uint64_t offset) { on_line(line, in.source(), offset); });
  }

  void on_line(std::string_view line, uint64_t source, uint64_t offset) {
    ++counts_.lines;
    counts_.bytes += line.size() + 1;
    if (line.empty() || (line.size() == 1 && line[0] == '\r')) return;
    const std::string why = parser_.parse(line, source, offset, log_);
    if (!why.empty()) {
      ++counts_.parse_errors;
      parse_log_.log(LogLevel::warn, "ingest: line at byte " + std::to_string(offset) + ": " + why);
      return;
    }
    ++counts_.parsed;
    sender_.add(log_);
  }

  // A signal stopped us: a partial last line may still be completed by the writer, so it is not
  // published (a line cut inside a field could even parse); it is counted and reported.
  void leave_unfinished(const Input& in) {
    if (in.reader.unfinished_bytes() == 0) return;
    ++counts_.unfinished;
    counts_.unfinished_bytes += in.reader.unfinished_bytes();
  }

  // What the counts line does not say, each on a line of its own before it.
  void report(int signal) const {
    if (counts_.unfinished > 0)
      std::fprintf(stderr, "reqbus ingest: stopped by %s with %llu unfinished line%s (%llu bytes) not published: its end "
                   "was not written or not read yet; ingesting the file again publishes it, once (ids are stable)\n",
                   signal == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)counts_.unfinished,
                   counts_.unfinished == 1 ? "" : "s", (unsigned long long)counts_.unfinished_bytes);
    if (counts_.resent > 0 && counts_.refused == 0)  // all got in, but the node is not keeping up
      std::fprintf(stderr, "reqbus ingest: %llu line%s posted again after the node's bus refused them (%s)\n",
                   (unsigned long long)counts_.resent, counts_.resent == 1 ? "" : "s", counts_.refusal.c_str());
    if (counts_.refused > 0)
      std::fprintf(stderr, "reqbus ingest: %llu line%s refused by the node's bus (%s) after %d resend%s: not stored; "
                   "ingest again once the node keeps up (ids are stable: nothing is stored twice)\n",
                   (unsigned long long)counts_.refused, counts_.refused == 1 ? "" : "s",
                   counts_.refusal.empty() ? "bus: ?" : counts_.refusal.c_str(), f_.retries, f_.retries == 1 ? "" : "s");
  }

  void progress(bool final) {
    const auto now = Clock::now();
    if (!final && now - last_progress_ < std::chrono::seconds(1)) return;
    last_progress_ = now;
    const double s = std::max(1e-3, std::chrono::duration<double>(now - start_).count());
    const ProgressLine line = progress_line();
    std::fprintf(stderr, "%sreqbus ingest: %llu lines (%.0f/s), %llu accepted, %llu rejected by the node, %llu unparsable%s",
                 line.begin, (unsigned long long)counts_.lines, double(counts_.lines) / s,
                 (unsigned long long)counts_.accepted, (unsigned long long)(counts_.invalid + counts_.refused),
                 (unsigned long long)counts_.parse_errors, final ? "\n" : line.end);
  }

  int exit_status(int signal) const {
    if (signal && !f_.follow) return 128 + signal;  // the input was not read to its end
    if (counts_.refused > 0) return 1;               // good lines that are not stored
    // Bad lines alone (unparsable here, or invalid to the node) are the log's, shown in the
    // counts; they fail the run only when no line was usable at all.
    if (counts_.parse_errors + counts_.invalid > 0 && counts_.accepted == 0) return 1;
    return 0;
  }

  const IngestFlags& f_;
  Counts counts_;
  Sender sender_;
  ingest::LineParser parser_;
  RateLimiter parse_log_;
  RequestLog log_;
  std::unique_ptr<Input> input_;
  std::vector<std::unique_ptr<Input>> rotated_;  // renamed away, still read until quiet
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_progress_ = start_;
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
  app.add_option("--retries", f->retries,
                 "Retries of a failed HTTP request, and resends of lines the node's bus refused (default 5)")
      ->check(CLI::Range(0, 100));
  app.add_flag("--dry-run", f->dry_run, "Parse and count only; publish nothing");
  return [f]() -> int {
    if (f->input == "-" && f->follow) throw Error(ErrorCode::invalid_argument, "--follow needs a file, not stdin");
    Ingest ingest(*f);
    return ingest.run();
  };
}

}  // namespace reqbus::app
