#pragma once
// NdjsonSink: appends one JSON object per message per line to a file — for piping into jq,
// shipping with a log collector, or loading elsewhere. Field names are the database schema's
// column names (analytics/sinks/schema.hpp), plus "kind" ("request_sent", "identify", "group",
// "track"). traits and properties are kept as JSON *strings* holding the caller's text, so a
// line reads back to exactly the event that was written (see from_ndjson).
//
// Idempotency, honestly: a file is append-only, so this sink cannot look up what is already in
// it. It remembers the ids (request_id / message_id) of the last `dedup_capacity` lines it
// wrote in this process (an LRU) and skips a message whose id it remembers — enough for the
// Batcher's retries and replays within one process. A duplicate older than that window, or
// one replayed after a restart (e.g. from the spool), IS written again: readers that need
// exactly-once must de-duplicate by id (the SQLite and PostgreSQL sinks do so by key).
//
// A batch is written with one write() and, by default, fdatasync'd; if writing fails midway
// the file is truncated back, so a batch is all there or not at all.
// Errors: no space / I/O errors -> retry_later; a path that cannot be opened for writing
// (missing directory, permission, read-only filesystem, a directory) -> failure.
//
// Thread-safety: all methods are safe from any thread; writes are serialised by a mutex.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reqbus/sink.hpp"

namespace reqbus {

struct NdjsonSinkOptions {
  // The file to append to; created (mode 0644) when missing. Required.
  std::string path;
  // fdatasync after each batch, so an ok result means the lines are on disk. Default true;
  // false leaves flushing to the OS (faster; the last batches can be lost on power failure).
  bool fsync_each_batch = true;
  // How many ids the in-process duplicate filter remembers (about 100 bytes each).
  // Default 100000; 0 disables it.
  size_t dedup_capacity = 100'000;
  // The floor a retry_later result asks the caller to wait. Default 100 ms.
  std::chrono::milliseconds retry_after{100};
};

struct NdjsonSinkStats {
  uint64_t batches = 0;                // write() calls that succeeded
  uint64_t lines_written = 0;          // messages appended
  uint64_t duplicates_skipped = 0;     // messages whose id the filter remembered
  uint64_t invalid_utf8_replaced = 0;  // lines whose invalid UTF-8 became U+FFFD (JSON is UTF-8)
  uint64_t retries = 0;                // writes that returned retry_later
  uint64_t errors = 0;                 // writes that returned failure
};

class NdjsonSink final : public Sink {
 public:
  // Validates options (throws reqbus::Error{invalid_argument}); opens the file on first write.
  explicit NdjsonSink(NdjsonSinkOptions options);
  ~NdjsonSink() override;
  NdjsonSink(const NdjsonSink&) = delete;
  NdjsonSink& operator=(const NdjsonSink&) = delete;

  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) override;
  std::string name() const override;  // "ndjson:<path>"

  // Closes the file; the next write opens `path` again (after log rotation).
  void reopen();
  NdjsonSinkStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One message as one JSON object (no trailing newline), as NdjsonSink writes it. Invalid UTF-8
// in a field is replaced by U+FFFD; *replaced (when given) says whether that happened.
std::string to_ndjson(const Message& message, bool* replaced = nullptr);
// Parses a line written by to_ndjson. Throws reqbus::Error{decode} naming the problem.
Message from_ndjson(std::string_view line);

}  // namespace reqbus
