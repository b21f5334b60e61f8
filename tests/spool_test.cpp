// Spool: the Batcher's on-disk journal, against real files in a temporary directory.
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "analytics/spool.hpp"
#include "analytics/spool_format.hpp"
#include "reqbus/error.hpp"
#include "reqbus/uuid.hpp"
#include "tests/support/temp_dir.hpp"

using namespace reqbus;
using namespace reqbus::detail;
namespace fs = std::filesystem;

namespace {

Message request(int n, size_t path_bytes = 8) {
  Message m;
  m.kind = MessageKind::request_sent;
  m.request.request_id = uuid_v7();
  m.request.method = "GET";
  m.request.path = "/p" + std::to_string(n) + std::string(path_bytes, 'x');
  m.request.status_code = 200;
  m.request.duration_ms = n;
  m.request.inserted_at = 1'700'000'000'000'000 + n;
  m.request.node_id = "node-a";
  m.request.seq = static_cast<uint64_t>(n);
  return m;
}

Message track(int n) {
  Message m;
  m.kind = MessageKind::track;
  m.analytics.type = AnalyticsType::track;
  m.analytics.message_id = uuid_v7();
  m.analytics.user_id = "u" + std::to_string(n);
  m.analytics.event = "clicked";
  m.analytics.properties_json = R"({"n":)" + std::to_string(n) + "}";
  m.analytics.timestamp = 1'700'000'000'000'000 + n;
  return m;
}

std::vector<Message> batch_of(int first, int count, size_t path_bytes = 8) {
  std::vector<Message> out;
  for (int i = first; i < first + count; ++i) out.push_back(request(i, path_bytes));
  return out;
}

bool same(const std::vector<Message>& a, const std::vector<Message>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind || !(a[i].request == b[i].request) || !(a[i].analytics == b[i].analytics))
      return false;
  }
  return true;
}

std::vector<fs::path> segment_files(const test::TempDir& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir.path() / "spool"))
    if (e.path().extension() == ".seg") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// read_oldest() for the tests that expect a readable segment or none.
std::optional<SpoolSegment> read_oldest(Spool& spool) {
  SpoolSegment segment;
  std::string error;
  const SpoolRead read = spool.read_oldest(segment, &error);
  BOOST_REQUIRE_MESSAGE(read == SpoolRead::ok || read == SpoolRead::empty, error);
  if (read == SpoolRead::empty) return std::nullopt;
  return segment;
}

SpoolOptions options_for(const test::TempDir& dir) {
  SpoolOptions o;
  o.dir = dir.sub("spool");
  return o;
}

// Every valid record of a segment, decoded in order; returns the corrupt count.
uint64_t parse_segment(std::string_view data, std::vector<std::vector<Message>>& batches) {
  std::vector<spool_format::RecordSpan> records;
  const uint64_t corrupt = spool_format::index_segment(data, records);
  for (const spool_format::RecordSpan& span : records) {
    batches.emplace_back();
    BOOST_REQUIRE(spool_format::decode_record(data, span, batches.back()));
  }
  return corrupt;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(spool_format_suite)

BOOST_AUTO_TEST_CASE(crc32_matches_the_standard_check_value) {
  const std::string check = "123456789";
  BOOST_TEST(spool_format::crc32(check.data(), check.size()) == 0xCBF43926u);
  BOOST_TEST(spool_format::crc32("", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(record_round_trips_both_message_kinds) {
  std::vector<Message> batch = {request(1), track(2), request(3)};
  std::string data = spool_format::segment_header();
  spool_format::append_record(data, batch);
  std::vector<std::vector<Message>> out;
  BOOST_TEST(parse_segment(data, out) == 0u);
  BOOST_REQUIRE(out.size() == 1u);
  BOOST_TEST(same(out[0], batch));
}

BOOST_AUTO_TEST_CASE(unknown_header_is_one_corrupt_record) {
  std::string data = "NOTASPOOL---and some bytes";
  std::vector<std::vector<Message>> out;
  BOOST_TEST(parse_segment(data, out) == 1u);
  BOOST_TEST(out.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(spool_suite)

BOOST_AUTO_TEST_CASE(appends_read_back_in_order_and_remove_deletes_the_file) {
  test::TempDir dir("reqbus-spool");
  Spool spool(options_for(dir));
  BOOST_TEST(spool.empty());
  BOOST_TEST(!read_oldest(spool).has_value());
  const auto b1 = batch_of(0, 3), b2 = batch_of(3, 1), b3 = batch_of(4, 5);
  for (const auto* b : {&b1, &b2, &b3}) BOOST_REQUIRE(spool.append(*b) == SpoolAppend::ok);
  BOOST_TEST(spool.stats().appended_batches == 3u);
  auto segment = read_oldest(spool);
  BOOST_REQUIRE(segment.has_value());
  BOOST_TEST(segment->corrupt_records == 0u);
  BOOST_REQUIRE(segment->size() == 3u);
  BOOST_TEST(same(segment->batch(0), b1));
  BOOST_TEST(same(segment->batch(1), b2));
  BOOST_TEST(same(segment->batch(2), b3));
  BOOST_TEST(fs::exists(spool.segment_path(segment->id)));
  spool.remove(segment->id);
  BOOST_TEST(!fs::exists(spool.segment_path(segment->id)));
  BOOST_TEST(spool.empty());
  BOOST_TEST(spool.stats().bytes == 0u);
}

BOOST_AUTO_TEST_CASE(reading_the_active_segment_seals_it) {
  test::TempDir dir("reqbus-spool");
  Spool spool(options_for(dir));
  BOOST_REQUIRE(spool.append(batch_of(0, 2)) == SpoolAppend::ok);
  auto first = read_oldest(spool);
  BOOST_REQUIRE(first.has_value());
  // Appends after the read go to a new segment, so the one being replayed never changes.
  BOOST_REQUIRE(spool.append(batch_of(2, 2)) == SpoolAppend::ok);
  BOOST_TEST(spool.stats().segments == 2u);
  spool.remove(first->id);
  auto second = read_oldest(spool);
  BOOST_REQUIRE(second.has_value());
  BOOST_TEST(second->id > first->id);
  BOOST_REQUIRE(second->size() == 1u);
  BOOST_TEST(second->batch(0)[0].request.seq == 2u);
}

BOOST_AUTO_TEST_CASE(a_new_spool_on_the_same_dir_sees_old_segments_and_starts_a_new_one) {
  test::TempDir dir("reqbus-spool");
  const auto b1 = batch_of(0, 4);
  {
    Spool spool(options_for(dir));
    BOOST_REQUIRE(spool.append(b1) == SpoolAppend::ok);
  }
  Spool spool(options_for(dir));
  BOOST_TEST(spool.stats().segments == 1u);
  BOOST_TEST(spool.stats().bytes == fs::file_size(segment_files(dir).at(0)));
  BOOST_REQUIRE(spool.append(batch_of(4, 1)) == SpoolAppend::ok);
  BOOST_TEST(segment_files(dir).size() == 2u);  // never appends to the last process's file
  auto oldest = read_oldest(spool);
  BOOST_REQUIRE(oldest.has_value());
  BOOST_REQUIRE(oldest->size() == 1u);
  BOOST_TEST(same(oldest->batch(0), b1));
}

BOOST_AUTO_TEST_CASE(segments_rotate_at_the_size_limit_and_keep_order) {
  test::TempDir dir("reqbus-spool");
  SpoolOptions o = options_for(dir);
  o.segment_bytes = 4096;
  Spool spool(o);
  for (int i = 0; i < 12; ++i) BOOST_REQUIRE(spool.append(batch_of(i, 1, 900)) == SpoolAppend::ok);
  const auto files = segment_files(dir);
  BOOST_TEST(files.size() >= 3u);
  for (const auto& f : files) BOOST_TEST(fs::file_size(f) <= 4096u);
  int next = 0;
  while (auto segment = read_oldest(spool)) {
    for (size_t i = 0; i < segment->size(); ++i)
      BOOST_TEST(segment->batch(i).at(0).request.seq == static_cast<uint64_t>(next++));
    spool.remove(segment->id);
  }
  BOOST_TEST(next == 12);
}

BOOST_AUTO_TEST_CASE(past_max_bytes_an_append_is_refused_with_a_reason) {
  test::TempDir dir("reqbus-spool");
  SpoolOptions o = options_for(dir);
  o.segment_bytes = 4096;
  o.max_bytes = 8192;
  Spool spool(o);
  int ok = 0;
  std::string error;
  SpoolAppend result = SpoolAppend::ok;
  for (int i = 0; i < 20 && result == SpoolAppend::ok; ++i) {
    result = spool.append(batch_of(i, 1, 900), &error);
    if (result == SpoolAppend::ok) ++ok;
  }
  BOOST_TEST((result == SpoolAppend::full));
  BOOST_TEST(error.find("max_bytes") != std::string::npos);
  BOOST_TEST(ok >= 6);
  BOOST_TEST(spool.stats().bytes <= 8192u);
  // Freeing space makes room again.
  auto oldest = read_oldest(spool);
  spool.remove(oldest->id);
  BOOST_TEST((spool.append(batch_of(99, 1, 900)) == SpoolAppend::ok));
}

BOOST_AUTO_TEST_CASE(a_torn_tail_is_counted_and_the_records_before_it_survive) {
  test::TempDir dir("reqbus-spool");
  {
    Spool spool(options_for(dir));
    for (int i = 0; i < 3; ++i) BOOST_REQUIRE(spool.append(batch_of(i * 2, 2)) == SpoolAppend::ok);
  }
  const fs::path file = segment_files(dir).at(0);
  fs::resize_file(file, fs::file_size(file) - 5);  // a crash in the middle of the last append
  Spool spool(options_for(dir));
  auto segment = read_oldest(spool);
  BOOST_REQUIRE(segment.has_value());
  BOOST_TEST(segment->corrupt_records == 1u);
  BOOST_REQUIRE(segment->size() == 2u);
  BOOST_TEST(segment->batch(1)[1].request.seq == 3u);
  BOOST_TEST(spool.stats().corrupt_records == 1u);
}

BOOST_AUTO_TEST_CASE(a_torn_record_header_is_counted) {
  test::TempDir dir("reqbus-spool");
  {
    Spool spool(options_for(dir));
    BOOST_REQUIRE(spool.append(batch_of(0, 2)) == SpoolAppend::ok);
  }
  const fs::path file = segment_files(dir).at(0);
  write_file(file, read_file(file) + std::string("\x10\x00\x00", 3));  // 3 bytes of a header
  Spool spool(options_for(dir));
  auto segment = read_oldest(spool);
  BOOST_TEST(segment->corrupt_records == 1u);
  BOOST_TEST(segment->size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_bad_crc_skips_only_that_record) {
  test::TempDir dir("reqbus-spool");
  std::vector<std::vector<Message>> written;
  {
    Spool spool(options_for(dir));
    for (int i = 0; i < 3; ++i) {
      written.push_back(batch_of(i * 10, 3));
      BOOST_REQUIRE(spool.append(written.back()) == SpoolAppend::ok);
    }
  }
  const fs::path file = segment_files(dir).at(0);
  std::string data = read_file(file);
  // Find the second record: header, then first record's [len][crc][payload].
  const size_t first_len = spool_format::get_u32(data.data() + spool_format::kHeaderBytes);
  const size_t second = spool_format::kHeaderBytes + spool_format::kRecordHeaderBytes + first_len;
  data[second + spool_format::kRecordHeaderBytes + 20] ^= 0x5A;  // flip payload bits
  write_file(file, data);
  Spool spool(options_for(dir));
  auto segment = read_oldest(spool);
  BOOST_REQUIRE(segment.has_value());
  BOOST_TEST(segment->corrupt_records == 1u);
  BOOST_REQUIRE(segment->size() == 2u);
  BOOST_TEST(same(segment->batch(0), written[0]));
  BOOST_TEST(same(segment->batch(1), written[2]));
}

// A segment that cannot be read (a directory where the file was: open() works, read() fails,
// as root too) is reported and kept, not read as empty and deleted; readable again, it is read.
BOOST_AUTO_TEST_CASE(an_unreadable_segment_is_an_error_and_stays) {
  test::TempDir dir("reqbus-spool");
  Spool spool(options_for(dir));
  const auto written = batch_of(0, 3);
  BOOST_REQUIRE(spool.append(written) == SpoolAppend::ok);
  const fs::path file = segment_files(dir).at(0), aside = file.string() + ".aside";
  fs::rename(file, aside);
  fs::create_directory(file);
  SpoolSegment segment;
  std::string error;
  BOOST_TEST((spool.read_oldest(segment, &error) == SpoolRead::io_error));
  BOOST_TEST(error.find(file.string()) != std::string::npos);
  BOOST_TEST(!spool.empty());
  BOOST_TEST(spool.stats().segments == 1u);
  BOOST_TEST(spool.stats().corrupt_records == 0u);
  fs::remove(file);
  fs::rename(aside, file);
  auto again = read_oldest(spool);
  BOOST_REQUIRE(again.has_value());
  BOOST_REQUIRE(again->size() == 1u);
  BOOST_TEST(same(again->batch(0), written));
}

// Only a file of size 0 is an empty segment (created, never written): read, no records, no
// corruption, removable.
BOOST_AUTO_TEST_CASE(an_empty_segment_file_reads_as_empty) {
  test::TempDir dir("reqbus-spool");
  fs::create_directories(dir.path() / "spool");
  write_file(dir.path() / "spool" / "00000000000000000007.seg", "");
  Spool spool(options_for(dir));
  auto segment = read_oldest(spool);
  BOOST_REQUIRE(segment.has_value());
  BOOST_TEST(segment->size() == 0u);
  BOOST_TEST(segment->corrupt_records == 0u);
  spool.remove(segment->id);
  BOOST_TEST(spool.empty());
}

// A segment written by a newer reqbus is kept (after a rollback the newer binary replays it):
// reported once, then skipped; the next segment is read.
BOOST_AUTO_TEST_CASE(a_segment_of_a_newer_version_is_kept_and_skipped) {
  test::TempDir dir("reqbus-spool");
  fs::create_directories(dir.path() / "spool");
  std::string newer(spool_format::kMagic, sizeof spool_format::kMagic);
  spool_format::put_u32(newer, spool_format::kVersion + 1);
  newer += "a layout from the future";
  const fs::path newer_file = dir.path() / "spool" / "00000000000000000001.seg";
  write_file(newer_file, newer);
  Spool spool(options_for(dir));
  const auto written = batch_of(0, 2);
  BOOST_REQUIRE(spool.append(written) == SpoolAppend::ok);  // segment 2
  SpoolSegment segment;
  std::string error;
  BOOST_TEST((spool.read_oldest(segment, &error) == SpoolRead::newer_version));
  BOOST_TEST(error.find("version " + std::to_string(spool_format::kVersion + 1)) != std::string::npos);
  auto next = read_oldest(spool);
  BOOST_REQUIRE(next.has_value());
  BOOST_TEST(next->id == 2u);
  BOOST_TEST(same(next->batch(0), written));
  spool.remove(next->id);
  BOOST_TEST(spool.empty());  // nothing left to replay
  BOOST_TEST(spool.stats().segments == 1u);
  BOOST_TEST(spool.stats().skipped_segments == 1u);
  BOOST_TEST(spool.stats().corrupt_records == 0u);
  BOOST_TEST(read_file(newer_file) == newer);
}

// An append whose record reached the file but failed after (fdatasync failing, or a short write
// at ENOSPC) is refused — the caller counts it as dropped — so none of it may stay in the file:
// neither a whole record replayed later (stored + dropped > accepted) nor a torn tail counted
// again as corrupt.
BOOST_AUTO_TEST_CASE(a_failed_append_leaves_nothing_of_its_record) {
  for (const bool short_write : {false, true}) {
    BOOST_TEST_CONTEXT((short_write ? "short write at ENOSPC" : "fdatasync fails")) {
      test::TempDir dir("reqbus-spool");
      bool fail = false;
      SpoolOptions o = options_for(dir);
      o.write_fn = [&](int fd, const void* data, size_t size) -> ssize_t {
        if (!(fail && short_write)) return ::write(fd, data, size);
        fail = false;
        const ssize_t n = ::write(fd, data, size / 2);  // half of it reaches the file
        if (n >= 0) errno = ENOSPC;
        return n >= 0 ? -1 : n;
      };
      o.sync_fn = [&](int fd) {
        if (!(fail && !short_write)) return ::fdatasync(fd);
        fail = false;
        errno = EIO;
        return -1;
      };
      Spool spool(o);
      const auto kept = batch_of(0, 2);
      BOOST_REQUIRE(spool.append(kept) == SpoolAppend::ok);
      fail = true;
      std::string error;
      BOOST_TEST((spool.append(batch_of(2, 2), &error) == SpoolAppend::io_error));
      BOOST_TEST(error.find(short_write ? "No space left" : "Input/output error") != std::string::npos);
      const fs::path file = segment_files(dir).at(0);
      BOOST_TEST(spool.stats().bytes == fs::file_size(file));
      const auto later = batch_of(4, 1);
      BOOST_REQUIRE(spool.append(later) == SpoolAppend::ok);  // into a new segment
      std::vector<std::vector<Message>> replayed;
      uint64_t corrupt = 0;
      while (auto segment = read_oldest(spool)) {
        corrupt += segment->corrupt_records;
        for (size_t i = 0; i < segment->size(); ++i) replayed.push_back(segment->batch(i));
        spool.remove(segment->id);
      }
      BOOST_TEST(corrupt == 0u);
      BOOST_REQUIRE(replayed.size() == 2u);
      BOOST_TEST(same(replayed[0], kept));
      BOOST_TEST(same(replayed[1], later));
    }
  }
}

// A record moved to the dead-letter file keeps its bytes, in the segment layout; the file counts
// toward max_bytes but is not a segment (never replayed by itself).
BOOST_AUTO_TEST_CASE(dead_letters_keep_the_record_in_the_segment_layout) {
  test::TempDir dir("reqbus-spool");
  const auto first = batch_of(0, 2), second = batch_of(2, 3);
  std::string dead;
  {
    Spool spool(options_for(dir));
    BOOST_REQUIRE(spool.append(first) == SpoolAppend::ok);
    BOOST_REQUIRE(spool.append(second) == SpoolAppend::ok);
    auto segment = read_oldest(spool);
    BOOST_REQUIRE(segment.has_value());
    BOOST_REQUIRE((spool.dead_letter(*segment, 1) == SpoolAppend::ok));
    BOOST_REQUIRE((spool.dead_letter(*segment, 0) == SpoolAppend::ok));
    spool.remove(segment->id);
    BOOST_TEST(spool.empty());
    dead = read_file(spool.dead_letter_path());
    BOOST_TEST(spool.stats().dead_letter_bytes == dead.size());
    std::vector<std::vector<Message>> batches;
    BOOST_TEST(parse_segment(dead, batches) == 0u);
    BOOST_REQUIRE(batches.size() == 2u);
    BOOST_TEST(same(batches[0], second));
    BOOST_TEST(same(batches[1], first));
  }
  Spool reopened(options_for(dir));
  BOOST_TEST(reopened.empty());
  BOOST_TEST(reopened.stats().dead_letter_bytes == dead.size());
}

// The dead-letter file outlives the process that appends to it: a record torn by a crash
// mid-append (or a header cut short) must not misframe the records a later process appends.
BOOST_AUTO_TEST_CASE(a_torn_dead_letter_tail_is_cut_before_the_next_append) {
  for (const bool cut_header : {false, true}) {
    BOOST_TEST_CONTEXT((cut_header ? "the header is cut" : "a record is torn")) {
      test::TempDir dir("reqbus-spool");
      const auto first = batch_of(0, 2), second = batch_of(2, 3);
      std::string torn_record;
      {
        Spool spool(options_for(dir));
        BOOST_REQUIRE(spool.append(first) == SpoolAppend::ok);
        BOOST_REQUIRE(spool.append(second) == SpoolAppend::ok);
        auto segment = read_oldest(spool);
        BOOST_REQUIRE(segment.has_value());
        if (!cut_header) BOOST_REQUIRE((spool.dead_letter(*segment, 0) == SpoolAppend::ok));
        // The crash: part of record 1 (or of the header) reaches the file, the process dies.
        const spool_format::RecordSpan span = segment->records.at(1);
        torn_record = segment->data.substr(span.offset - spool_format::kRecordHeaderBytes,
                                           spool_format::kRecordHeaderBytes + span.size / 2);
      }
      const fs::path dead = dir.path() / "spool" / "dead-letter.dlq";
      const std::string kept = cut_header ? std::string() : read_file(dead);
      write_file(dead, cut_header ? spool_format::segment_header().substr(0, 7) : kept + torn_record);

      Spool spool(options_for(dir));
      BOOST_TEST(spool.stats().dead_letter_bytes == kept.size());
      BOOST_TEST(spool.stats().dead_letter_cut_bytes == (cut_header ? 7u : torn_record.size()));
      auto segment = read_oldest(spool);
      BOOST_REQUIRE(segment.has_value());
      BOOST_REQUIRE((spool.dead_letter(*segment, 1) == SpoolAppend::ok));
      std::vector<std::vector<Message>> batches;
      const std::string data = read_file(dead);
      BOOST_TEST(spool.stats().dead_letter_bytes == data.size());
      BOOST_TEST(parse_segment(data, batches) == 0u);
      BOOST_TEST(batches.size() == (cut_header ? 1u : 2u));
      if (batches.size() != (cut_header ? 1u : 2u)) continue;
      if (!cut_header) BOOST_TEST(same(batches[0], first));
      BOOST_TEST(same(batches.back(), second));
    }
  }
}

// What a second Spool on a held directory is told: Error{storage} naming the directory and the
// holder's pid. Empty when the Spool opened.
std::string refusal_of(const SpoolOptions& o) {
  try {
    Spool spool(o);
    return "";
  } catch (const Error& e) {
    BOOST_TEST((e.code() == ErrorCode::storage));
    return e.what();
  }
}

// Two owners would replay and delete each other's segments: the directory has one.
BOOST_AUTO_TEST_CASE(a_second_spool_on_a_held_directory_is_refused_until_the_first_closes) {
  test::TempDir dir("reqbus-spool");
  const SpoolOptions o = options_for(dir);
  {
    Spool first(o);
    BOOST_REQUIRE(first.append(batch_of(0, 2)) == SpoolAppend::ok);
    const std::string why = refusal_of(o);
    BOOST_TEST(why.find("spool: " + o.dir + " is in use by this process (pid " + std::to_string(::getpid()) + ":") == 0u,
               why);
    BOOST_CHECK_THROW(SpoolLock::throw_if_held(o.dir), Error);
    BOOST_TEST(first.stats().segments == 1u);  // the refused one touched nothing
    BOOST_TEST((first.append(batch_of(2, 1)) == SpoolAppend::ok));
  }
  SpoolLock::throw_if_held(o.dir);  // released with the first Spool
  Spool again(o);
  BOOST_TEST(again.stats().segments == 1u);
  // close() releases it while the object lives; the closed spool appends, reads and deletes
  // nothing more, and keeps its figures.
  again.close();
  SpoolLock::throw_if_held(o.dir);
  Spool third(o);
  std::string error;
  BOOST_TEST((again.append(batch_of(3, 1), &error) == SpoolAppend::io_error));
  BOOST_TEST(error == "spool: closed");
  SpoolSegment seg;
  BOOST_TEST((again.read_oldest(seg) == SpoolRead::empty));
  BOOST_TEST(again.stats().segments == 1u);
  BOOST_TEST((third.read_oldest(seg) == SpoolRead::ok));
  BOOST_TEST(seg.records.size() == 2u);
  // The check creates nothing where there is no spool yet.
  SpoolLock::throw_if_held(dir.sub("none"));
  BOOST_TEST(!fs::exists(dir.sub("none")));
}

// A lock lives as long as its process: a live one refuses us, naming its pid; the file a dead
// one leaves behind (a crashed node: no destructor ran) blocks nobody.
BOOST_AUTO_TEST_CASE(a_lock_held_by_another_process_refuses_and_dies_with_it) {
  test::TempDir dir("reqbus-spool");
  const SpoolOptions o = options_for(dir);
  int locked[2], release[2];
  BOOST_REQUIRE(::pipe(locked) == 0 && ::pipe(release) == 0);
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {  // holds the spool, says so, waits to be released, dies without closing it
    ::close(locked[0]);
    ::close(release[1]);
    try {
      Spool spool(o);
      if (::write(locked[1], "L", 1) != 1) ::_exit(2);
      char c;
      while (::read(release[0], &c, 1) < 0 && errno == EINTR) {
      }
      ::_exit(0);  // as a crash would: the Spool's destructor never runs
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(locked[1]);
  ::close(release[0]);
  char c = 0;
  BOOST_REQUIRE(::read(locked[0], &c, 1) == 1);
  const std::string why = refusal_of(o);
  BOOST_TEST(why.find("spool: " + o.dir + " is in use by another process (pid " + std::to_string(child) + ")") == 0u,
             why);
  BOOST_TEST(why.find(o.dir + "/LOCK") != std::string::npos, why);
  ::close(release[1]);  // the child dies
  ::close(locked[0]);
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  BOOST_TEST(read_file(dir.path() / "spool" / "LOCK") == std::to_string(child) + "\n");  // left behind
  BOOST_TEST(refusal_of(o) == "");
  Spool spool(o);
  BOOST_TEST(read_file(dir.path() / "spool" / "LOCK") == std::to_string(::getpid()) + "\n");
}

BOOST_AUTO_TEST_CASE(bad_options_name_the_field) {
  test::TempDir dir("reqbus-spool");
  SpoolOptions o = options_for(dir);
  o.segment_bytes = 10;
  try {
    Spool spool(o);
    BOOST_FAIL("expected Error");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == ErrorCode::invalid_argument));
    BOOST_TEST(std::string(e.what()).find("segment_bytes") != std::string::npos);
  }
}

BOOST_AUTO_TEST_SUITE_END()
