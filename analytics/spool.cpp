#include "analytics/spool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "analytics/spool_format.hpp"
#include "reqbus/error.hpp"

namespace fs = std::filesystem;

namespace reqbus::detail {
namespace {

constexpr const char* kSuffix = ".seg";

std::string errno_text(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

// Writes all of [data, data+size) or returns false with errno set.
bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
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

void validate(const SpoolOptions& o) {
  auto bad = [](const std::string& why) { throw Error(ErrorCode::invalid_argument, why); };
  if (o.dir.empty()) bad("SpoolOptions.dir: must not be empty");
  if (o.segment_bytes < 4096) bad("SpoolOptions.segment_bytes: must be >= 4096");
  if (o.max_bytes < o.segment_bytes) bad("SpoolOptions.max_bytes: must be >= segment_bytes");
}

}  // namespace

Spool::Spool(SpoolOptions options) : options_(std::move(options)) {
  validate(options_);
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  if (ec) throw Error(ErrorCode::storage, "spool: cannot create " + options_.dir + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(options_.dir, ec)) {
    const uint64_t id = parse_segment_name(entry.path());
    if (id == 0 || !entry.is_regular_file()) continue;
    const uint64_t bytes = entry.file_size();
    segments_.push_back({id, bytes});
    total_bytes_ += bytes;
  }
  if (ec) throw Error(ErrorCode::storage, "spool: cannot read " + options_.dir + ": " + ec.message());
  std::sort(segments_.begin(), segments_.end(),
            [](const Segment& a, const Segment& b) { return a.id < b.id; });
  if (!segments_.empty()) next_id_ = segments_.back().id + 1;
}

Spool::~Spool() {
  std::lock_guard lock(mu_);
  seal_locked();
}

std::string Spool::segment_path(uint64_t segment_id) const {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu%s", static_cast<unsigned long long>(segment_id), kSuffix);
  return (fs::path(options_.dir) / name).string();
}

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

SpoolAppend Spool::append(const std::vector<Message>& batch, std::string* error) {
  std::string record;
  spool_format::append_record(record, batch);
  std::lock_guard lock(mu_);
  if (active_fd_ >= 0 && segments_.back().bytes + record.size() > options_.segment_bytes &&
      segments_.back().bytes > spool_format::kHeaderBytes) {
    seal_locked();  // rotate
  }
  const size_t header = active_fd_ >= 0 ? 0 : spool_format::kHeaderBytes;
  if (total_bytes_ + header + record.size() > options_.max_bytes) {
    if (error) {
      *error = "spool: full (" + std::to_string(total_bytes_) + " of " +
               std::to_string(options_.max_bytes) + " bytes used; SpoolOptions.max_bytes)";
    }
    return SpoolAppend::full;
  }
  if (active_fd_ < 0 && !open_new_segment_locked(error)) return SpoolAppend::io_error;
  Segment& segment = segments_.back();
  const bool written = write_all(active_fd_, record.data(), record.size()) &&
                       (!options_.sync || ::fdatasync(active_fd_) == 0);
  if (!written) {
    if (error) *error = errno_text("spool: cannot append to", segment_path(segment.id));
    // Whatever reached the file is a torn tail that readers skip; never append after it.
    std::error_code ec;
    const auto size = fs::file_size(segment_path(segment.id), ec);
    if (!ec) {
      total_bytes_ += size - segment.bytes;
      segment.bytes = size;
    }
    seal_locked();
    return SpoolAppend::io_error;
  }
  segment.bytes += record.size();
  total_bytes_ += record.size();
  ++appended_;
  return SpoolAppend::ok;
}

std::optional<SpoolSegment> Spool::read_oldest() {
  uint64_t id = 0;
  {
    std::lock_guard lock(mu_);
    if (segments_.empty()) return std::nullopt;
    id = segments_.front().id;
    if (segments_.size() == 1 && active_fd_ >= 0) seal_locked();
  }
  // A sealed segment never changes, so it is read without the lock.
  SpoolSegment segment;
  segment.id = id;
  std::ifstream in(segment_path(id), std::ios::binary);
  segment.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  segment.corrupt_records = spool_format::index_segment(segment.data, segment.records);
  std::lock_guard lock(mu_);
  corrupt_ += segment.corrupt_records;
  return segment;
}

void Spool::remove(uint64_t segment_id) {
  std::lock_guard lock(mu_);
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
  return segments_.empty();
}

SpoolStats Spool::stats() const {
  std::lock_guard lock(mu_);
  return {segments_.size(), total_bytes_, appended_, corrupt_, removed_};
}

}  // namespace reqbus::detail
