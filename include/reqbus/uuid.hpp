#pragma once
// UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits. Time-ordered keys keep
// database indexes appending at their end. Within one thread, ids are strictly increasing.
// Thread-safety: safe from any thread (per-thread generator state).
#include <cstdint>
#include <string>

namespace reqbus {

// Canonical 36-character lowercase text ("0190163d-8694-7e3c-9d2a-2b3f1c5e7a90").
std::string uuid_v7();
// Same, for a given time (milliseconds since the epoch); used by tests and replays.
std::string uuid_v7_at(int64_t unix_ms);
// A UUIDv7 whose random bits are given: the same (unix_ms, bits) always makes the same id.
// Ingest uses it so re-reading the same log line yields the same request_id (idempotent).
std::string uuid_v7_from(int64_t unix_ms, uint64_t bits_hi, uint64_t bits_lo);
// Writes 36 characters to out (no terminator): now, or for a given time (ms since the epoch).
void uuid_v7_into(char out[36]);
void uuid_v7_into(char out[36], int64_t unix_ms);

}  // namespace reqbus
