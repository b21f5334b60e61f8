#pragma once
// Spool: the Batcher's on-disk journal for batches that could not be delivered (retries
// exhausted, a permanent sink error, close() at its deadline). Nothing the Batcher accepted is
// lost while the disk holds: batches wait here and are replayed, oldest first, when the sink
// recovers or the next process starts on the same directory.
//
// Layout (see analytics/spool_format.hpp): the directory holds append-only segment files
// "<20-digit id>.seg", written in id order. A segment is a 12-byte header then records
//   [u32 length][u32 crc32 of payload][payload]   (little-endian)
// and a payload is one batch: [u32 count] then per message [u32 length][codec record].
//
// Durability: every append is write() + fdatasync() of its segment (and an fsync of the
// directory when a segment is created), so an append that returned ok survives a crash.
// That costs one disk flush per spooled batch — acceptable because the spool is only written
// when the sink is failing. A crash mid-append leaves a torn tail; readers detect it (length
// past the end of the file, or a CRC mismatch), count it, skip it, and keep every valid record
// before it. A new process never appends to an old segment: it starts a new one.
//
// An append that fails after some of its bytes reached the file (a short write at ENOSPC, a
// failed fdatasync) cuts the file back to where the record began: the caller counts the batch
// as dropped, so it must not also come back at replay (or as a torn tail counted as corrupt).
//
// Reading: a segment is read in full or not at all. One that cannot be read (open or read
// failing: EMFILE, EACCES, EIO) stays where it is and read_oldest() says so (io_error), so the
// caller retries later; only a file of size 0 is an empty segment. A segment written by a newer
// reqbus (an unknown header version) is never deleted: read_oldest() reports it once
// (newer_version) and skips it from then on in this process, so a rollback keeps it for the
// newer binary.
//
// Dead letters: a batch the sink rejects permanently at replay is moved by the caller to
// "dead-letter.dlq" in the directory (dead_letter()), the segment layout again (header, then the
// records as they were), so an operator can inspect it; renamed to a segment name above every
// other ("<20-digit id>.seg") it is replayed like one. It is appended to across processes, so a
// new Spool first cuts a torn tail off it (a crash mid-append): records appended later must not
// be framed after a partial one. The cut loses nothing: that append never returned ok, so its
// batch is still in its segment.
//
// Bounds: a segment rotates once it would pass `segment_bytes`; the whole spool (segments and
// the dead-letter file) never passes `max_bytes` — an append that would is refused
// (SpoolAppend::full) and the caller counts the drop and says so loudly.
//
// One owner: a Spool holds an exclusive flock(2) on "<dir>/LOCK" for its whole life (an fd
// opened O_CLOEXEC, closed by the destructor). Two owners would append to and replay the same
// segments, replaying or deleting each other's batches, so a second Spool on the directory - in
// this process or another - is refused with Error{storage} naming the directory and the pid the
// holder wrote into the file. The kernel drops the lock when its process dies, however it dies:
// the file a crashed node leaves behind blocks nobody. (flock is per open file description, so a
// second Spool in the same process conflicts too.)
//
// Thread-safety: every method is safe from any thread; appends are serialised by one mutex.
// read_oldest() and remove() are meant for one replaying thread.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "analytics/spool_format.hpp"
#include "reqbus/message.hpp"

namespace reqbus::detail {

struct SpoolOptions {
  std::string dir;                       // created if missing; must not be empty
  size_t segment_bytes = 16 << 20;       // rotate a segment past this size (16 MiB); >= 4 KiB
  size_t max_bytes = size_t{1} << 30;    // refuse appends past this total (1 GiB); >= segment
  bool sync = true;                      // fdatasync every append (off only for benchmarks)
  // Test seam: the calls that write and sync a record. Empty (default) = ::write and
  // ::fdatasync; a test sets one to fail after (part of) a record reached the file.
  std::function<ssize_t(int fd, const void* data, size_t size)> write_fn{};
  std::function<int(int fd)> sync_fn{};
};

enum class SpoolAppend : uint8_t { ok, full, io_error };

enum class SpoolRead : uint8_t {
  ok,             // the oldest segment, read in full
  empty,          // nothing (left) to replay
  io_error,       // the oldest segment could not be read; it stays, try again later
  newer_version,  // the oldest segment has a header version this reqbus does not know: kept
                  // on disk and skipped from now on; read_oldest() again for the next one
};

// A segment read for replay: its bytes and where its valid records are. Batches are decoded
// one at a time (batch(i)), so replaying a 16 MiB segment holds the file and one batch, not
// every batch decoded at once.
struct SpoolSegment {
  uint64_t id = 0;
  std::string data;                                // the segment file
  std::vector<spool_format::RecordSpan> records;  // valid records, in append order
  uint64_t corrupt_records = 0;                    // torn tail, bad CRC, undecodable payload
  size_t size() const { return records.size(); }
  std::vector<Message> batch(size_t i) const {
    std::vector<Message> out;
    spool_format::decode_record(data, records.at(i), out);  // validated by read_oldest()
    return out;
  }
};

struct SpoolStats {
  uint64_t segments = 0;         // segment files on disk now (skipped ones included)
  uint64_t bytes = 0;            // their total size
  uint64_t appended_batches = 0; // appends that returned ok (this process)
  uint64_t corrupt_records = 0;  // records skipped by read_oldest() (this process)
  uint64_t removed_segments = 0;
  uint64_t skipped_segments = 0;    // segments of a newer version, kept but not replayed
  uint64_t dead_letter_bytes = 0;   // size of the dead-letter file
  uint64_t dead_letter_cut_bytes = 0;  // torn tail cut off the dead-letter file at start-up
};

// The spool's claim on its directory (see "One owner" above).
class SpoolLock {
 public:
  // Creates `dir` if needed, then locks "<dir>/LOCK" and writes this process's pid into it.
  // Throws Error{storage} when the directory or the lock file cannot be created, or when
  // another open lock (another Spool, here or in a live process) holds it.
  explicit SpoolLock(const std::string& dir);
  ~SpoolLock();
  SpoolLock(const SpoolLock&) = delete;
  SpoolLock& operator=(const SpoolLock&) = delete;

  // Throws the Error a SpoolLock on `dir` would throw now because another holds it; otherwise
  // returns and creates nothing. For a caller that must report a taken spool before it starts
  // anything else (a node, before its bus); only the held lock protects the directory.
  static void throw_if_held(const std::string& dir);
  // Releases the lock now rather than at destruction (the file stays). Idempotent.
  void release();

 private:
  int fd_ = -1;
};

class Spool {
 public:
  // Locks the directory (creating it if needed; see SpoolLock) and indexes the segments
  // already there. Throws Error{storage} when the directory cannot be created or read, or when
  // another Spool holds it.
  explicit Spool(SpoolOptions options);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends one batch as one record and syncs it. On failure `error` (if given) says why.
  [[nodiscard]] SpoolAppend append(const std::vector<Message>& batch, std::string* error = nullptr);

  // Reads the oldest segment not skipped into `out`, in full. If it is the segment being
  // appended to, it is sealed first (the next append starts a new one), so a segment once read
  // never changes. On io_error and newer_version `error` (if given) says why.
  [[nodiscard]] SpoolRead read_oldest(SpoolSegment& out, std::string* error = nullptr);
  // Deletes a segment returned by read_oldest() once all its batches are delivered.
  void remove(uint64_t segment_id);
  // Appends record `index` of `segment` (as read) to the dead-letter file, synced like an
  // append. full past max_bytes; io_error with `error` set when it cannot be written.
  [[nodiscard]] SpoolAppend dead_letter(const SpoolSegment& segment, size_t index,
                                        std::string* error = nullptr);
  std::string dead_letter_path() const;

  // Seals the segment being appended to and releases the directory, so that another Spool
  // (here or in another process) may open it while this object still lives: for an owner that
  // has finished with it (a closed Batcher). Afterwards appends and dead letters fail with
  // io_error ("spool: closed"), reads find nothing, remove() does nothing; stats() keeps the
  // figures of the close. Idempotent; also done by the destructor.
  void close();

  // True when no segment is left to replay (skipped ones do not count).
  bool empty() const;
  SpoolStats stats() const;
  const std::string& dir() const noexcept { return options_.dir; }
  // Path of a segment file (for tests and tools).
  std::string segment_path(uint64_t segment_id) const;

 private:
  struct Segment {
    uint64_t id = 0;
    uint64_t bytes = 0;
    bool skipped = false;  // a newer version's segment: kept, never read again
  };
  bool open_new_segment_locked(std::string* error);
  void seal_locked();
  bool write_record(int fd, const std::string& record);
  void skip_locked(uint64_t segment_id);
  uint64_t trim_dead_letter_file();  // constructor only: returns the size kept

  const SpoolOptions options_;
  SpoolLock lock_;  // before every file is touched; released after the last is closed
  mutable std::mutex mu_;
  std::vector<Segment> segments_;  // guarded by mu_; sorted by id, oldest first
  uint64_t total_bytes_ = 0;       // guarded by mu_; segments only
  uint64_t dead_bytes_ = 0;        // guarded by mu_; the dead-letter file
  uint64_t next_id_ = 1;           // guarded by mu_
  int active_fd_ = -1;             // guarded by mu_; segments_.back() when >= 0
  bool closed_ = false;            // guarded by mu_; close() was called
  uint64_t appended_ = 0;          // guarded by mu_
  uint64_t corrupt_ = 0;           // guarded by mu_
  uint64_t removed_ = 0;           // guarded by mu_
  uint64_t dead_letter_cut_bytes_ = 0;  // set by the constructor only
};

}  // namespace reqbus::detail
