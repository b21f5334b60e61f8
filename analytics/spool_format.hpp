#pragma once
// The spool's byte layout: segment header, record framing and CRC-32. Kept apart from the
// file handling so tests can build and corrupt records byte by byte.
// Thread-safety: pure functions.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reqbus/message.hpp"

namespace reqbus::detail::spool_format {

inline constexpr char kMagic[8] = {'R', 'Q', 'B', 'S', 'P', 'O', 'O', 'L'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 12;       // magic + u32 version
inline constexpr size_t kRecordHeaderBytes = 8;  // u32 length + u32 crc32
inline constexpr size_t kMaxRecordBytes = size_t{1} << 30;

// CRC-32 (IEEE 802.3, reflected, the one zlib and PNG use). crc32("123456789") == 0xCBF43926.
uint32_t crc32(const char* data, size_t size) noexcept;

void put_u32(std::string& out, uint32_t value);
uint32_t get_u32(const char* p) noexcept;

std::string segment_header();
// The version in a segment header: 0 when `data` does not start with the magic (or is short).
uint32_t header_version(std::string_view data) noexcept;
// Appends one framed record holding `batch` to `out`.
void append_record(std::string& out, const std::vector<Message>& batch);

// Where one valid record's payload lies in a segment's data.
struct RecordSpan {
  size_t offset = 0;
  size_t size = 0;
};

// Checks the records of a whole segment file: the spans of the valid ones go to `records`
// (each payload's CRC matched and it decoded); returns how many records were corrupt (bad
// header counts as one; a torn tail as one; each bad CRC or undecodable payload as one). A bad
// CRC with a plausible length is skipped and reading goes on after it; a length running past
// the end of the data ends the segment. Keeps no decoded batch: see decode_record().
uint64_t index_segment(std::string_view data, std::vector<RecordSpan>& records);
// Decodes the record at `span` (one that index_segment() found valid) into `batch`. Messages are
// not validated (validate()): the bytes are the Batcher's own, CRC-checked, and the Batcher
// never validated what it was given, so a message the sink takes must survive the spool too.
bool decode_record(std::string_view data, RecordSpan span, std::vector<Message>& batch);

}  // namespace reqbus::detail::spool_format
