// The record codec: round trips, older and newer versions, each decode error, validation.
#include <boost/test/unit_test.hpp>

#include <msgpack.hpp>

#include <cctype>

#include "reqbus/codec.hpp"
#include "reqbus/uuid.hpp"
#include "support/bus_fixtures.hpp"

using namespace reqbus;
using codec::DecodeError;

namespace {

RequestLog full_log() {
  RequestLog r;
  r.request_id = uuid_v7();
  r.method = "PATCH";
  r.path = "/caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac?q=\xf0\x9f\x98\x80";  // café/日本?q=😀
  r.status_code = 503;
  r.duration_ms = 12.375;
  r.user_agent = "Mozilla/5.0 (\xe2\x9c\x93)";
  r.remote_ip = "2001:db8::1";
  r.referer = "https://example.org/\xc3\xa9";
  r.device_type = "mobile";
  r.session_id = "s-123";
  r.session_page_views = 4'000'000'000u;
  r.inserted_at = 1'712'345'678'901'234;
  r.node_id = "node-\xc3\xa9";
  r.seq = 0xFFFF'FFFF'FFFFull;
  return r;
}

std::optional<DecodeError> decode(const std::string& bytes, Message& m) {
  return codec::decode(bytes.data(), bytes.size(), m);
}

std::string packed(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& write) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  write(p);
  return std::string(buf.data(), buf.size());
}

// A v2 request record of the right length whose status_code is written by `status`; the other
// fields are placeholders (nil) past it.
std::string request_with_status(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& status) {
  return packed([&](auto& p) {
    p.pack_array(16);
    p.pack(1);
    p.pack(2);
    p.pack(std::string("id"));
    p.pack(std::string("GET"));
    p.pack(std::string("/"));
    status(p);
    for (int i = 0; i < 10; ++i) p.pack_nil();
  });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(codec_round_trip)

BOOST_AUTO_TEST_CASE(request_log_all_fields_unicode) {
  const RequestLog r = full_log();
  std::string buf;
  codec::append(buf, r);
  Message m;
  BOOST_REQUIRE(!decode(buf, m).has_value());
  BOOST_TEST((m.kind == MessageKind::request_sent));
  BOOST_TEST((m.request == r));
}

BOOST_AUTO_TEST_CASE(request_log_empty_optional_strings) {
  RequestLog r;
  r.method = "GET";
  r.path = "/";
  r.status_code = 100;
  std::string buf;
  codec::append(buf, r);
  Message m;
  BOOST_REQUIRE(!decode(buf, m).has_value());
  BOOST_TEST((m.request == r));
}

BOOST_AUTO_TEST_CASE(analytics_events_of_each_type) {
  for (AnalyticsType type : {AnalyticsType::identify, AnalyticsType::group, AnalyticsType::track}) {
    AnalyticsEvent e;
    e.type = type;
    e.message_id = uuid_v7();
    e.user_id = "us\xc3\xa9r";
    e.timestamp = 1'700'000'000'000'001;
    e.event = type == AnalyticsType::track ? "Signed Up \xe2\x9c\x93" : "";
    e.email = type == AnalyticsType::identify ? "a@example.org" : "";
    e.timezone = "Europe/Paris";
    e.account_id = type == AnalyticsType::group ? "acct-1" : "";
    e.name = "Acme";
    e.traits_json = R"({"plan":"pro","n":1})";
    e.properties_json = "";
    e.node_id = "n";
    e.seq = 99;
    std::string buf;
    codec::append(buf, e);
    Message m;
    BOOST_REQUIRE(!decode(buf, m).has_value());
    BOOST_TEST(int(m.kind) == int(type));
    BOOST_TEST((m.analytics == e));
    // The Message form writes the same bytes.
    Message wrapped;
    wrapped.kind = MessageKind(int(type));
    wrapped.analytics = e;
    std::string again;
    codec::append(again, wrapped);
    BOOST_TEST(again == buf);
  }
}

BOOST_AUTO_TEST_CASE(several_records_append_back_to_back) {
  std::string buf;
  codec::append(buf, full_log());
  const size_t first = buf.size();
  codec::append(buf, full_log());
  Message m;
  BOOST_TEST(!codec::decode(buf.data(), first, m).has_value());
  // decode() wants exactly one record: two are trailing bytes.
  BOOST_TEST(codec::decode(buf.data(), buf.size(), m) == DecodeError::wrong_shape);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(codec_versions)

BOOST_AUTO_TEST_CASE(an_older_v1_record_decodes_without_node_id_and_seq) {
  const RequestLog r = full_log();
  std::string buf;
  codec::append_v1(buf, r);
  Message m;
  BOOST_REQUIRE(!decode(buf, m).has_value());
  RequestLog expected = r;
  expected.node_id.clear();
  expected.seq = 0;
  BOOST_TEST((m.request == expected));
  // A v1 record is the v2 layout minus its last two fields.
  std::string v2;
  codec::append(v2, r);
  BOOST_TEST(buf.size() < v2.size());
}

BOOST_AUTO_TEST_CASE(a_hand_written_v2_record_follows_the_documented_layout) {
  // [kind=1, version=2, request_id, method, path, status, duration_ms, user_agent, remote_ip,
  //  referer, device_type, session_id, session_page_views, inserted_at, node_id, seq]
  const std::string bytes = packed([](auto& p) {
    p.pack_array(16);
    p.pack(1);
    p.pack(2);
    p.pack(std::string("id"));
    p.pack(std::string("GET"));
    p.pack(std::string("/x"));
    p.pack(404);
    p.pack(3);  // an integer duration is accepted
    p.pack_nil();  // nil for an absent string is accepted
    p.pack(std::string("10.0.0.1"));
    p.pack(std::string(""));
    p.pack(std::string("bot"));
    p.pack(std::string("s"));
    p.pack(2);
    p.pack(int64_t(1'700'000'000'000'000));
    p.pack(std::string("other-lang"));
    p.pack(uint64_t(7));
  });
  Message m;
  BOOST_REQUIRE(!decode(bytes, m).has_value());
  BOOST_TEST(m.request.status_code == 404);
  BOOST_TEST(m.request.duration_ms == 3.0);
  BOOST_TEST(m.request.user_agent.empty());
  BOOST_TEST(m.request.node_id == "other-lang");
  BOOST_TEST(m.request.seq == 7u);
}

// Other msgpack libraries may write a non-negative integer in a signed encoding (int8..int64):
// it is the same number.
BOOST_AUTO_TEST_CASE(integers_in_signed_encodings_decode) {
  const std::string bytes = packed([](auto& p) {
    p.pack_array(16);
    p.pack_int8(1);
    p.pack_int16(2);
    p.pack(std::string("id"));
    p.pack(std::string("GET"));
    p.pack(std::string("/x"));
    p.pack_int32(503);
    p.pack_float(2.5f);
    p.pack(std::string("ua"));
    p.pack(std::string("10.0.0.1"));
    p.pack(std::string(""));
    p.pack(std::string("bot"));
    p.pack(std::string("s"));
    p.pack_int64(3);
    p.pack_int64(1'700'000'000'000'000);
    p.pack(std::string("n"));
    p.pack_int64(9);
  });
  Message m;
  BOOST_REQUIRE(!decode(bytes, m).has_value());
  BOOST_TEST(m.request.status_code == 503);
  BOOST_TEST(m.request.duration_ms == 2.5);
  BOOST_TEST(m.request.session_page_views == 3u);
  BOOST_TEST(m.request.inserted_at == 1'700'000'000'000'000);
  BOOST_TEST(m.request.seq == 9u);
  // ...but a negative number where an unsigned one belongs is no status code.
  const std::string negative_status = request_with_status([](auto& p) { p.pack_int32(-200); });
  BOOST_TEST(decode(negative_status, m) == DecodeError::wrong_shape);
}

// The hot path writes msgpack itself (bus/wire_io.hpp): its bytes must be the ones msgpack-c's
// packer writes for the same values, at every length and integer boundary.
BOOST_AUTO_TEST_CASE(records_are_the_bytes_msgpack_c_writes) {
  const size_t lengths[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
  const uint64_t unsigned_values[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0xFFFFFFFFull, 0x100000000ull,
                                      UINT64_MAX};
  const int64_t signed_values[] = {INT64_MIN, int64_t(INT32_MIN) - 1, INT32_MIN, -32769, -32768, -129, -128,
                                   -33, -32, -1, 0, 127, 128, 65536, 0x100000000ll, INT64_MAX};
  auto reference = [](const RequestLog& r) {
    return packed([&](auto& p) {
      p.pack_array(16);
      p.pack_uint8(uint8_t(MessageKind::request_sent));
      p.pack_uint8(uint8_t(codec::kRequestLogVersion));
      for (const std::string* s : {&r.request_id, &r.method, &r.path}) p.pack(*s);
      p.pack_uint16(r.status_code);
      p.pack_double(r.duration_ms);
      for (const std::string* s : {&r.user_agent, &r.remote_ip, &r.referer, &r.device_type, &r.session_id}) p.pack(*s);
      p.pack_uint32(r.session_page_views);
      p.pack_int64(r.inserted_at);
      p.pack(r.node_id);
      p.pack_uint64(r.seq);
    });
  };
  size_t checked = 0;
  for (size_t i = 0; i < std::size(signed_values); ++i) {
    RequestLog r = full_log();
    const size_t n = lengths[i % std::size(lengths)];
    r.user_agent.assign(n, 'u');
    r.path.assign(lengths[(i + 3) % std::size(lengths)], '/');
    r.referer.assign(lengths[(i + 5) % std::size(lengths)], 'r');
    r.status_code = uint16_t(unsigned_values[i % 8]);
    r.session_page_views = uint32_t(unsigned_values[i % 10]);
    r.seq = unsigned_values[i % std::size(unsigned_values)];
    r.inserted_at = signed_values[i];
    const double durations[] = {0.0, -0.0, 12.375, 3.0, -2.0, 1e300, 1.0 / 3, -1e-9};  // integral: as integers
    r.duration_ms = durations[i % std::size(durations)];
    std::string ours;
    codec::append(ours, r);
    const std::string theirs = reference(r);
    size_t at = 0;
    while (at < ours.size() && at < theirs.size() && ours[at] == theirs[at]) ++at;
    BOOST_TEST_CONTEXT("case " << i << ": first difference at byte " << at << " of " << theirs.size()) {
      BOOST_TEST((ours == theirs));
    }
    ++checked;
  }
  AnalyticsEvent e;
  e.type = AnalyticsType::track;
  e.message_id = "m";
  e.user_id = std::string(300, 'x');
  e.event = "Signed Up";
  e.properties_json = std::string(70000, 'p');
  e.timestamp = -5;
  e.seq = 1u << 20;
  const std::string expected = packed([&](auto& p) {
    p.pack_array(14);
    p.pack_uint8(uint8_t(e.type));
    p.pack_uint8(uint8_t(codec::kAnalyticsVersion));
    p.pack(e.message_id);
    p.pack(e.user_id);
    p.pack_int64(e.timestamp);
    for (const std::string* s : {&e.event, &e.email, &e.timezone, &e.account_id, &e.name, &e.traits_json,
                                 &e.properties_json, &e.node_id})
      p.pack(*s);
    p.pack_uint64(e.seq);
  });
  std::string ours;
  codec::append(ours, e);
  BOOST_TEST((ours == expected));
  BOOST_TEST(checked == std::size(signed_values));
}

BOOST_AUTO_TEST_CASE(newer_record_versions_are_unknown_version) {
  Message m;
  const std::string request_v3 = packed([](auto& p) {
    p.pack_array(16);
    p.pack(1);
    p.pack(codec::kRequestLogVersion + 1);
    for (int i = 0; i < 14; ++i) p.pack_nil();
  });
  BOOST_TEST(decode(request_v3, m) == DecodeError::unknown_version);
  const std::string track_v2 = packed([](auto& p) {
    p.pack_array(14);
    p.pack(4);
    p.pack(codec::kAnalyticsVersion + 1);
    for (int i = 0; i < 12; ++i) p.pack_nil();
  });
  BOOST_TEST(decode(track_v2, m) == DecodeError::unknown_version);
  const std::string version_zero = packed([](auto& p) {
    p.pack_array(14);
    p.pack(1);
    p.pack(0);
    for (int i = 0; i < 12; ++i) p.pack_nil();
  });
  BOOST_TEST(decode(version_zero, m) == DecodeError::unknown_version);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(codec_errors)

BOOST_AUTO_TEST_CASE(each_decode_error) {
  std::string good;
  codec::append(good, full_log());
  Message m;
  BOOST_TEST(decode(std::string("\xc1", 1), m) == DecodeError::not_msgpack);
  BOOST_TEST(decode("", m) == DecodeError::truncated);
  for (size_t cut : {size_t(1), size_t(3), good.size() / 2, good.size() - 1})
    BOOST_TEST(decode(good.substr(0, cut), m) == DecodeError::truncated, "cut at " << cut);
  BOOST_TEST(decode(packed([](auto& p) { p.pack_map(0); }), m) == DecodeError::wrong_shape);
  BOOST_TEST(decode(packed([](auto& p) { p.pack(std::string("text")); }), m) == DecodeError::wrong_shape);
  BOOST_TEST(decode(packed([](auto& p) { p.pack_array(1); p.pack(1); }), m) == DecodeError::wrong_shape);
  // unknown kind
  BOOST_TEST(decode(packed([](auto& p) { p.pack_array(2); p.pack(9); p.pack(1); }), m) == DecodeError::wrong_shape);
  // right length, wrong type (status as a string)
  BOOST_TEST(decode(request_with_status([](auto& p) { p.pack(std::string("200")); }), m) ==
             DecodeError::wrong_shape);
  // a valid layout with an invalid field
  RequestLog bad = full_log();
  bad.status_code = 999;
  std::string invalid;
  codec::append(invalid, bad);
  BOOST_TEST(decode(invalid, m) == DecodeError::invalid_field);
  bad = full_log();
  bad.method = "GE T";
  invalid.clear();
  codec::append(invalid, bad);
  BOOST_TEST(decode(invalid, m) == DecodeError::invalid_field);
  // deep nesting is refused without recursion trouble
  BOOST_TEST(decode(std::string(100, '\x91') + "\x01", m) == DecodeError::wrong_shape);
  // a huge declared length in a tiny input neither allocates it nor passes
  BOOST_TEST(decode(std::string("\xdd\xff\xff\xff\xff", 5), m) == DecodeError::truncated);
}

BOOST_AUTO_TEST_CASE(error_names) {
  BOOST_TEST(std::string(codec::to_string(DecodeError::not_msgpack)) == "not_msgpack");
  BOOST_TEST(std::string(codec::to_string(DecodeError::invalid_field)) == "invalid_field");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(request_log_validation)

BOOST_AUTO_TEST_CASE(messages_name_the_field) {
  auto starts_with = [](const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; };
  RequestLog r = full_log();
  BOOST_TEST(validate(r).empty());
  r.status_code = 999;
  BOOST_TEST(starts_with(validate(r), "status_code: 999"));
  r.status_code = 99;
  BOOST_TEST(starts_with(validate(r), "status_code"));
  r = full_log();
  r.method = "G(T";
  BOOST_TEST(starts_with(validate(r), "method"));
  r.method = "";
  BOOST_TEST(starts_with(validate(r), "method"));
  // A method is an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~, nothing else.
  const std::string tchars = "!#$%&'*+-.^_`|~";
  for (int c = 0; c < 256; ++c) {
    r.method = std::string("G") + char(c) + "T";
    const bool token = std::isalnum(c) || tchars.find(char(c)) != std::string::npos;
    BOOST_TEST_CONTEXT("byte " << c) { BOOST_TEST(validate(r).empty() == token); }
  }
  r = full_log();
  r.path = "";
  BOOST_TEST(starts_with(validate(r), "path"));
  r = full_log();
  r.duration_ms = -1;
  BOOST_TEST(starts_with(validate(r), "duration_ms"));
  r = full_log();
  r.inserted_at = -5;
  BOOST_TEST(starts_with(validate(r), "inserted_at"));

  // Each limit: at the limit is valid, one byte more names the field.
  struct Limit {
    const char* name;
    std::string RequestLog::*field;
    size_t max;
  };
  const Limit limits[] = {
      {"request_id", &RequestLog::request_id, RequestLogLimits::request_id},
      {"method", &RequestLog::method, RequestLogLimits::method},
      {"path", &RequestLog::path, RequestLogLimits::path},
      {"user_agent", &RequestLog::user_agent, RequestLogLimits::user_agent},
      {"remote_ip", &RequestLog::remote_ip, RequestLogLimits::remote_ip},
      {"referer", &RequestLog::referer, RequestLogLimits::referer},
      {"device_type", &RequestLog::device_type, RequestLogLimits::device_type},
      {"session_id", &RequestLog::session_id, RequestLogLimits::session_id},
      {"node_id", &RequestLog::node_id, RequestLogLimits::node_id},
  };
  for (const auto& l : limits) {
    r = full_log();
    r.*l.field = std::string(l.max, 'A');
    BOOST_TEST(validate(r).empty(), l.name << " at its limit: " << validate(r));
    r.*l.field = std::string(l.max + 1, 'A');
    BOOST_TEST(starts_with(validate(r), std::string(l.name) + ":"), l.name << ": " << validate(r));
  }
}

BOOST_AUTO_TEST_CASE(analytics_messages_name_the_field) {
  AnalyticsEvent e;
  e.type = AnalyticsType::track;
  e.user_id = "u";
  BOOST_TEST(validate(e).rfind("event", 0) == 0);
  e.event = "x";
  BOOST_TEST(validate(e).empty());
  e.user_id = "";
  BOOST_TEST(validate(e).rfind("user_id", 0) == 0);
  e.user_id = "u";
  e.type = AnalyticsType::group;
  BOOST_TEST(validate(e).rfind("account_id", 0) == 0);
  e.account_id = "a";
  e.email = std::string(321, 'e');
  BOOST_TEST(validate(e).rfind("email", 0) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
