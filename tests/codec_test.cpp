#include <boost/test/unit_test.hpp>
#include "reqbus/codec.hpp"
#include "reqbus/uuid.hpp"

using namespace reqbus;

BOOST_AUTO_TEST_SUITE(codec_suite)
BOOST_AUTO_TEST_CASE(round_trip) {
  RequestLog r;
  r.request_id = uuid_v7();
  r.method = "GET"; r.path = "/x"; r.status_code = 200; r.duration_ms = 1.5;
  r.node_id = "n1"; r.seq = 7; r.inserted_at = 123;
  std::string buf;
  codec::append(buf, r);
  Message m;
  BOOST_TEST(!codec::decode(buf.data(), buf.size(), m).has_value());
  BOOST_TEST((m.request == r));
}
BOOST_AUTO_TEST_SUITE_END()
