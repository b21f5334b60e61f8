// node::apply_config / apply_config_file / parse_listen: every documented key parses into
// NodeOptions; unknown keys, wrong types, out-of-range values and TOML syntax errors are refused
// with one message naming the file, the line and the key.
#include <sys/stat.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "node/config.hpp"
#include "tests/support/temp_dir.hpp"

using namespace reqbus;
using namespace reqbus::node;

namespace {

// Every key, each set to a value different from its default.
const char* kEveryKey = R"(node_id   = "web-7"
store     = "postgres:host=db dbname=reqbus"
spool_dir = "/var/spool/reqbus"

[bus]
name                 = "edge"
bind                 = "tcp://0.0.0.0:7401"
peers                = ["tcp://10.0.0.2:7400", "tcp://10.0.0.3:7400"]
peer_unreachable_after_ms  = 2500
peer_unreachable_repeat_ms = 0
peer_connect_timeout_ms    = 2000
queue_max_events     = 1000
queue_max_bytes      = 1048576
overflow             = "drop_oldest"
block_timeout_ms     = 250
publish_linger_us    = 500
max_events_per_frame = 32
inproc_hwm           = 128
tcp_hwm              = 0
max_message_bytes    = 65536

[http]
enabled        = false
listen         = "[::1]:9090"
token          = "s3cret"
write_keys     = ["wk1", "wk2"]
max_body_bytes = 2048
threads        = 4
max_threads    = 40
health_window_ms = 5000

[batcher]
pool_size             = 3
flush_at              = 250
flush_interval_ms     = 1500
flush_jitter_ms       = 10
max_batch_bytes       = 4096
flush_workers         = 5
coalesce_max_events   = 0
retry_max_attempts    = 7
retry_base_backoff_ms = 20
import_timeout_ms     = 900
replay_interval_ms    = 250
replay_max_backoff_ms = 4000
max_queued_events     = 777
overflow              = "drop_newest"
active                = false
debug                 = true

[counters]
interval_ms = 1234
jitter_ms   = 56
backoff_ms  = 789
timeout_ms  = 4321
max_keys    = 99

[syslog]
listen = "127.0.0.1:5514"
)";

std::string apply(const std::string& text, NodeOptions& o) { return apply_config(text, "cfg.toml", o); }

std::string error_of(const std::string& text) {
  NodeOptions o;
  return apply(text, o);
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// The ```toml block of docs/CONFIG.md.
std::string documented_example() {
  std::ifstream in(std::filesystem::path(__FILE__).parent_path().parent_path() / "docs" / "CONFIG.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  const size_t start = doc.find("```toml\n");
  if (start == std::string::npos) return {};
  const size_t end = doc.find("```", start + 8);
  return doc.substr(start + 8, end - start - 8);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(Config)

BOOST_AUTO_TEST_CASE(every_key_parses_into_the_options) {
  NodeOptions o;
  BOOST_REQUIRE_EQUAL(apply(kEveryKey, o), "");
  BOOST_TEST(o.bus.node_id == "web-7");
  BOOST_TEST(o.store == "postgres:host=db dbname=reqbus");
  BOOST_TEST(o.spool_dir == "/var/spool/reqbus");

  BOOST_TEST(o.bus.name == "edge");
  BOOST_TEST(o.bus.bind == "tcp://0.0.0.0:7401");
  BOOST_TEST(o.bus.peers == (std::vector<std::string>{"tcp://10.0.0.2:7400", "tcp://10.0.0.3:7400"}),
             boost::test_tools::per_element());
  BOOST_TEST(o.bus.peer_unreachable_after.count() == 2500);
  BOOST_TEST(o.bus.peer_unreachable_repeat.count() == 0);  // warn once only
  BOOST_TEST(o.bus.peer_connect_timeout.count() == 2000);
  BOOST_TEST(o.bus.queue_max_events == 1000u);
  BOOST_TEST(o.bus.queue_max_bytes == 1048576u);
  BOOST_TEST((o.bus.overflow == Overflow::drop_oldest));
  BOOST_TEST(o.bus.block_timeout.count() == 250);
  BOOST_TEST(o.bus.publish_linger.count() == 500);
  BOOST_TEST(o.bus.max_events_per_frame == 32u);
  BOOST_TEST(o.bus.inproc_hwm == 128);
  BOOST_TEST(o.bus.tcp_hwm == 0);
  BOOST_TEST(o.bus.max_message_bytes == 65536u);
  BOOST_TEST(o.bus.max_frame_bytes == 65536u - 4096u);  // frames fit in what peers take

  BOOST_TEST(!o.http_enabled);
  BOOST_TEST(o.http.host == "::1");
  BOOST_TEST(o.http.port == 9090);
  BOOST_TEST(o.http.bearer_token == "s3cret");
  BOOST_TEST(o.http.write_keys == (std::vector<std::string>{"wk1", "wk2"}), boost::test_tools::per_element());
  BOOST_TEST(o.http.max_body_bytes == 2048u);
  BOOST_TEST(o.http.threads == 4);
  BOOST_TEST(o.http.max_threads == 40);
  BOOST_TEST(o.health.window.count() == 5000);

  BOOST_TEST(o.batcher.pool_size == 3u);
  BOOST_TEST(o.batcher.flush_at == 250u);
  BOOST_TEST(o.batcher.flush_interval.count() == 1500);
  BOOST_TEST(o.batcher.flush_jitter.count() == 10);
  BOOST_TEST(o.batcher.max_batch_bytes == 4096u);
  BOOST_TEST(o.batcher.flush_workers == 5u);
  BOOST_TEST(o.batcher.coalesce_max_events == 0u);  // the node's default is 10000
  BOOST_TEST(o.batcher.retry_max_attempts == 7);
  BOOST_TEST(o.batcher.retry_base_backoff.count() == 20);
  BOOST_TEST(o.batcher.import_timeout.count() == 900);
  BOOST_TEST(o.batcher.replay_interval.count() == 250);
  BOOST_TEST(o.batcher.replay_max_backoff.count() == 4000);
  BOOST_TEST(o.batcher.max_queued_events == 777u);
  BOOST_TEST((o.batcher.overflow == Overflow::drop_newest));
  BOOST_TEST(!o.batcher.active);
  BOOST_TEST(o.batcher.debug);

  BOOST_TEST(o.counters.interval.count() == 1234);
  BOOST_TEST(o.counters.jitter.count() == 56);
  BOOST_TEST(o.counters.backoff.count() == 789);
  BOOST_TEST(o.counters.timeout.count() == 4321);
  BOOST_TEST(o.counters.max_keys == 99u);

  BOOST_TEST(o.syslog_listen == "127.0.0.1:5514");
}

BOOST_AUTO_TEST_CASE(the_documented_example_parses_and_keeps_the_defaults) {
  const std::string example = documented_example();
  BOOST_REQUIRE(contains(example, "[batcher]"));
  NodeOptions o;
  BOOST_REQUIRE_EQUAL(apply(example, o), "");
  const NodeOptions defaults;
  BOOST_TEST(o.bus.queue_max_events == defaults.bus.queue_max_events);
  BOOST_TEST(o.bus.tcp_hwm == defaults.bus.tcp_hwm);
  BOOST_TEST(o.bus.peer_unreachable_after.count() == defaults.bus.peer_unreachable_after.count());
  BOOST_TEST(o.bus.peer_unreachable_repeat.count() == defaults.bus.peer_unreachable_repeat.count());
  BOOST_TEST(o.bus.peer_connect_timeout.count() == 5000);
  BOOST_TEST(o.http.max_body_bytes == defaults.http.max_body_bytes);
  BOOST_TEST(o.http.port == defaults.http.port);
  BOOST_TEST(o.http.host == defaults.http.host);
  BOOST_TEST(o.batcher.flush_at == defaults.batcher.flush_at);
  BOOST_TEST(o.batcher.coalesce_max_events == 10000u);
  BOOST_TEST(o.batcher.flush_interval.count() == defaults.batcher.flush_interval.count());
  BOOST_TEST(o.counters.max_keys == defaults.counters.max_keys);
}

BOOST_AUTO_TEST_CASE(an_empty_document_changes_nothing) {
  NodeOptions o;
  BOOST_REQUIRE_EQUAL(apply("# nothing here\n", o), "");
  const NodeOptions defaults;
  BOOST_TEST(o.store == defaults.store);
  BOOST_TEST(o.http.port == defaults.http.port);
  BOOST_TEST(o.bus.peers.empty());
}

BOOST_AUTO_TEST_CASE(unknown_keys_are_named_with_file_and_line) {
  BOOST_TEST(error_of("node_id = \"a\"\nstroe = \"sqlite:x\"\n") == "cfg.toml:2: stroe: unknown key");
  BOOST_TEST(error_of("[bus]\nname = \"x\"\ntcp_hmw = 5\n") == "cfg.toml:3: bus.tcp_hmw: unknown key");
  BOOST_TEST(error_of("[http]\n\nport = 80\n") == "cfg.toml:3: http.port: unknown key");
  // A whole unknown table.
  BOOST_TEST(error_of("[live]\nseries_seconds = 60\n") == "cfg.toml:1: live: unknown key");
}

BOOST_AUTO_TEST_CASE(wrong_types_are_named_with_file_and_line) {
  BOOST_TEST(error_of("[bus]\ntcp_hwm = \"many\"\n") == "cfg.toml:2: bus.tcp_hwm: must be an integer");
  BOOST_TEST(error_of("[bus]\ntcp_hwm = 1.5\n") == "cfg.toml:2: bus.tcp_hwm: must be an integer");
  BOOST_TEST(error_of("node_id = 5\n") == "cfg.toml:1: node_id: must be a string");
  BOOST_TEST(error_of("[bus]\npeers = \"tcp://a:1\"\n") == "cfg.toml:2: bus.peers: must be an array of strings");
  BOOST_TEST(error_of("[bus]\npeers = [\"tcp://a:1\", 7]\n") == "cfg.toml:2: bus.peers: must be an array of strings");
  BOOST_TEST(error_of("[http]\nenabled = \"yes\"\n") == "cfg.toml:2: http.enabled: must be true or false");
  BOOST_TEST(error_of("bus = 3\n") == "cfg.toml:1: bus: must be a table ([bus])");
  BOOST_TEST(error_of("[http]\nwrite_keys = [\"wk\", \"\"]\n") ==
             "cfg.toml:2: http.write_keys: must not contain an empty key");
  BOOST_TEST(error_of("[batcher]\noverflow = \"spill\"\n") ==
             "cfg.toml:2: batcher.overflow: must be \"block\", \"drop_newest\" or \"drop_oldest\"");
}

BOOST_AUTO_TEST_CASE(out_of_range_values_are_named_with_file_and_line) {
  BOOST_TEST(error_of("[http]\nthreads = 1\n") == "cfg.toml:2: http.threads: must be in 2..1024");
  BOOST_TEST(error_of("[http]\nthreads = 32\nmax_threads = 8\n") == "cfg.toml:3: http.max_threads: must be at least threads (32)");
  BOOST_TEST(error_of("[http]\nmax_threads = 5000\n") == "cfg.toml:2: http.max_threads: must be in 2..4096");
  NodeOptions raised;  // threads alone above the default ceiling raises it
  BOOST_REQUIRE_EQUAL(apply("[http]\nthreads = 512\n", raised), "");
  BOOST_TEST(raised.http.max_threads == 512);
  BOOST_TEST(error_of("[http]\nhealth_window_ms = 0\n") == "cfg.toml:2: http.health_window_ms: must be in 1..86400000");
  BOOST_TEST(error_of("node_id = \"n\"\nstore = \"mysql:foo\"\n") ==
             "cfg.toml:2: store: 'mysql:foo' is not sqlite:PATH, postgres:CONNINFO or none");
  BOOST_TEST(error_of("[bus]\ntcp_hwm = -1\n") == "cfg.toml:2: bus.tcp_hwm: must be in 0..16777216");
  BOOST_TEST(error_of("[bus]\npeer_unreachable_after_ms = 0\n") ==
             "cfg.toml:2: bus.peer_unreachable_after_ms: must be in 1..86400000");
  BOOST_TEST(error_of("[bus]\npeer_connect_timeout_ms = 50\n") ==
             "cfg.toml:2: bus.peer_connect_timeout_ms: must be 0 (the system's) or 100..3600000");
  BOOST_TEST(error_of("[bus]\nqueue_max_bytes = 100\n") == "cfg.toml:2: bus.queue_max_bytes: must be in 65536..1099511627776");
  BOOST_TEST(error_of("[batcher]\nflush_interval_ms = -5\n") == "cfg.toml:2: batcher.flush_interval_ms: must be in 0..86400000");
  BOOST_TEST(error_of("[counters]\nmax_keys = 0\n") == "cfg.toml:2: counters.max_keys: must be in 1..4294967296");
  BOOST_TEST(error_of("[batcher]\nreplay_interval_ms = 2000\nreplay_max_backoff_ms = 1000\n") ==
             "cfg.toml:3: batcher.replay_max_backoff_ms: must be >= replay_interval_ms (2000)");
  BOOST_TEST(error_of("[batcher]\nreplay_interval_ms = 70000\n") ==
             "cfg.toml:2: batcher.replay_interval_ms: must be <= replay_max_backoff_ms (60000)");
  BOOST_TEST(error_of("[batcher]\nreplay_interval_ms = 1\n") == "cfg.toml:2: batcher.replay_interval_ms: must be in 100..86400000");
}

BOOST_AUTO_TEST_CASE(a_bad_listen_address_names_file_line_and_key) {
  const std::string e = error_of("[http]\nthreads = 4\nlisten = \"localhost\"\n");
  BOOST_TEST(e == "cfg.toml:3: http.listen: 'localhost' is not HOST:PORT");
  const std::string p = error_of("[http]\nlisten = \"127.0.0.1:99999\"\n");
  BOOST_TEST(p == "cfg.toml:2: http.listen: port in '127.0.0.1:99999' is not 0..65535");
  const std::string s = error_of("[syslog]\nlisten = \"udp-host\"\n");
  BOOST_TEST(s == "cfg.toml:2: syslog.listen: 'udp-host' is not HOST:PORT");
  // An empty one was ignored: the node bound the default 127.0.0.1:7480.
  BOOST_TEST(error_of("[http]\nlisten = \"\"\n") ==
             "cfg.toml:2: http.listen: empty: HOST:PORT (use enabled = false for no HTTP API)");
}

// What the library would refuse later is refused here, in the file's terms: the node used to
// stop with "BusOptions.node_id: longer than 64 bytes", and bind with a tcp port past 65535.
BOOST_AUTO_TEST_CASE(library_limits_are_named_with_file_line_and_key) {
  BOOST_TEST(error_of("node_id = \"" + std::string(65, 'n') + "\"\n") ==
             "cfg.toml:1: node_id: must be 0..64 bytes (it is 65)");
  BOOST_TEST(error_of("[bus]\nname = \"\"\n") == "cfg.toml:2: bus.name: must be 1..64 bytes (it is 0)");
  BOOST_TEST(error_of("[bus]\nbind = \"tcp://0.0.0.0:99999\"\n").rfind("cfg.toml:2: bus.bind: ", 0) == 0);
  BOOST_TEST(error_of("[bus]\nbind = \"udp://x:1\"\n").rfind("cfg.toml:2: bus.bind: ", 0) == 0);
  BOOST_TEST(error_of("[bus]\npeers = [\"tcp://a:1\",\n  \"tcp://b\"]\n").rfind("cfg.toml:3: bus.peers: ", 0) == 0);  // the entry's line
  BOOST_TEST(error_of("[bus]\npublish_to = [\"tcp://a:70000\"]\n").rfind("cfg.toml:2: bus.publish_to: ", 0) == 0);
  NodeOptions o;  // at the limits, and a peer naming its server's key after '#', are fine
  BOOST_TEST(::apply("node_id = \"" + std::string(64, 'n') + "\"\n[bus]\npeers = [\"tcp://a:1#" + std::string(40, 'k') +
                       "\"]\nbind = \"tcp://*:7400\"\n", o) == "");
  BOOST_TEST(o.bus.node_id.size() == 64u);
}

BOOST_AUTO_TEST_CASE(toml_syntax_errors_name_file_and_line) {
  const std::string e = error_of("node_id = \"a\"\n[bus\nname = \"x\"\n");
  BOOST_TEST(e.rfind("cfg.toml:2: ", 0) == 0, e);
  const std::string unterminated = error_of("[http]\ntoken = \"abc\n");
  BOOST_TEST(unterminated.rfind("cfg.toml:2: ", 0) == 0, unterminated);
  const std::string duplicate = error_of("store = \"none\"\nstore = \"none\"\n");
  BOOST_TEST(duplicate.rfind("cfg.toml:2: ", 0) == 0, duplicate);
  // One line: the message goes on a single stderr line.
  BOOST_TEST(e.find('\n') == std::string::npos);
}

// toml++ names only the line and column of a value it cannot read (an integer past int64): the
// error names the key that line sets, with its table, like every other config error.
BOOST_AUTO_TEST_CASE(a_value_toml_cannot_read_names_its_key) {
  const std::string huge = "99999999999999999999";  // > INT64_MAX
  const std::string e = error_of("node_id = \"a\"\n[batcher]\nbatch_size = " + huge + "\n");
  BOOST_TEST(e.rfind("cfg.toml:3: batcher.batch_size: ", 0) == 0, e);
  BOOST_TEST(contains(e, "'" + huge + "'"), e);  // toml++'s own description follows
  BOOST_TEST(e.find('\n') == std::string::npos);
  // CRLF lines, blanks, a comment and a commented header; a top-level key before any table.
  BOOST_TEST(error_of("# [http]\r\n[ batcher ]  # the batcher\r\n\r\n  flush_at\t= " + huge + "\r\n")
                 .rfind("cfg.toml:4: batcher.flush_at: ", 0) == 0);
  BOOST_TEST(error_of("node_id = " + huge + "\n[bus]\n").rfind("cfg.toml:1: node_id: ", 0) == 0);
  // Quoted and dotted keys and headers, as written (without the blanks around the dots).
  BOOST_TEST(error_of("[bus . 'x y']\n\"odd key\" . sub = " + huge + "\n")
                 .rfind("cfg.toml:2: bus.'x y'.\"odd key\".sub: ", 0) == 0);
  BOOST_TEST(error_of("[[bus]]\ntcp_hwm = " + huge + "\n").rfind("cfg.toml:2: bus.tcp_hwm: ", 0) == 0);
  // A line inside a multi-line array or string belongs to the key whose value it continues; a
  // header inside a string or a nested array on a line of its own is no header.
  BOOST_TEST(error_of("[bus]\npeers = [\n  \"a\",  # ]\n  [\"b\"],\n  " + huge + ",\n]\n")
                 .rfind("cfg.toml:5: bus.peers: ", 0) == 0);
  BOOST_TEST(error_of("[http]\ntoken = \"\"\"\n[bus]\nx = \"\"\"\nthreads = " + huge + "\n")
                 .rfind("cfg.toml:5: http.threads: ", 0) == 0);
  BOOST_TEST(error_of("[http]\ntoken = '''\n[bus]\n''''' # '''\nthreads = " + huge + "\n")
                 .rfind("cfg.toml:5: http.threads: ", 0) == 0);
  BOOST_TEST(error_of("[http]\ntoken = \"\"\"never closed\n[bus]\n").rfind("cfg.toml:", 0) == 0);
}

BOOST_AUTO_TEST_CASE(a_toml_error_on_a_line_without_a_key_names_only_the_line) {
  // The unrelated syntax errors: a broken header, a line that is no `key = value`.
  const std::string header = error_of("node_id = \"a\"\n[bus\nname = \"x\"\n");
  BOOST_TEST(header.rfind("cfg.toml:2: ", 0) == 0, header);
  BOOST_TEST(!contains(header, "node_id"), header);
  BOOST_TEST(!contains(header, "bus:"), header);
  BOOST_TEST(header.size() > std::string("cfg.toml:2: ").size());  // toml++'s description
  const std::string stray = error_of("[http]\nthreads = 4\n= 5\n");
  BOOST_TEST(stray.rfind("cfg.toml:3: ", 0) == 0, stray);
  BOOST_TEST(!contains(stray, "http."), stray);
  // Hostile input: a key of 100,000 bytes is cut short, control characters do not reach the
  // line; a lone CR, a NUL, a BOM, an empty last line, and every prefix of a full config
  // (errors at the end of the text, inside strings and arrays) give one short line each.
  const std::string huge = "99999999999999999999";
  const std::string long_key = error_of("[bus]\n\"" + std::string(100'000, 'k') + "\" = " + huge + "\n");
  BOOST_TEST(long_key.rfind("cfg.toml:2: bus.\"kkk", 0) == 0);
  BOOST_TEST(contains(long_key, "k...: "), long_key.substr(0, 300));
  BOOST_TEST(long_key.size() < 400u, long_key.substr(0, 300));
  const std::string escaped = error_of("[bus]\n\"a\\tb\" = " + huge + "\n");
  BOOST_TEST(escaped.rfind("cfg.toml:2: bus.\"a\\tb\": ", 0) == 0, escaped);  // as written
  const std::string control = error_of("[bus]\n\"a\x01" "b\" = 1\n");  // toml++ refuses the raw control character
  BOOST_TEST(control.rfind("cfg.toml:2: bus.\"a?b\": ", 0) == 0, control);
  for (const std::string& text : {std::string("x = 1\r"), std::string("x = 1\n\r"), std::string("x = \0", 5),
                                  std::string("\xEF\xBB\xBFx = ") + huge, std::string("x = 1\n\n\n[") + "\n",
                                  "[" + std::string(1 << 20, 'a')}) {
    const std::string err = error_of(text);
    BOOST_TEST(err.rfind("cfg.toml:", 0) == 0, err);
    BOOST_TEST(err.find('\n') == std::string::npos, err);
    BOOST_TEST(err.size() < 400u);
  }
  BOOST_TEST(error_of("\xEF\xBB\xBFx = " + huge).rfind("cfg.toml:1: x: ", 0) == 0);
  const std::string full = kEveryKey;
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string err = error_of(full.substr(0, n) + huge + "\n");
    BOOST_TEST_CONTEXT("prefix " << n) {
      BOOST_TEST(err.find('\n') == std::string::npos, err);
      BOOST_TEST(err.size() < 400u, err);
    }
  }
}

BOOST_AUTO_TEST_CASE(the_first_error_is_reported_and_nothing_is_silently_ignored) {
  NodeOptions o;
  const std::string e = apply("store = \"none\"\n[bus]\ntcp_hwm = \"x\"\n", o);
  BOOST_TEST(e == "cfg.toml:3: bus.tcp_hwm: must be an integer");
}

BOOST_AUTO_TEST_CASE(files_are_read_and_missing_ones_are_named) {
  test::TempDir dir;
  const std::string path = dir.sub("node.toml");
  {
    std::ofstream out(path);
    out << "node_id = \"from-file\"\n[http]\nlisten = \"127.0.0.1:0\"\n";
  }
  NodeOptions o;
  BOOST_REQUIRE_EQUAL(apply_config_file(path, o), "");
  BOOST_TEST(o.bus.node_id == "from-file");
  BOOST_TEST(o.http.port == 0);

  const std::string missing = apply_config_file(dir.sub("nope.toml"), o);
  BOOST_TEST(missing == dir.sub("nope.toml") + ": cannot open the file: No such file or directory");
  // A directory is not a config file (it must not read as an empty, valid document).
  const std::string directory = apply_config_file(dir.str(), o);
  BOOST_TEST(directory.rfind(dir.str() + ": ", 0) == 0, directory);

  {
    std::ofstream out(path);
    out << "\n\n[batcher]\nflush_at = 0\n";
  }
  BOOST_TEST(apply_config_file(path, o) == path + ":4: batcher.flush_at: must be in 1..1048576");

  // A device read whole exhausted memory (/dev/zero: 24 GB before the OOM killer); a FIFO
  // without a writer blocked for good a program that has SIGINT and SIGTERM blocked.
  BOOST_TEST(apply_config_file("/dev/zero", o) == "/dev/zero: is not a regular file or a pipe");
  const std::string fifo = dir.sub("fifo.toml");
  BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  NodeOptions from_fifo;
  BOOST_TEST(apply_config_file(fifo, from_fifo) == "");  // no writer: an empty document, at once
  {
    std::ofstream out(path);
    out << "# " << std::string(1 << 20, 'x') << "\n";
  }
  BOOST_TEST(apply_config_file(path, o) == path + ": file larger than 1 MiB");
  std::string key;
  BOOST_TEST(read_curve_key("/dev/zero", "secret", "bus.curve_secret_key", key).find("not a regular file") !=
             std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ParseListen)

BOOST_AUTO_TEST_CASE(host_and_port) {
  std::string host;
  int port = -1;
  BOOST_TEST(parse_listen("0.0.0.0:7480", "--http", host, port) == "");
  BOOST_TEST(host == "0.0.0.0");
  BOOST_TEST(port == 7480);
  BOOST_TEST(parse_listen("[::1]:0", "--http", host, port) == "");
  BOOST_TEST(host == "::1");
  BOOST_TEST(port == 0);
  BOOST_TEST(parse_listen(":80", "--http", host, port) == "--http: ':80' is not HOST:PORT");
  BOOST_TEST(parse_listen("host:", "--http", host, port) == "--http: port in 'host:' is not 0..65535");
  BOOST_TEST(parse_listen("host:8o", "--http", host, port) == "--http: port in 'host:8o' is not 0..65535");
  BOOST_TEST(parse_listen("host:-1", "--http", host, port) == "--http: port in 'host:-1' is not 0..65535");
  BOOST_TEST(parse_listen("host: 80", "--http", host, port) == "--http: port in 'host: 80' is not 0..65535");
  BOOST_TEST(parse_listen("host:+80", "--http", host, port) == "--http: port in 'host:+80' is not 0..65535");
  BOOST_TEST(parse_listen("host:99999999999", "--http", host, port) == "--http: port in 'host:99999999999' is not 0..65535");
  BOOST_TEST(host == "::1");  // unchanged by a refused value
}

BOOST_AUTO_TEST_SUITE_END()
