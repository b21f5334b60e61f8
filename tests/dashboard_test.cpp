// The live dashboard (web/index.html + web/dashboard.js, embedded in the node) in a real
// headless Chromium (Debian's), against a real node::Node serving it on 127.0.0.1: the numbers
// on the page follow the events published on the bus without a reload, request fields such as
// a user agent of <script>alert(1)</script> are shown as text and never run, and the uPlot
// chart draws. The browser is driven over the DevTools protocol (tests/support/chromium.hpp),
// which can wait inside the page for a condition. The one-shot `chromium --dump-dom` cannot:
// with --virtual-time-budget it hangs (virtual time never advances while a fetch is pending,
// and the event stream always is), and with --timeout it sometimes dumps before the first
// snapshot arrived. Page::html() returns the same serialisation --dump-dom prints.
// Missing chromium is a failure, not a skip: scripts/setup.sh installs it.
#include <httplib.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "node/node.hpp"
#include "reqbus/request_log.hpp"
#include "tests/support/chromium.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/spawned_process.hpp"  // require_executable
#include "tests/support/temp_dir.hpp"

using namespace std::chrono_literals;
using reqbus::RequestLog;
using reqbus::test::Chromium;
using reqbus::test::Page;

namespace {

RequestLog request(const std::string& path, uint16_t status, const std::string& agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0") {
  RequestLog r;
  r.method = "GET";
  r.path = path;
  r.status_code = status;
  r.duration_ms = 12.5;
  r.user_agent = agent;
  r.remote_ip = "203.0.113.7";
  r.device_type = "desktop";
  return r;
}

reqbus::node::NodeOptions node_options() {
  reqbus::node::NodeOptions o;
  o.store = "none";  // the dashboard reads the live stream only
  o.spool_dir = "";
  o.http.port = 0;
  o.http_enabled = true;
  return o;
}

// Fails first, with the reason, when the browser is not installed (before any node starts).
struct RequireChromium {
  RequireChromium() { (void)reqbus::test::require_executable("REQBUS_CHROMIUM", "/usr/bin/chromium", "Debian's chromium package"); }
};

// A node serving the dashboard. One request before the test starts: HttpApi::stop() right
// after start() can miss a listen thread that is not yet accepting and then waits for it
// forever (cpp-httplib 0.11's stop() does nothing until listen() runs), so a fixture that fails
// early would hang instead of failing.
struct NodeFixture : RequireChromium {
  reqbus::node::Node node;
  std::string url = "http://127.0.0.1:" + std::to_string(node.http_port()) + "/";
  explicit NodeFixture(const reqbus::node::NodeOptions& options = node_options()) : node(options) {
    httplib::Client c("127.0.0.1", node.http_port());
    c.set_read_timeout(10, 0);
    auto res = c.Get("/healthz");
    BOOST_REQUIRE_MESSAGE(res && res->status == 200, "the node's HTTP API does not answer /healthz");
  }

  void publish(const RequestLog& r, int times = 1) {
    for (int i = 0; i < times; ++i) BOOST_REQUIRE(node.bus().broadcast(r) == reqbus::PublishStatus::ok);
  }
};

// And a browser, declared after the node so it closes its stream connection first.
struct DashboardFixture : NodeFixture {
  using NodeFixture::NodeFixture;
  Chromium browser;

  std::string text(Page& page, const std::string& id) {
    return page.evaluate("document.getElementById('" + id + "').textContent").get<std::string>();
  }
  // On failure: what the page showed and what the browser said.
  std::string diagnose(Page& page) {
    std::string html;
    try {
      html = page.html();
    } catch (const std::exception& e) {
      html = e.what();
    }
    return "\npage:\n" + html.substr(0, 6000) + "\nbrowser output:\n" + browser.output_tail();
  }
  // Rows of a table as "cell|cell|..." lines.
  std::string rows(Page& page, const std::string& id) {
    return page
        .evaluate("[...document.querySelectorAll('#" + id +
                  " tr')].map(tr => [...tr.cells].map(td => td.textContent).join('|')).join('\\n')")
        .get<std::string>();
  }
};

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// A node whose API needs a bearer token.
struct TokenDashboardFixture : DashboardFixture {
  static reqbus::node::NodeOptions with_token() {
    reqbus::node::NodeOptions o = node_options();
    o.http.bearer_token = "s3cret";
    return o;
  }
  TokenDashboardFixture() : DashboardFixture(with_token()) {}
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(DashboardInChromium, DashboardFixture)

BOOST_AUTO_TEST_CASE(numbers_change_as_events_are_published) {
  BOOST_TEST_MESSAGE("browser: " << browser.version() << ", dashboard at " << url);
  publish(request("/pricing", 200), 20);
  publish(request("/old-page", 404), 3);
  publish(request("/checkout", 500), 2);
  Page page(browser);
  page.navigate(url);
  BOOST_REQUIRE_MESSAGE(page.wait_for("document.getElementById('total').textContent === '25'", 20s),
                        "the page never showed 25 requests" << diagnose(page));
  BOOST_TEST(text(page, "conn") == "live");
  BOOST_TEST(text(page, "dropped") == "0");
  BOOST_TEST(text(page, "visitors") == "1");
  BOOST_TEST(text(page, "bots") == "0 / 25");
  BOOST_TEST(contains(text(page, "latency"), "ms"));
  BOOST_TEST(rows(page, "status") == "200|20\n404|3\n500|2");
  BOOST_TEST(contains(rows(page, "top-paths"), "/pricing|20"));
  BOOST_TEST(contains(rows(page, "not-found"), "/old-page|3"));
  const int updates = std::stoi(page.evaluate("document.body.dataset.updates").get<std::string>());
  BOOST_TEST(updates >= 1);

  // Same page, no reload: a marker set now must survive until the new numbers show.
  page.evaluate("window.__sameDocument = 'yes'");
  publish(request("/new-path", 200), 15);
  publish(request("/robots.txt", 200, "Googlebot/2.1 (+http://www.google.com/bot.html)"), 2);
  BOOST_REQUIRE_MESSAGE(page.wait_for("document.getElementById('total').textContent === '42'", 20s),
                        "the page did not follow the 17 new events" << diagnose(page));
  BOOST_TEST(page.evaluate("window.__sameDocument").get<std::string>() == "yes");
  BOOST_TEST(std::stoi(page.evaluate("document.body.dataset.updates").get<std::string>()) > updates);
  BOOST_TEST(rows(page, "status") == "200|37\n404|3\n500|2");
  BOOST_TEST(contains(rows(page, "top-paths"), "/new-path|15"));
  BOOST_TEST(text(page, "bots") == "2 / 40");
  BOOST_TEST(page.events("Runtime.exceptionThrown").empty(), "uncaught exceptions in the page" << diagnose(page));

  // The per-node filter lists this node; choosing it reconnects the stream filtered by node.
  const std::string self = node.bus().node_id();
  BOOST_TEST(page.evaluate("[...document.querySelectorAll('#node-filter option')].map(o => o.value).join(',')").get<std::string>() ==
             "," + self);
  page.evaluate("(() => { const s = document.getElementById('node-filter'); s.value = '" + self +
                "'; s.dispatchEvent(new Event('change')); })()");
  BOOST_TEST(page.wait_for("new URLSearchParams(location.search).get('node') === '" + self + "'", 5s));
  publish(request("/after-filter", 200));
  BOOST_TEST(page.wait_for("document.getElementById('total').textContent === '43'", 20s),
             "the filtered stream did not follow" << diagnose(page));
}

BOOST_AUTO_TEST_CASE(request_fields_are_shown_as_text_never_run) {
  const std::string agent = "<script>alert(1)</script>";
  const std::string path = "/<img src=x onerror=alert(2)>";
  Page page(browser);
  // Record anything that would prove the markup ran: dialogs and elements added to the page.
  page.add_init_script(
      "window.__alerts = [];"
      "for (const f of ['alert', 'confirm', 'prompt']) window[f] = (...a) => { window.__alerts.push(f + ':' + a.join()); };"
      "window.__injected = [];"
      "new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => {"
      "  if (n.nodeType === 1 && (n.matches('script,img,iframe,svg,object') ||"
      "                           n.querySelector('script,img,iframe,svg,object'))) window.__injected.push(n.outerHTML);"
      "}))).observe(document, { childList: true, subtree: true });");
  page.navigate(url);
  BOOST_REQUIRE_MESSAGE(page.wait_for("Number(document.body.dataset.updates || 0) >= 1", 20s), "no render" << diagnose(page));
  const std::string baseline_injected = page.evaluate("JSON.stringify(window.__injected)").get<std::string>();

  RequestLog r = request(path, 200, agent);
  r.referer = "<b onmouseover=alert(3)>ref</b>";
  publish(r);
  BOOST_REQUIRE_MESSAGE(
      page.wait_for("[...document.querySelectorAll('#recent td')].some(td => td.textContent === '<script>alert(1)</script>')", 20s),
      "the user agent never appeared as text in the recent table" << diagnose(page));
  // One more render over the same data: a second pass must not change anything either.
  const int updates = std::stoi(page.evaluate("document.body.dataset.updates").get<std::string>());
  BOOST_REQUIRE(page.wait_for("Number(document.body.dataset.updates) > " + std::to_string(updates), 10s));

  const std::string html = page.html();
  BOOST_TEST(contains(html, "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"), "escaped user agent cell missing" << diagnose(page));
  BOOST_TEST(contains(html, "GET /&lt;img src=x onerror=alert(2)&gt;</td>"));
  BOOST_TEST(contains(html, "&lt;b onmouseover=alert(3)&gt;ref&lt;/b&gt;</td>"));
  BOOST_TEST(!contains(html, "<script>alert(1)</script>"));
  BOOST_TEST(!contains(html, "<img src=\"x\""));
  // Only the page's own two scripts (uPlot, dashboard.js); no element came from request data.
  BOOST_TEST(page.evaluate("document.scripts.length").get<int>() == 2);
  BOOST_TEST(page.evaluate("document.querySelectorAll('main img, main b, main iframe').length").get<int>() == 0);
  BOOST_TEST(page.evaluate("JSON.stringify(window.__alerts)").get<std::string>() == "[]");
  BOOST_TEST(page.evaluate("JSON.stringify(window.__injected)").get<std::string>() == baseline_injected);
  BOOST_TEST(page.events("Page.javascriptDialogOpening").empty());
  BOOST_TEST(page.events("Runtime.exceptionThrown").empty(), "uncaught exceptions in the page" << diagnose(page));
}

BOOST_AUTO_TEST_CASE(chart_draws_and_screenshot) {
  // Requests spread over the last two minutes, so the requests/s chart has a line to draw.
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  int published = 0;
  for (int s = 120; s >= 1; --s) {
    for (int i = 0; i < 1 + (s % 7); ++i) {
      RequestLog r = request(i % 3 == 0 ? "/docs" : "/", s % 11 == 0 ? 404 : 200);
      r.inserted_at = now_us - int64_t(s) * 1000000;
      r.remote_ip = "198.51.100." + std::to_string(i + 1);
      publish(r);
      ++published;
    }
  }
  Page page(browser);
  // uPlot draws axis labels on the canvas, left to right: record every HH:MM:SS label with its
  // extent, one list per redraw (a label left of the previous one starts the next redraw).
  page.add_init_script(
      "window.__xDraws = [];"
      "const fillText = CanvasRenderingContext2D.prototype.fillText;"
      "CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {"
      "  if (/^\\d\\d:\\d\\d:\\d\\d$/.test(text)) {"
      "    const draws = window.__xDraws, last = draws[draws.length - 1];"
      "    if (!last || x <= last[last.length - 1].x) draws.push([]);"
      "    draws[draws.length - 1].push({ text, x, w: this.measureText(text).width, align: this.textAlign });"
      "  }"
      "  return fillText.call(this, text, x, y, ...rest);"
      "};");
  page.navigate(url);
  BOOST_REQUIRE_MESSAGE(page.wait_for("document.getElementById('total').textContent === '" + std::to_string(published) + "'", 20s),
                        "the page never showed " << published << " requests" << diagnose(page));
  // The x-axis labels of the last redraw are HH:MM:SS and do not overlap.
  BOOST_REQUIRE_MESSAGE(page.wait_for("window.__xDraws.length > 0", 10s), "no HH:MM:SS x-axis labels were drawn");
  const auto labels = page.evaluate("window.__xDraws[window.__xDraws.length - 1]");
  BOOST_TEST_MESSAGE("x-axis labels: " << labels.dump());
  BOOST_TEST(labels.size() >= 3u, labels.dump());
  const auto half = [](const nlohmann::json& l) { return l["align"] == "center" ? l["w"].get<double>() / 2 : 0.0; };
  for (size_t i = 1; i < labels.size(); ++i) {
    const auto& a = labels[i - 1];
    const auto& b = labels[i];
    const double right_of_a = a["x"].get<double>() + a["w"].get<double>() - half(a);
    const double left_of_b = b["x"].get<double>() - half(b);
    BOOST_TEST(left_of_b - right_of_a > 0, a["text"] << " and " << b["text"] << " overlap: " << labels.dump());
  }
  BOOST_TEST(page.evaluate("document.querySelectorAll('#chart .uplot canvas').length").get<int>() == 1);
  BOOST_TEST(page.evaluate("document.querySelector('#chart canvas').width").get<int>() >= 300);
  BOOST_TEST(contains(page.evaluate("document.querySelector('#chart .u-legend').textContent").get<std::string>(), "requests/s"));
  // Pixels in the series' stroke colour (#5aa9ff): the line was really drawn.
  const int line_pixels = page.evaluate(
      "(() => { const c = document.querySelector('#chart canvas');"
      "  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
      "  for (let i = 0; i < d.length; i += 4)"
      "    if (Math.abs(d[i] - 90) < 12 && Math.abs(d[i + 1] - 169) < 12 && Math.abs(d[i + 2] - 255) < 12 && d[i + 3] > 200) ++n;"
      "  return n; })()").get<int>();
  BOOST_TEST(line_pixels > 100, "the chart's line has " << line_pixels << " pixels");

  const std::string png = page.screenshot_png();
  int width = 0, height = 0;
  BOOST_REQUIRE(reqbus::test::png_size(png, width, height));
  BOOST_TEST(width == 1280);
  BOOST_TEST(height == 900);
  BOOST_TEST(png.size() > 30000u, "a " << png.size() << "-byte screenshot is too small to show the dashboard");
  reqbus::test::TempDir dir("reqbus-dashboard");
  std::string file = dir.sub("dashboard.png");
  if (const char* keep = std::getenv("REQBUS_TEST_ARTIFACTS"); keep && *keep) {  // keep it for a human to look at
    std::filesystem::create_directories(keep);
    file = (std::filesystem::path(keep) / "dashboard.png").string();
  }
  std::ofstream(file, std::ios::binary) << png;
  BOOST_TEST(std::filesystem::file_size(file) == png.size());
  BOOST_TEST_MESSAGE("screenshot: " << file);
}

// A connected dashboard holds a server thread in its event stream; shutting the node down must
// end that stream promptly (not wait for the browser), and the page must notice.
BOOST_AUTO_TEST_CASE(node_closes_promptly_with_a_dashboard_connected) {
  publish(request("/", 200), 5);
  Page page(browser);
  page.navigate(url);
  BOOST_REQUIRE_MESSAGE(page.wait_for("document.getElementById('total').textContent === '5'", 20s), "no render" << diagnose(page));
  const auto start = std::chrono::steady_clock::now();
  const auto report = node.close(5000ms);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  BOOST_TEST(!report.deadline_reached);
  // The browser also keeps idle keep-alive connections (it fetched the page and its assets);
  // a server that waits out its keep-alive timeout (cpp-httplib's default is 5 s) on them
  // spends the close() budget the Batcher needs to flush.
  // (A margin for loaded sanitizer builds: the regression takes the whole 5 s.)
  BOOST_TEST(took.count() < 4500, "close() took " << took.count() << " ms with a dashboard connected");
  BOOST_TEST(page.wait_for("document.getElementById('conn').textContent !== 'live'", 10s),
             "the page still shows 'live' after the node closed" << diagnose(page));
}

// With a token, /?token=... loads the page and its assets (public: they hold no data) and the
// page streams with the token from its own URL; without it, the stream is refused.
BOOST_FIXTURE_TEST_CASE(with_a_token_the_page_streams_only_when_opened_with_it, TokenDashboardFixture) {
  publish(request("/private", 200), 7);
  Page page(browser);
  page.navigate(url + "?token=s3cret");
  BOOST_REQUIRE_MESSAGE(page.wait_for("document.getElementById('total').textContent === '7'", 20s),
                        "the page never showed 7 requests with the token" << diagnose(page));
  BOOST_TEST(text(page, "conn") == "live");
  BOOST_TEST(contains(rows(page, "top-paths"), "/private|7"));

  Page stranger(browser);
  stranger.navigate(url);
  BOOST_REQUIRE_MESSAGE(stranger.wait_for("document.getElementById('conn') !== null", 20s),
                        "the page did not load without the token" << diagnose(stranger));
  // Give the refused stream time to answer, then nothing of the data may show.
  std::this_thread::sleep_for(1500ms);
  BOOST_TEST(text(stranger, "conn") != "live");
  BOOST_TEST(text(stranger, "total") != "7");
  BOOST_TEST(!contains(stranger.html(), "/private"));
}

// A node whose one tcp peer nobody listens on: the page says so above the numbers (the
// cluster view lacks that node's events), and stops saying so once the peer is there.
struct UnreachablePeerFixture : DashboardFixture {
  static inline std::string peer;
  static reqbus::node::NodeOptions with_peer() {
    peer = "tcp://127.0.0.1:" + std::to_string(reqbus::test::port_outside_ephemeral_range(SOCK_STREAM));
    reqbus::node::NodeOptions o = node_options();
    o.bus.peers = {peer};
    o.bus.insecure_plaintext = true;
    return o;
  }
  UnreachablePeerFixture() : DashboardFixture(with_peer()) {}
};

BOOST_FIXTURE_TEST_CASE(a_peer_that_is_not_connected_is_named_on_the_page, UnreachablePeerFixture) {
  Page page(browser);
  page.navigate(url);
  BOOST_REQUIRE_MESSAGE(page.wait_for("document.getElementById('links').textContent.includes('failed attempt')", 20s),
                        "the unreachable peer is not named" << diagnose(page));
  const std::string line = text(page, "links");
  BOOST_TEST(contains(line, "peer " + peer + " not connected since "), line);
  BOOST_TEST(contains(line, "last: connection refused"), line);
  BOOST_TEST(!page.evaluate("document.getElementById('links').hidden").get<bool>());

  reqbus::BusOptions bo;
  bo.name = "dashboard-peer";
  bo.node_id = "dashboard-peer";
  bo.bind = peer;
  bo.insecure_plaintext = true;
  reqbus::Bus other(bo);
  BOOST_TEST(page.wait_for("document.getElementById('links').hidden === true", 20s),
             "the line stayed after the peer connected" << diagnose(page));
  BOOST_TEST(page.events("Runtime.exceptionThrown").empty(), "uncaught exceptions in the page" << diagnose(page));
}

BOOST_AUTO_TEST_SUITE_END()

