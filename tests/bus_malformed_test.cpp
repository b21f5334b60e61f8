// Bad input from a tcp peer, and sequence gaps. The "peer" is a raw cppzmq PUB socket sending
// hand-built frames (tests/support/bus_fixtures.hpp builds them from docs/WIRE.md); the bus
// under test lists its endpoint in BusOptions.peers. Every bad frame is counted under its
// codec::DecodeError, and a valid frame sent afterwards is still delivered.
#include <boost/test/unit_test.hpp>

#include <numeric>

#include "support/bus_fixtures.hpp"

using namespace reqbus;
using namespace reqbus::test;
using codec::DecodeError;

namespace {

struct PeerFixture {
  RawPeer peer;
  std::unique_ptr<Bus> bus;
  Collector requests, probes;
  Subscription requests_sub, probe_sub;
  uint64_t probe_seq = 0;
  uint64_t next_seq = 0;  // the "good" node's sequence on topic "requests"

  PeerFixture() {
    BusOptions o;
    o.node_id = "under-test";
    o.peers = {peer.endpoint()};
    o.insecure_plaintext = true;  // the raw peer speaks plain tcp
    o.max_frame_bytes = 1024;
    o.max_message_bytes = 8192;  // ZeroMQ's hard limit is 2x: 16384
    bus = std::make_unique<Bus>(o);
    requests_sub = bus->subscribe({}, requests.handler());
    SubscribeOptions po;
    po.topic = "probe";
    probe_sub = bus->subscribe(po, probes.handler());
    handshake();
  }

  // The SUB side connects and subscribes asynchronously: send probe frames until one arrives.
  void handshake() {
    const size_t before = probes.size();
    for (int i = 0; i < 400; ++i) {
      peer.send(envelope("probe"), valid_frame("prober", 1, probe_seq++, 1, "/probe/"));
      if (probes.wait_for_count(before + 1, 25ms)) return;
    }
    BOOST_FAIL("the bus never received a probe from the raw peer");
  }

  // Sends one valid "requests" frame from node "good" and waits until it is delivered: frames
  // on one connection are handled in order, so everything sent before it has been judged.
  void send_valid_and_wait() {
    const uint64_t seq = next_seq++;
    peer.send(envelope("requests"), valid_frame("good", 1, seq, 1));
    const std::string path = "/remote/" + std::to_string(seq);
    BOOST_REQUIRE_MESSAGE(requests.wait_for([&](const Message& m) { return m.request.path == path; }, 20s),
                          "a valid frame after bad ones was not delivered (stalled?)");
  }

  uint64_t malformed(DecodeError e) const { return bus->stats().malformed[size_t(e)]; }
  uint64_t malformed_total() const {
    const auto m = bus->stats().malformed;
    return std::accumulate(m.begin(), m.end(), uint64_t(0));
  }

  // Sends `parts`, then a valid frame; checks that exactly one frame was counted under `e`.
  void expect_rejected(const std::vector<std::string>& parts, DecodeError e) {
    const uint64_t before = malformed(e), total_before = malformed_total();
    peer.send(parts);
    send_valid_and_wait();
    BOOST_TEST(malformed(e) == before + 1, "expected one more " << codec::to_string(e));
    BOOST_TEST(malformed_total() == total_before + 1);
  }
};

std::string record_with_status(uint16_t status) {
  RequestLog r = sample_log("/bad", 0, status);
  r.request_id = "x";
  r.node_id = "bad";
  return record_of(r);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bus_malformed_frames)

BOOST_FIXTURE_TEST_CASE(each_kind_of_bad_frame_is_counted_and_never_stalls, PeerFixture) {
  const std::string key = envelope("requests");
  const std::string good = valid_frame("bad", 9, 0, 3);

  // not msgpack: 0xc1 is the one byte msgpack never uses
  expect_rejected({key, std::string("\xc1\xc1\xc1\xc1", 4)}, DecodeError::not_msgpack);
  // truncated: a valid frame cut short
  expect_rejected({key, good.substr(0, good.size() / 2)}, DecodeError::truncated);
  expect_rejected({key, good.substr(0, 1)}, DecodeError::truncated);
  // oversized: past max_message_bytes (8 KiB) but under ZeroMQ's 2x limit
  {
    std::vector<std::string> records;
    for (int i = 0; i < 40; ++i) {
      RequestLog r = sample_log("/big/" + std::string(300, 'x'));
      r.request_id = "big";
      records.push_back(record_of(r));
    }
    const std::string big = frame_payload(records, "bad", 9, 0);
    BOOST_REQUIRE(big.size() > 8192 && big.size() < 16384);
    expect_rejected({key, big}, DecodeError::oversized);
  }
  // unknown wire version
  expect_rejected({key, frame_payload({record_of(sample_log("/v"))}, "bad", 9, 0, 2)},
                  DecodeError::unknown_version);
  // unknown record version: a RequestLog record claiming version 3
  {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> p(buf);
    p.pack_array(16);
    p.pack(1);  // request_sent
    p.pack(3);  // a version from the future
    for (int i = 0; i < 14; ++i) p.pack_nil();
    expect_rejected({key, frame_payload({std::string(buf.data(), buf.size())}, "bad", 9, 0)},
                    DecodeError::unknown_version);
  }
  // wrong shape: a map instead of the frame array
  {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> p(buf);
    p.pack_map(1);
    p.pack(std::string("wire_version"));
    p.pack(1);
    expect_rejected({key, std::string(buf.data(), buf.size())}, DecodeError::wrong_shape);
  }
  // wrong shape: a frame array of 4
  {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> p(buf);
    p.pack_array(4);
    p.pack(1);
    p.pack(std::string("bad"));
    p.pack(9);
    p.pack(0);
    expect_rejected({key, std::string(buf.data(), buf.size())}, DecodeError::wrong_shape);
  }
  // wrong shape: trailing bytes after the frame
  expect_rejected({key, good + "\x01"}, DecodeError::wrong_shape);
  // wrong shape: a record of the wrong length
  {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> p(buf);
    p.pack_array(3);
    p.pack(1);
    p.pack(2);
    p.pack(std::string("id"));
    expect_rejected({key, frame_payload({std::string(buf.data(), buf.size())}, "bad", 9, 0)},
                    DecodeError::wrong_shape);
  }
  // wrong shape: one part, three parts
  expect_rejected({good}, DecodeError::wrong_shape);
  expect_rejected({key, good, good}, DecodeError::wrong_shape);
  // wrong shape: bad envelope keys (no NUL, bad topic, unknown scope, local scope from a peer)
  expect_rejected({"requests", good}, DecodeError::wrong_shape);
  expect_rejected({envelope("bad topic"), good}, DecodeError::wrong_shape);
  expect_rejected({envelope("requests", 'X'), good}, DecodeError::wrong_shape);
  expect_rejected({envelope("requests", 'L'), good}, DecodeError::wrong_shape);
  // invalid field: status 999, in an otherwise valid frame
  expect_rejected({key, frame_payload({record_with_status(999)}, "bad", 9, 0)}, DecodeError::invalid_field);
  // invalid field: one bad record among good ones rejects the whole frame
  expect_rejected({key, frame_payload({record_of(sample_log("/ok")), record_with_status(42)}, "bad", 9, 0)},
                  DecodeError::invalid_field);

  // Nothing from node "bad" was ever delivered; every valid frame was.
  for (const auto& m : requests.messages()) BOOST_REQUIRE_EQUAL(m.request.node_id, "good");
  BOOST_TEST(requests.size() == next_seq);
  const BusStats s = bus->stats();
  BOOST_TEST(s.malformed[size_t(DecodeError::not_msgpack)] == 1u);
  BOOST_TEST(s.malformed[size_t(DecodeError::truncated)] == 2u);
  BOOST_TEST(s.malformed[size_t(DecodeError::oversized)] == 1u);
  BOOST_TEST(s.malformed[size_t(DecodeError::unknown_version)] == 2u);
  BOOST_TEST(s.malformed[size_t(DecodeError::wrong_shape)] == 10u);
  BOOST_TEST(s.malformed[size_t(DecodeError::invalid_field)] == 2u);
  BOOST_TEST(s.remote_gaps == 0u);
  BOOST_TEST(s.peer_disconnects == 0u);
  for (const auto& sub : s.subscriptions) {
    BOOST_TEST(sub.malformed == 0u);  // bad frames never reach subscribers
    BOOST_TEST(sub.gaps == 0u);
  }
}

BOOST_FIXTURE_TEST_CASE(beyond_twice_the_limit_zeromq_disconnects_and_it_is_counted, PeerFixture) {
  const uint64_t malformed_before = malformed_total();
  peer.send(envelope("requests"), std::string(40000, '\x90'));  // > 2 x 8192: ZeroMQ drops the link
  // The connection comes back; probe until it carries frames again, then a valid one passes.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (bus->stats().peer_disconnects == 0 && std::chrono::steady_clock::now() < deadline)
    (void)probes.wait_for_count(size_t(-1), 10ms);  // a bounded wait on a condition that never holds
  BOOST_TEST(bus->stats().peer_disconnects >= 1u);
  handshake();
  send_valid_and_wait();
  BOOST_TEST(malformed_total() == malformed_before);  // ZeroMQ dropped it before us
}

BOOST_FIXTURE_TEST_CASE(an_older_record_version_gets_node_id_from_the_frame, PeerFixture) {
  RequestLog r = sample_log("/v1");
  r.request_id = "old-writer";
  r.inserted_at = 1'600'000'000'000'000;
  std::string v1;
  codec::append_v1(v1, r);
  peer.send(envelope("requests"), frame_payload({v1}, "old-node", 5, 0));
  BOOST_REQUIRE(requests.wait_for([](const Message& m) { return m.request.path == "/v1"; }, 20s));
  const auto m = requests.messages().back();
  BOOST_TEST(m.request.node_id == "old-node");
  BOOST_TEST(m.request.seq == 0u);
  BOOST_TEST(m.request.request_id == "old-writer");
  BOOST_TEST(m.request.inserted_at == r.inserted_at);
  BOOST_TEST(malformed_total() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bus_gaps)

// A new epoch restarts the numbering. The receiver, which knew the origin's previous epoch,
// counts the new epoch's records before its first frame (a restarted peer's first events, sent
// before we reconnected); a subscription only resets (tests/bus_origin_test.cpp).
BOOST_FIXTURE_TEST_CASE(missing_sequence_numbers_are_counted_exactly_and_a_new_epoch_resets, PeerFixture) {
  auto send = [&](uint64_t epoch, uint64_t first, uint32_t count) {
    peer.send(envelope("requests"), valid_frame("gappy", epoch, first, count));
  };
  send(7, 0, 2);     // 0,1
  send(7, 5, 1);     // 2,3,4 missing: 3
  send(7, 6, 4);     // 6..9, in sequence
  send(8, 100, 1);   // a restarted origin: new epoch; 0..99 missing at the receiver: 100
  send(8, 110, 2);   // 101..109 missing: 9
  send(8, 112, 1);   // in sequence
  // The last frame's first record is "/remote/112".
  BOOST_REQUIRE(requests.wait_for([](const Message& m) { return m.request.path == "/remote/112"; }, 20s));
  const BusStats s = bus->stats();
  BOOST_TEST(s.remote_gaps == 112u);
  BOOST_TEST(s.remote_frames >= 6u);
  BOOST_TEST(requests_sub.stats().gaps == 12u);
  BOOST_TEST(requests_sub.stats().received == 11u);
  BOOST_TEST(probe_sub.stats().gaps == 0u);
  const CloseReport report = bus->close(10s);
  BOOST_TEST(report.gaps == 12u);
}

BOOST_FIXTURE_TEST_CASE(a_jump_past_2_to_the_32_is_a_new_numbering_not_missing_events, PeerFixture) {
  auto send = [&](uint64_t first, uint32_t count) {
    peer.send(envelope("requests"), valid_frame("liar", 4, first, count));
  };
  send(0, 1);
  send(std::numeric_limits<uint64_t>::max() - 1, 1);  // would add ~1.8e19 to remote_gaps
  send(std::numeric_limits<uint64_t>::max(), 1);      // in sequence after it: no wrap to 0
  send(3, 1);                                         // back down: no gap either
  send(6, 1);                                         // 4, 5 really missing: 2
  BOOST_REQUIRE(requests.wait_for([](const Message& m) { return m.request.path == "/remote/6"; }, 20s));
  const BusStats s = bus->stats();
  BOOST_TEST(s.remote_gaps == 2u);
  BOOST_TEST(s.remote_gap_resyncs == 1u);
  BOOST_TEST(requests_sub.stats().gaps == 2u);  // the subscriber's tracker has the same bound
}

BOOST_FIXTURE_TEST_CASE(origins_named_by_peers_are_tracked_within_a_bound, PeerFixture) {
  // A peer inventing a node id a frame (or one restarting in a loop: ids are <host>-<pid>)
  // must not grow the tracker for good: past 4,096 channels the least recently seen half goes.
  auto steady = [&](uint64_t seq) {
    peer.send(envelope("requests"), valid_frame("steady", 1, seq, 1));
    BOOST_REQUIRE_MESSAGE(requests.wait_for([&](const Message& m) { return m.request.node_id == "steady" && m.request.seq == seq; }, 30s),
                          "steady " << seq << " not delivered; got " << requests.size() << ", last from "
                                    << (requests.size() ? requests.messages().back().request.node_id : "-"));
  };
  steady(0);
  for (int chunk = 0; chunk < 20; ++chunk) {  // paced: the raw peer's socket drops past 1,000 queued
    for (int i = 0; i < 250; ++i)
      peer.send(envelope("requests"), valid_frame("invented-" + std::to_string(chunk * 250 + i), 1, 0, 1));
    steady(uint64_t(chunk + 1));
  }
  steady(23);  // 21, 22 missing: 2
  const BusStats s = bus->stats();
  BOOST_TEST(s.peer_channels_forgotten >= 2048u);
  BOOST_TEST(s.remote_gaps == 2u);  // a channel seen often is kept, and forgotten ones add nothing
  BOOST_TEST(requests_sub.stats().gaps == 2u);
}

BOOST_FIXTURE_TEST_CASE(a_rejected_frame_is_counted_once_and_not_again_as_a_gap, PeerFixture) {
  auto send_valid = [&](uint64_t first, uint32_t count) {
    peer.send(envelope("requests"), valid_frame("mixed", 3, first, count));
  };
  send_valid(0, 2);  // 0,1
  // 2,3,4: one record has status 999, so the receiver rejects the whole frame
  peer.send(envelope("requests"), frame_payload({record_of(sample_log("/ok")), record_with_status(999),
                                                 record_of(sample_log("/ok"))},
                                                "mixed", 3, 2));
  send_valid(5, 1);  // in sequence after the rejected frame
  send_valid(8, 1);  // 6,7 really missing: 2
  BOOST_REQUIRE(requests.wait_for([](const Message& m) { return m.request.path == "/remote/8"; }, 20s));
  const BusStats s = bus->stats();
  BOOST_TEST(s.malformed[size_t(DecodeError::invalid_field)] == 1u);
  BOOST_TEST(malformed_total() == 1u);
  BOOST_TEST(s.remote_rejected_events == 3u);
  BOOST_TEST(s.remote_gaps == 2u);  // not 5: the rejected frame's events are not "missing"
  const SubscriptionStats sub = requests_sub.stats();
  BOOST_TEST(sub.received == 4u);
  BOOST_TEST(sub.gaps == 2u);
  BOOST_TEST(sub.malformed == 0u);
  BOOST_TEST(probe_sub.stats().gaps == 0u);
  BOOST_TEST(bus->close(10s).gaps == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
