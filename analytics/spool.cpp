#include "analytics/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>

#include "analytics/spool_format.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace fs = std::filesystem;

namespace reqbus::detail {
namespace {

constexpr const char* kSuffix = ".seg";
constexpr const char* kDeadLetterName = "dead-letter.dlq";
constexpr const char* kLockName = "LOCK";

std::string errno_text(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

using WriteFn = std::function<ssize_t(int, const void*, size_t)>;

// Writes all of [data, data+size) with `write_fn` (::write if empty), or returns false with
// errno set.
bool write_all(int fd, const char* data, size_t size, const WriteFn& write_fn = {}) {
  while (size > 0) {
    const ssize_t n = write_fn ? write_fn(fd, data, size) : ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Reads the whole file into `out`; false with `error` set when it cannot be opened, is not a
// regular file, or gives fewer bytes than its size.
bool read_whole_file(const std::string& path, std::string& out, std::string* error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (error) *error = errno_text("cannot open", path);
    return false;
  }
  struct ::stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (error) *error = S_ISREG(st.st_mode) ? errno_text("cannot stat", path) : "cannot read " + path + ": not a regular file";
    ::close(fd);
    return false;
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  int read_errno = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) read_errno = errno;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (done == out.size()) return true;
  if (error) {
    *error = "cannot read " + path + ": got " + std::to_string(done) + " of " + std::to_string(out.size()) +
             " bytes" + (read_errno != 0 ? std::string(" (") + std::strerror(read_errno) + ")" : "");
  }
  out.clear();
  return false;
}

void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// "00000000000000000042.seg" -> 42; 0 for anything else.
uint64_t parse_segment_name(const fs::path& path) {
  const std::string name = path.filename().string();
  if (name.size() != 20 + std::strlen(kSuffix) || !name.ends_with(kSuffix)) return 0;
  uint64_t id = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    id = id * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return id;
}

SpoolOptions validated(SpoolOptions o) {
  auto bad = [](const std::string& why) { throw Error(ErrorCode::invalid_argument, why); };
  if (o.dir.empty()) bad("SpoolOptions.dir: must not be empty");
  if (o.segment_bytes < 4096) bad("SpoolOptions.segment_bytes: must be >= 4096");
  if (o.max_bytes < o.segment_bytes) bad("SpoolOptions.max_bytes: must be >= segment_bytes");
  return o;
}

// flock(LOCK_EX | LOCK_NB) on an open lock file: 0, or the errno (EWOULDBLOCK: another open
// file description holds it).
int lock_nonblocking(int fd) {
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0)
    if (errno != EINTR) return errno;
  return 0;
}

// Why a held lock refuses us, naming the pid its holder wrote when it can be read (the holder
// may not have written it yet).
std::string held_text(const std::string& dir, const std::string& path, int fd) {
  char text[24] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  long long pid = 0;
  for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9' && pid < (1LL << 40); ++i)
    pid = pid * 10 + (text[i] - '0');
  const std::string holder = pid <= 0           ? "another process"
                             : pid == ::getpid() ? "this process (pid " + std::to_string(pid) + ": another Spool or Batcher)"
                                                 : "another process (pid " + std::to_string(pid) + ")";
  return "spool: " + dir + " is in use by " + holder + ", which holds " + path +
         "; each node or Batcher needs a spool_dir of its own";
}

}  // namespace

SpoolLock::SpoolLock(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::storage, "spool: cannot create " + dir + ": " + ec.message());
  const std::string path = (fs::path(dir) / kLockName).string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(ErrorCode::storage, errno_text("spool: cannot open", path));
  if (const int err = lock_nonblocking(fd_); err != 0) {
    const std::string why = err == EWOULDBLOCK ? held_text(dir, path, fd_)
                                               : "spool: cannot lock " + path + ": " + std::strerror(err);
    ::close(fd_);  // the destructor does not run
    throw Error(ErrorCode::storage, why);
  }
  // For the message of the next one refused; the lock does not depend on it.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size()))
    log(LogLevel::warn, errno_text("spool: cannot write this process's pid into", path) + " (the lock is held)");
}

SpoolLock::~SpoolLock() { release(); }

void SpoolLock::release() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
  fd_ = -1;
}

void SpoolLock::throw_if_held(const std::string& dir) {
  const std::string path = (fs::path(dir) / kLockName).string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // no lock file: nobody holds it (or one SpoolLock will report on)
  const bool held = lock_nonblocking(fd) == EWOULDBLOCK;
  const std::string why = held ? held_text(dir, path, fd) : std::string();
  ::close(fd);  // releases the lock if this took it
  if (held) throw Error(ErrorCode::storage, why);
}

Spool::Spool(SpoolOptions options) : options_(validated(std::move(options))), lock_(options_.dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.dir, ec)) {
    const uint64_t id = parse_segment_name(entry.path());
    if (id == 0 || !entry.is_regular_file()) continue;
    const uint64_t bytes = entry.file_size();
    segments_.push_back({id, bytes});
    total_bytes_ += bytes;
  }
  if (ec) throw Error(ErrorCode::storage, "spool: cannot read " + options_.dir + ": " + ec.message());
  dead_bytes_ = trim_dead_letter_file();
  std::sort(segments_.begin(), segments_.end(),
            [](const Segment& a, const Segment& b) { return a.id < b.id; });
  if (!segments_.empty()) next_id_ = segments_.back().id + 1;
}

// The dead-letter file is appended to across processes: a record torn by a crash mid-append
// would misframe every record a later process appends after it (or, with a cut header, the whole
// file). So the file is cut back to its last whole record before anything is appended. What is
// cut loses nothing: dead_letter() never returned ok for it, so its batch is still in its
// segment and is replayed (and dead-lettered again) like any other.
uint64_t Spool::trim_dead_letter_file() {
  const std::string path = dead_letter_path();
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return 0;  // none yet (or unopenable: dead_letter() reports that when used)
  struct ::stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return 0;
  }
  const uint64_t size = uint64_t(st.st_size);
  // Reads `n` bytes at `at`; a read error keeps the file as it is (never cut what was not read).
  bool read_failed = false;
  auto read_at = [&](char* out, size_t n, uint64_t at) {
    if (::pread(fd, out, n, off_t(at)) == ssize_t(n)) return true;
    read_failed = true;
    return false;
  };
  uint64_t end = 0;  // end of the last whole record; 0 if even the header is incomplete
  char header[spool_format::kHeaderBytes];
  if (size >= sizeof header && read_at(header, sizeof header, 0)) {
    end = sizeof header;
    if (spool_format::header_version(std::string_view(header, sizeof header)) == 0) {
      end = size;  // not a spool header: not ours to cut; readers count it as one corrupt record
      log(LogLevel::error, "spool: " + path + " does not start with a spool header; left as it is");
    }
    char record[spool_format::kRecordHeaderBytes];
    while (size - end >= sizeof record && read_at(record, sizeof record, end)) {
      const uint64_t len = spool_format::get_u32(record);
      if (len > size - end - sizeof record) break;  // torn: its payload runs past the end
      end += sizeof record + len;
    }
  }
  if (read_failed) {
    log(LogLevel::error, errno_text("spool: cannot read", path) + "; not checked for a torn tail");
    end = size;
  }
  if (end < size) {
    if (::ftruncate(fd, off_t(end)) == 0) {
      if (options_.sync) ::fdatasync(fd);
      dead_letter_cut_bytes_ = size - end;
      log(LogLevel::warn, "spool: cut a torn record of " + std::to_string(size - end) + " bytes off the end of " +
                              path + " (a crash during a dead-letter append; the batch is still spooled)");
    } else {
      log(LogLevel::error, errno_text("spool: cannot cut the torn tail off", path));
      end = size;  // kept: dead_letter() appends after it
    }
  }
  ::close(fd);
  return end;
}

Spool::~Spool() { close(); }

void Spool::close() {
  std::lock_guard lock(mu_);
  seal_locked();
  closed_ = true;
  lock_.release();
}

std::string Spool::segment_path(uint64_t segment_id) const {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu%s", static_cast<unsigned long long>(segment_id), kSuffix);
  return (fs::path(options_.dir) / name).string();
}

std::string Spool::dead_letter_path() const { return (fs::path(options_.dir) / kDeadLetterName).string(); }

bool Spool::open_new_segment_locked(std::string* error) {
  const uint64_t id = next_id_++;
  const std::string path = segment_path(id);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (error) *error = errno_text("spool: cannot create", path);
    return false;
  }
  const std::string header = spool_format::segment_header();
  if (!write_all(fd, header.data(), header.size())) {
    if (error) *error = errno_text("spool: cannot write", path);
    ::close(fd);
    ::unlink(path.c_str());
    return false;
  }
  if (options_.sync) {
    ::fdatasync(fd);
    sync_dir(options_.dir);  // the new name must survive a crash too
  }
  active_fd_ = fd;
  segments_.push_back({id, header.size()});
  total_bytes_ += header.size();
  return true;
}

void Spool::seal_locked() {
  if (active_fd_ >= 0) {
    ::close(active_fd_);
    active_fd_ = -1;
  }
}

bool Spool::write_record(int fd, const std::string& record) {
  if (!write_all(fd, record.data(), record.size(), options_.write_fn)) return false;
  if (!options_.sync) return true;
  return (options_.sync_fn ? options_.sync_fn(fd) : ::fdatasync(fd)) == 0;
}

SpoolAppend Spool::append(const std::vector<Message>& batch, std::string* error) {
  std::string record;
  spool_format::append_record(record, batch);
  std::lock_guard lock(mu_);
  if (closed_) {
    if (error) *error = "spool: closed";
    return SpoolAppend::io_error;
  }
  if (active_fd_ >= 0 && segments_.back().bytes + record.size() > options_.segment_bytes &&
      segments_.back().bytes > spool_format::kHeaderBytes) {
    seal_locked();  // rotate
  }
  const size_t header = active_fd_ >= 0 ? 0 : spool_format::kHeaderBytes;
  if (total_bytes_ + dead_bytes_ + header + record.size() > options_.max_bytes) {
    if (error) {
      *error = "spool: full (" + std::to_string(total_bytes_ + dead_bytes_) + " of " +
               std::to_string(options_.max_bytes) + " bytes used; SpoolOptions.max_bytes)";
    }
    return SpoolAppend::full;
  }
  if (active_fd_ < 0 && !open_new_segment_locked(error)) return SpoolAppend::io_error;
  Segment& segment = segments_.back();
  if (!write_record(active_fd_, record)) {
    if (error) *error = errno_text("spool: cannot append to", segment_path(segment.id));
    // The caller counts this batch as dropped, so none of it may stay: cut the file back to
    // where the record began. If even that fails, what reached the file is a torn tail (or a
    // whole record) that stays and is accounted; never append after it.
    if (::ftruncate(active_fd_, static_cast<off_t>(segment.bytes)) != 0) {
      if (error) *error += "; and cannot cut off the partial record: " + std::string(std::strerror(errno));
      struct ::stat st {};
      if (::fstat(active_fd_, &st) == 0 && uint64_t(st.st_size) >= segment.bytes) {
        total_bytes_ += uint64_t(st.st_size) - segment.bytes;
        segment.bytes = uint64_t(st.st_size);
      }
    }
    seal_locked();
    return SpoolAppend::io_error;
  }
  segment.bytes += record.size();
  total_bytes_ += record.size();
  ++appended_;
  return SpoolAppend::ok;
}

SpoolAppend Spool::dead_letter(const SpoolSegment& segment, size_t index, std::string* error) {
  const spool_format::RecordSpan span = segment.records.at(index);
  const size_t start = span.offset - spool_format::kRecordHeaderBytes;  // as it was framed
  std::lock_guard lock(mu_);
  if (closed_) {
    if (error) *error = "spool: closed";
    return SpoolAppend::io_error;
  }
  const size_t header = dead_bytes_ == 0 ? spool_format::kHeaderBytes : 0;
  const size_t bytes = header + spool_format::kRecordHeaderBytes + span.size;
  if (total_bytes_ + dead_bytes_ + bytes > options_.max_bytes) {
    if (error) *error = "spool: full (SpoolOptions.max_bytes), no room in " + dead_letter_path();
    return SpoolAppend::full;
  }
  const std::string path = dead_letter_path();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (error) *error = errno_text("spool: cannot open", path);
    return SpoolAppend::io_error;
  }
  std::string record = header > 0 ? spool_format::segment_header() : std::string();
  record.append(segment.data, start, spool_format::kRecordHeaderBytes + span.size);
  const bool written = write_record(fd, record);
  if (!written) {
    if (error) *error = errno_text("spool: cannot append to", path);
    if (::ftruncate(fd, static_cast<off_t>(dead_bytes_)) != 0) {
      struct ::stat st {};
      if (::fstat(fd, &st) == 0) dead_bytes_ = uint64_t(st.st_size);
    }
  } else {
    dead_bytes_ += record.size();
    if (header > 0 && options_.sync) sync_dir(options_.dir);  // the new name must survive a crash
  }
  ::close(fd);
  return written ? SpoolAppend::ok : SpoolAppend::io_error;
}

SpoolRead Spool::read_oldest(SpoolSegment& out, std::string* error) {
  uint64_t id = 0;
  {
    std::lock_guard lock(mu_);
    auto it = std::find_if(segments_.begin(), segments_.end(), [](const Segment& s) { return !s.skipped; });
    if (closed_ || it == segments_.end()) return SpoolRead::empty;
    id = it->id;
    if (std::next(it) == segments_.end() && active_fd_ >= 0) seal_locked();
  }
  // A sealed segment never changes, so it is read without the lock.
  std::string data;
  if (!read_whole_file(segment_path(id), data, error)) return SpoolRead::io_error;
  if (const uint32_t version = spool_format::header_version(data); version > spool_format::kVersion) {
    if (error) {
      *error = "spool segment " + segment_path(id) + " has version " + std::to_string(version) +
               " (this reqbus reads up to " + std::to_string(spool_format::kVersion) +
               "): written by a newer reqbus; kept for it and skipped";
    }
    std::lock_guard lock(mu_);
    skip_locked(id);
    return SpoolRead::newer_version;
  }
  out = SpoolSegment{};
  out.id = id;
  out.data = std::move(data);
  out.corrupt_records = spool_format::index_segment(out.data, out.records);
  std::lock_guard lock(mu_);
  corrupt_ += out.corrupt_records;
  return SpoolRead::ok;
}

void Spool::skip_locked(uint64_t segment_id) {
  for (Segment& segment : segments_)
    if (segment.id == segment_id) segment.skipped = true;
}

void Spool::remove(uint64_t segment_id) {
  std::lock_guard lock(mu_);
  if (closed_) return;  // the directory may be another's now
  auto it = std::find_if(segments_.begin(), segments_.end(),
                         [&](const Segment& s) { return s.id == segment_id; });
  if (it == segments_.end()) return;
  if (std::next(it) == segments_.end()) seal_locked();
  ::unlink(segment_path(segment_id).c_str());
  total_bytes_ -= it->bytes;
  segments_.erase(it);
  ++removed_;
}

bool Spool::empty() const {
  std::lock_guard lock(mu_);
  return std::all_of(segments_.begin(), segments_.end(), [](const Segment& s) { return s.skipped; });
}

SpoolStats Spool::stats() const {
  std::lock_guard lock(mu_);
  const auto skipped = std::count_if(segments_.begin(), segments_.end(), [](const Segment& s) { return s.skipped; });
  return {segments_.size(), total_bytes_, appended_, corrupt_, removed_, uint64_t(skipped), dead_bytes_,
          dead_letter_cut_bytes_};
}

}  // namespace reqbus::detail
