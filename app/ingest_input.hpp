#pragma once
// `reqbus ingest`'s input: a file or stdin read by descriptor, split into lines with their byte
// offsets (LineReader), and the name its request ids derive from (Input).
// Thread-safety: one thread.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "ingest/log_parse.hpp"

namespace reqbus::app::ingest_cmd {

// The longest line kept whole. A longer one is no access-log line (nginx caps a request line and
// each header at a few KiB; reqbus's field limits are 2 KiB): its bytes are dropped as they are
// read, up to its newline, and it is reported once as too long. Without the cap, input without
// newlines (a binary file, /dev/zero, a writer gone wrong) grew the buffer without bound.
inline constexpr size_t kMaxLineBytes = size_t(1) << 20;

// Splits what is read from a descriptor into lines, calling on_line(line, offset); keeps a
// partial last line for later. A line longer than kMaxLineBytes is not passed on: on_too_long(
// offset, bytes) is called once its end is read. The buffer holds at most kMaxLineBytes plus one
// read, and each byte is searched for a newline once.
class LineReader {
 public:
  static constexpr size_t kChunkBytes = size_t(1) << 16;

  // One read (up to kChunkBytes), so the caller can look for signals between reads. Returns the
  // bytes read, 0 at the end of the data for now, or -1 on a read error (errno says which).
  template <class F, class G>
  ssize_t read_chunk(int fd, F on_line, G on_too_long) {
    char chunk[kChunkBytes];
    ssize_t n;
    do n = ::read(fd, chunk, sizeof(chunk));
    while (n < 0 && errno == EINTR);
    if (n <= 0) return n;
    remember(chunk, size_t(n));
    buffer_.append(chunk, size_t(n));
    size_t start = 0, nl;
    // Bytes before scanned_ were searched by an earlier read: rescanning a long partial line on
    // every read made reading it quadratic.
    while ((nl = buffer_.find('\n', std::max(start, scanned_))) != std::string::npos) {
      if (skipping_) {  // the end of the too-long line being dropped
        skipping_ = false;
        on_too_long(skip_start_, offset_ + nl - skip_start_);
      } else if (nl - start > kMaxLineBytes) {
        on_too_long(offset_ + start, uint64_t(nl - start));
      } else {
        on_line(std::string_view(buffer_.data() + start, nl - start), offset_ + start);
      }
      start = nl + 1;
    }
    buffer_.erase(0, start);
    offset_ += start;
    scanned_ = buffer_.size();
    if (skipping_ || buffer_.size() > kMaxLineBytes) {  // no newline yet: drop what we have of it
      if (!skipping_) skip_start_ = offset_;
      skipping_ = true;
      offset_ += buffer_.size();
      buffer_.clear();
      scanned_ = 0;
    }
    return n;
  }
  // The input ended for good: its last line needs no newline.
  template <class F, class G>
  void finish(F on_line, G on_too_long) {
    if (skipping_)
      on_too_long(skip_start_, offset_ + buffer_.size() - skip_start_);
    else if (buffer_.size() > kMaxLineBytes)
      on_too_long(offset_, uint64_t(buffer_.size()));
    else if (!buffer_.empty())
      on_line(std::string_view(buffer_), offset_);
    offset_ += buffer_.size();
    buffer_.clear();
    scanned_ = 0;
    skipping_ = false;
  }
  void reset() {
    buffer_.clear();
    head_.clear();
    tail_.clear();
    offset_ = 0;
    scanned_ = 0;
    skipping_ = false;
  }
  // The bytes of the last line read so far, without its end: kept, or dropped as too long.
  uint64_t unfinished_bytes() const { return skipping_ ? offset_ + buffer_.size() - skip_start_ : buffer_.size(); }
  size_t buffered_bytes() const { return buffer_.size(); }  // what is held in memory
  bool dropping_too_long() const { return skipping_; }  // the last line is already too long
  uint64_t position() const { return offset_ + buffer_.size(); }  // bytes read so far
  // The first and the last bytes read (up to kMarkBytes each; the last end at position()): what
  // Input::rewritten() compares the file with.
  static constexpr size_t kMarkBytes = 256;
  std::string_view head() const { return head_; }
  std::string_view tail() const { return tail_; }

 private:
  void remember(const char* bytes, size_t n) {
    if (head_.size() < kMarkBytes) head_.append(bytes, std::min(n, kMarkBytes - head_.size()));
    if (n >= kMarkBytes) {
      tail_.assign(bytes + n - kMarkBytes, kMarkBytes);
      return;
    }
    tail_.append(bytes, n);
    if (tail_.size() > kMarkBytes) tail_.erase(0, tail_.size() - kMarkBytes);
  }

  std::string buffer_;
  std::string head_, tail_;
  uint64_t offset_ = 0;      // of buffer_[0] in the input
  size_t scanned_ = 0;       // buffer_[0, scanned_) has no newline
  bool skipping_ = false;    // dropping the bytes of a line longer than kMaxLineBytes
  uint64_t skip_start_ = 0;  // the offset of that line
};

// An open input (a file, or stdin for "-"): its descriptor, the source its ids derive from, and
// the reader of its lines.
class Input {
 public:
  // Opens `path`; nullptr and `why` when it cannot be read as a log.
  // `missing`, when given, says whether a failure was the file not being there (ENOENT), told by
  // the open itself: a second look could see a file created in between and call it an error.
  static std::unique_ptr<Input> open(const std::string& path, std::string& why, bool* missing = nullptr) {
    const bool is_stdin = path == "-";
    const int fd = is_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (missing) *missing = fd < 0 && errno == ENOENT;
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
    in->source_ = ingest::source_id(is_stdin ? std::string("stdin") : log_name(path));
    return in;
  }

  // The name a file's request ids derive from (with each line's offset, time and bytes): the
  // log's own name, the same for all its generations. Its real path (so `access.log`,
  // `./access.log` and a symlink to it agree), with a rotation suffix taken off the file name:
  // `access.log.1` and `access.log-20261207` are `access.log`. (A compressed generation is not
  // one: ingest reads no gzip, and `zcat x.gz | reqbus ingest -` is stdin.) Ids then
  // follow a line, not the file it sits in: a generation that logrotate's copytruncate made by
  // copying (a new file, a new inode, the same lines at the same offsets) gives the lines the
  // ids they had when they were read from the log itself, so backfilling it stores nothing
  // twice. A new generation restarts at offset 0 with other lines, which get other ids.
  // (Ids from the file's inode, as before, made every copy a new source.)
  static std::string log_name(const std::string& path) {
    std::string name = path;
    if (char* real = ::realpath(path.c_str(), nullptr)) {
      name = real;
      std::free(real);
    }
    const size_t slash = name.rfind('/');
    const size_t base = slash == std::string::npos ? 0 : slash + 1;
    return name.substr(0, base) + without_rotation_suffix(name.substr(base));
  }

  // `access.log.1` -> `access.log`: digit-only parts after a '.' or '-' (`.1`, `-20261207`,
  // `-2026-12-07`), taken off while what is left still has an extension; `site-1` keeps its
  // name (two logs `site-1` and `site-2` are not one log).
  static std::string without_rotation_suffix(std::string file) {
    for (;;) {
      const size_t cut = file.find_last_of(".-");
      if (cut == std::string::npos || cut + 1 == file.size()) break;
      const bool digits = std::all_of(file.begin() + long(cut) + 1, file.end(),
                                      [](char c) { return c >= '0' && c <= '9'; });
      const std::string rest = file.substr(0, cut);
      if (!digits || rest.find('.') == std::string::npos || rest.back() == '.') break;
      file = rest;
    }
    return file;
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
  // The file no longer holds what we read of it: it is shorter than that (copytruncate), or its
  // first bytes or the bytes just before our position are not the ones we read there: it was
  // truncated and written again past our position between two reads, which its size alone
  // cannot show (`tail -F` reads on from the old offset then, in the middle of other lines).
  // (The first bytes too: log lines often end alike, in the same user agent.)
  bool rewritten() const {
    return !holds(reader.tail(), reader.position() - reader.tail().size()) || !holds(reader.head(), 0);
  }
  void rewind() {
    ::lseek(fd_, 0, SEEK_SET);
    reader.reset();
  }

  LineReader reader;
  std::chrono::steady_clock::time_point last_growth = std::chrono::steady_clock::now();

 private:
  Input(std::string name, int fd, bool owned) : name_(std::move(name)), fd_(fd), owned_(owned) {}
  std::string name_;
  // The file has `bytes` at `offset` (a read error says yes: the next read() reports it).
  bool holds(std::string_view bytes, uint64_t offset) const {
    char now[LineReader::kMarkBytes];
    ssize_t n;
    do n = ::pread(fd_, now, bytes.size(), off_t(offset));
    while (n < 0 && errno == EINTR);
    return n < 0 || (size_t(n) == bytes.size() && std::memcmp(now, bytes.data(), bytes.size()) == 0);
  }

  int fd_;
  bool owned_;
  dev_t dev_{};
  ino_t ino_{};
  uint64_t source_ = 0;
};

}  // namespace reqbus::app::ingest_cmd
