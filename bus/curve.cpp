// CURVE keys, "endpoint#key" peers, and the ZAP handler (see bus/curve.hpp).
#include "bus/curve.hpp"
#include "bus/thread_name.hpp"

#include "reqbus/error.hpp"

namespace reqbus::detail {
namespace {

std::string z85_decode(std::string_view key) {
  std::string raw(32, '\0');
  const std::string text(key);
  if (key.size() != kZ85KeyLength || !zmq_z85_decode(reinterpret_cast<uint8_t*>(raw.data()), text.c_str()))
    return {};
  return raw;
}

std::string z85_encode(const std::string& raw) {
  char text[kZ85KeyLength + 1] = {0};
  zmq_z85_encode(text, reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  return text;
}

}  // namespace

bool valid_z85_key(std::string_view key) { return !z85_decode(key).empty(); }

std::string curve_public_of(const std::string& secret_z85) {
  char public_key[kZ85KeyLength + 1] = {0};
  if (!valid_z85_key(secret_z85) || zmq_curve_public(public_key, secret_z85.c_str()) != 0)
    throw Error(ErrorCode::invalid_argument, "not a 40-character Z85 CURVE secret key");
  return public_key;
}

PeerEndpoint parse_peer(const std::string& entry, bool curve, const std::string& field) {
  auto fail = [&](const std::string& why) {
    throw Error(ErrorCode::invalid_argument, "BusOptions." + field + ": '" + entry.substr(0, 80) + "' " + why);
  };
  PeerEndpoint p;
  const size_t hash = entry.find('#');
  p.endpoint = entry.substr(0, hash);
  if (p.endpoint.rfind("tcp://", 0) != 0) fail("is not a tcp:// endpoint");
  if (hash != std::string::npos) p.server_key = entry.substr(hash + 1);
  if (curve && p.server_key.empty()) fail("needs the server's public key: tcp://HOST:PORT#<key>");
  if (curve && !valid_z85_key(p.server_key)) fail("has a server key that is not 40 characters of Z85");
  if (!curve && hash != std::string::npos) fail("names a CURVE key but the bus has no curve_secret_key");
  return p;
}

void make_curve_server(zmq::socket_t& socket, const CurveKeys& keys) {
  socket.set(zmq::sockopt::zap_domain, "reqbus");
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret);
}

void make_curve_client(zmq::socket_t& socket, const CurveKeys& keys, const std::string& server_key) {
  socket.set(zmq::sockopt::curve_secretkey, keys.secret);
  socket.set(zmq::sockopt::curve_publickey, keys.public_key);
  socket.set(zmq::sockopt::curve_serverkey, server_key);
}

ZapHandler::ZapHandler(zmq::context_t& context, const std::vector<std::string>& allowed_z85, std::string owner)
    : context_(context), owner_(std::move(owner)) {
  for (const auto& key : allowed_z85) {
    std::string raw = z85_decode(key);
    if (raw.empty())
      throw Error(ErrorCode::invalid_argument, "curve_allowed_clients: '" + key.substr(0, 60) + "' is not a 40-character Z85 key");
    allowed_keys_.insert(std::move(raw));
  }
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = detail::named_thread("rb-zap", [this, s = std::move(started)]() mutable { run(std::move(s)); });
  try {
    ready.get();
  } catch (const zmq::error_t& e) {
    thread_.join();
    throw Error(ErrorCode::transport, owner_ + ": cannot start the ZAP handler: " + e.what());
  }
}

ZapHandler::~ZapHandler() { stop(); }

void ZapHandler::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::run(std::promise<void> started) {
  std::optional<zmq::socket_t> rep;
  try {
    rep.emplace(context_, zmq::socket_type::rep);
    rep->set(zmq::sockopt::linger, 0);
    rep->bind("inproc://zeromq.zap.01");
    started.set_value();
  } catch (...) {
    started.set_exception(std::current_exception());
    return;
  }
  while (!stop_.load()) {
    zmq::pollitem_t item{rep->handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
    } catch (const zmq::error_t&) {
      break;  // context terminated
    }
    if (!(item.revents & ZMQ_POLLIN)) continue;
    // version, request id, domain, address, routing id, mechanism, credentials...
    std::vector<zmq::message_t> parts;
    while (true) {
      zmq::message_t part;
      if (!rep->recv(part)) break;
      const bool more = part.more();
      parts.push_back(std::move(part));
      if (!more) break;
    }
    auto text = [&](size_t i) { return i < parts.size() ? parts[i].to_string() : std::string(); };
    const std::string mechanism = text(5), address = text(3);
    const bool ok = parts.size() >= 7 && text(0) == "1.0" && mechanism == "CURVE" &&
                    allowed_keys_.count(parts[6].to_string()) > 0;
    if (ok) {
      allowed_.fetch_add(1, std::memory_order_relaxed);
    } else {
      refused_.fetch_add(1, std::memory_order_relaxed);
      const std::string who = parts.size() >= 7 && parts[6].size() == 32 ? z85_encode(parts[6].to_string()) : "?";
      log_limit_.log(LogLevel::warn, owner_ + ": refused a " + mechanism + " client from " + address +
                                         " with public key " + who + " (not in curve_allowed_clients)");
    }
    const std::string version = "1.0", id = text(1), code = ok ? "200" : "400",
                      status = ok ? "OK" : "key not allowed", user = ok ? "peer" : "";
    rep->send(zmq::buffer(version), zmq::send_flags::sndmore);
    rep->send(zmq::buffer(id), zmq::send_flags::sndmore);
    rep->send(zmq::buffer(code), zmq::send_flags::sndmore);
    rep->send(zmq::buffer(status), zmq::send_flags::sndmore);
    rep->send(zmq::buffer(user), zmq::send_flags::sndmore);
    rep->send(zmq::buffer(std::string()), zmq::send_flags::none);
  }
}

}  // namespace reqbus::detail
