#pragma once
// `reqbus ingest`'s input: a file or stdin read by descriptor, split into lines with their byte
// offsets (LineReader), and the identity its request ids derive from (Input).
// Thread-safety: one thread.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "ingest/log_parse.hpp"

namespace reqbus::app::ingest_cmd {

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
  std::chrono::steady_clock::time_point last_growth = std::chrono::steady_clock::now();

 private:
  Input(std::string name, int fd, bool owned) : name_(std::move(name)), fd_(fd), owned_(owned) {}
  std::string name_;
  int fd_;
  bool owned_;
  dev_t dev_{};
  ino_t ino_{};
  uint64_t source_ = 0;
};

}  // namespace reqbus::app::ingest_cmd
