// reqbus ingest: read access logs (combined, nginx JSON, NDJSON RequestLogs) from a file or
// stdin and publish them to a node through its HTTP API (POST /v1/requests, NDJSON batches).
// --follow keeps reading a growing file and follows it across rotation (rename + new file, or
// truncation), like `tail -F`. After a rename it also keeps reading the renamed file until that
// has been quiet for kRotationGrace: the web server writes there until it is told to reopen.
// With --follow a file that does not exist yet (nginx creates its log at its first start) is
// waited for, and read from its start once it appears.
// Request ids are derived from (the log's name, byte offset, time, the line's bytes), so ingesting
// the same file twice, under any spelling of its path or from a rotated copy of it, stores each
// line once (app/ingest_input.hpp: Input::log_name).
// Lines the node's bus refuses (a full queue, a closing node) are posted again with a backoff.
// SIGINT/SIGTERM stop it between reads: the pending batch is sent and the counts printed.
// Exit status: 0; 1 on an error, when lines stayed refused by the node's bus, or when no line was
// usable at all (every one unparsable or invalid; with --dry-run, which posts nothing: unparsable);
// 128 + the signal when a signal stopped it before the end of its input (not with --follow, which
// ends no other way).
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "app/commands.hpp"
#include "app/ingest_input.hpp"
#include "app/ingest_sender.hpp"
#include "ingest/log_parse.hpp"
#include "node/config.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace reqbus::app {

namespace {

using ingest_cmd::Counts;
using ingest_cmd::IngestFlags;
using ingest_cmd::Input;
using ingest_cmd::Sender;

using Clock = std::chrono::steady_clock;

// How long a renamed log keeps being read after it last grew. nginx writes to the renamed file
// until logrotate's postrotate signals it to reopen its logs (50-500 ms later, more under load).
constexpr auto kRotationGrace = std::chrono::seconds(5);
// The longest one wait for input lasts before looking for SIGINT/SIGTERM (and rotation) again.
constexpr auto kPollInterval = std::chrono::milliseconds(250);

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
    bool missing = false;
    input_ = Input::open(f.input, why, &missing);
    if (input_) return;
    // `tail -F`: a follower waits for a file that is not there yet (follow_rotation opens it).
    // Other failures (no permission, a directory) will not go away by waiting: errors.
    if (!f.follow || !missing) throw Error(ErrorCode::invalid_argument, "ingest: " + why);
    std::fprintf(stderr, "reqbus ingest: waiting for %s to appear\n", f.input.c_str());
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
      if (input_) leave_unfinished(*input_);
      for (const auto& old : rotated_) leave_unfinished(*old);
    }
    sender_.send();
    if (!signal) signal = sender_.stopped_by();  // taken while the sender waited to post again
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
      if (const int signal = sender_.stopped_by()) return signal;
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

  // --follow: reads as the file grows, across rotation, until SIGINT/SIGTERM (returned). Without
  // input_ the file has not appeared yet: follow_rotation looks for it.
  int follow() {
    for (;;) {
      if (const int signal = wait_for_signal(std::chrono::milliseconds(0))) return signal;
      if (const int signal = sender_.stopped_by()) return signal;
      if (input_ && input_->rewritten()) {  // copytruncate, or truncated and written again
        finish(*input_);  // its last line as far as we read it: it was in the file
        input_->rewind();
      }
      bool grew = input_ && input_->readable(std::chrono::milliseconds(0)) && read(*input_) > 0;
      grew = drain_rotated() || grew;
      progress(false);
      if (grew) continue;
      sender_.send();  // don't sit on a partial batch while the file is quiet
      if (const int signal = wait_for_signal(kPollInterval)) return signal;
      follow_rotation();
    }
  }

  // `tail -F`: when the path names another file (rename + create), read that one from its start
  // and keep draining this one (drain_rotated). (A file truncated in place is seen by follow()
  // before each read.) A path that is missing or cannot be opened yet is looked at again later.
  void follow_rotation() {
    if (!input_) {
      appear();
      return;
    }
    struct stat now {};
    if (::stat(f_.input.c_str(), &now) == 0 && !input_->is(now)) {
      std::string why;
      if (auto next = Input::open(f_.input, why)) {
        input_->last_growth = Clock::now();
        rotated_.push_back(std::move(input_));
        input_ = std::move(next);
      }
    }
  }

  // The file we wait for: opened once it is there, to be read from its start. One that is there
  // and cannot be opened (no permission, a directory) is the error it would have been at the start.
  // (Judged by the open's own errno: a stat after it could find the file just created — the
  // test that waits for a log to appear saw "cannot open: No such file" once under ASan.)
  void appear() {
    std::string why;
    bool missing = false;
    input_ = Input::open(f_.input, why, &missing);
    if (!input_ && !missing) throw ReadError{why};
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
    const ssize_t n = in.reader.read_chunk(
        in.fd(), [&](std::string_view line, uint64_t offset) { on_line(line, in.source(), offset); },
        [&](uint64_t offset, uint64_t bytes) { on_too_long(offset, bytes); });
    if (n < 0) throw ReadError{"cannot read " + in.name() + ": " + std::strerror(errno)};
    return n;
  }

  // `in` ended for good: its last line is published even without its newline.
  void finish(Input& in) {
    in.reader.finish([&](std::string_view line, uint64_t offset) { on_line(line, in.source(), offset); },
                     [&](uint64_t offset, uint64_t bytes) { on_too_long(offset, bytes); });
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

  // A line longer than ingest_cmd::kMaxLineBytes: its bytes were dropped as they were read.
  void on_too_long(uint64_t offset, uint64_t bytes) {
    ++counts_.lines;
    counts_.bytes += bytes + 1;
    ++counts_.parse_errors;
    parse_log_.log(LogLevel::warn, "ingest: line at byte " + std::to_string(offset) + ": " + std::to_string(bytes) +
                                       " bytes, longer than the limit of " + std::to_string(ingest_cmd::kMaxLineBytes) +
                                       ": skipped");
  }

  // A signal stopped us: a partial last line may still be completed by the writer, so it is not
  // published (a line cut inside a field could even parse); it is counted and reported. One
  // already past the length limit never will be: it is reported as too long instead.
  void leave_unfinished(Input& in) {
    if (in.reader.dropping_too_long()) {
      finish(in);  // reports it through on_too_long
      return;
    }
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
    const ProgressLine line = progress_line();
    // Into a log (not a terminal), a quiet --follow would add the same line every second for
    // as long as it runs (days, under systemd): a line is written when there is news.
    const uint64_t news = counts_.lines + counts_.accepted + counts_.invalid + counts_.refused;
    if (!final && !line.in_place() && news == reported_) return;
    last_progress_ = now;
    reported_ = news;
    const double s = std::max(1e-3, std::chrono::duration<double>(now - start_).count());
    if (f_.dry_run) {  // no node is involved: what was parsed, not what a node made of it
      std::fprintf(stderr, "%sreqbus ingest (dry run): %llu lines (%.0f/s), %llu parsed, %llu unparsable; nothing published%s",
                   line.begin, (unsigned long long)counts_.lines, double(counts_.lines) / s,
                   (unsigned long long)counts_.parsed, (unsigned long long)counts_.parse_errors, final ? "\n" : line.end);
      return;
    }
    std::fprintf(stderr, "%sreqbus ingest: %llu lines (%.0f/s), %llu accepted, %llu rejected by the node, %llu unparsable%s",
                 line.begin, (unsigned long long)counts_.lines, double(counts_.lines) / s,
                 (unsigned long long)counts_.accepted, (unsigned long long)(counts_.invalid + counts_.refused),
                 (unsigned long long)counts_.parse_errors, final ? "\n" : line.end);
  }

  int exit_status(int signal) const {
    if (signal && !f_.follow) return 128 + signal;  // the input was not read to its end
    if (counts_.refused > 0) return 1;               // good lines that are not stored
    // Bad lines alone (unparsable here, or invalid to the node) are the log's, shown in the
    // counts; they fail the run only when no line was usable at all (in a dry run: parsed).
    const uint64_t usable = f_.dry_run ? counts_.parsed : counts_.accepted;
    if (counts_.parse_errors + counts_.invalid > 0 && usable == 0) return 1;
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
  uint64_t reported_ = 0;  // lines + their outcomes, as the last progress line said
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
