#include <boost/test/unit_test.hpp>
#include <atomic>
#include "reqbus/bus.hpp"

using namespace reqbus;

BOOST_AUTO_TEST_CASE(smoke) {
  Bus bus;
  std::atomic<int> got{0};
  auto sub = bus.subscribe({}, [&](const Message& m) { if (m.request.path == "/a") ++got; });
  auto pull = bus.subscribe({});
  RequestLog r; r.method = "GET"; r.path = "/a"; r.status_code = 200;
  for (int i = 0; i < 1000; ++i) BOOST_REQUIRE(bus.broadcast(r) == PublishStatus::ok);
  auto rep = bus.close(std::chrono::seconds(5));
  BOOST_TEST(got.load() == 1000);
  BOOST_TEST(rep.published == 1000u);
  int n = 0;
  while (auto m = pull.next(std::chrono::milliseconds(10))) ++n;
  BOOST_TEST(n == 1000);
  BOOST_TEST(!rep.deadline_reached);
}
