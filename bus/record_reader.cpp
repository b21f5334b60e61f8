// Decoding without an object tree: msgpack-c's visitor parser (msgpack::parse with a visitor)
// calls RecordReader for each value as it reads it, and each value goes straight into its
// field of a Message. Before, msgpack::unpack built a tree of msgpack::objects in a zone for
// the whole frame and a second pass copied it out; on the subscriber's reader thread that was
// half of the decode time. docs/WIRE.md is the layout; the checks are the ones it documents.
#include "bus/record_reader.hpp"

#include <limits>

#include "reqbus/request_log.hpp"

namespace reqbus::codec::detail {

std::optional<DecodeError> RecordReader::run(const char* data) {
  if (frame_) {
    header_->count = 0;
    header_->declared = 0;
  }
  std::size_t off = 0;
  const bool ok = msgpack::parse(data, size_, off, *this);
  if (error_) return error_;
  if (!ok) return insufficient_ ? DecodeError::truncated : DecodeError::not_msgpack;
  if (off != size_) return DecodeError::wrong_shape;  // trailing bytes
  return std::nullopt;
}

bool RecordReader::fail(DecodeError error) {
  if (!error_) error_ = error;
  return false;
}

// --- structure ---------------------------------------------------------------------------

bool RecordReader::start_array(uint32_t n) {
  // Each element takes at least one byte: a longer declared array is cut short.
  if (n > size_) return fail(DecodeError::truncated);
  const int depth = depth_ + 1;
  if (frame_ && depth == 1) {
    root_size_ = n;
  } else if (frame_ && depth == 2) {
    if (index_[0] != 4) return fail(DecodeError::wrong_shape);  // the records array is item 4
    header_->declared = n;
    header_->count = 0;
  } else if (depth == record_depth_) {
    if (n < 2) return fail(DecodeError::wrong_shape);
    record_size_ = n;
    if (frame_) {
      if (out_->size() <= records_) out_->emplace_back();  // grown as records come, never ahead
      message_ = &(*out_)[records_];
    }
  } else {
    return fail(DecodeError::wrong_shape);  // no reqbus layout nests deeper
  }
  depth_ = depth;
  index_[depth_ - 1] = 0;
  return true;
}

bool RecordReader::end_array_item() {
  ++index_[depth_ - 1];
  return true;
}

bool RecordReader::end_array() {
  if (depth_ == record_depth_) {
    if (auto error = finish_record()) return fail(*error);
    if (frame_) header_->count = ++records_;
  } else if (frame_ && depth_ == 1 && index_[0] != 5) {
    return fail(DecodeError::wrong_shape);
  }
  --depth_;
  return true;
}

bool RecordReader::start_map(uint32_t) { return fail(DecodeError::wrong_shape); }  // none in reqbus

// --- scalars -------------------------------------------------------------------------------

bool RecordReader::visit_nil() { return scalar(Value(Value::nil)); }
bool RecordReader::visit_boolean(bool) { return scalar(Value(Value::other)); }
bool RecordReader::visit_positive_integer(uint64_t v) {
  Value value(Value::uint);
  value.u = v;
  return scalar(value);
}
bool RecordReader::visit_negative_integer(int64_t v) {
  // msgpack-c reports every signed encoding (int8..int64) here, even non-negative values;
  // like its object tree, read those as positive.
  if (v >= 0) return visit_positive_integer(static_cast<uint64_t>(v));
  Value value(Value::negative);
  value.i = v;
  return scalar(value);
}
bool RecordReader::visit_float32(float v) { return visit_float64(v); }
bool RecordReader::visit_float64(double v) {
  Value value(Value::real);
  value.d = v;
  return scalar(value);
}
bool RecordReader::visit_str(const char* v, uint32_t size) {
  Value value(Value::str);
  value.s = std::string_view(v, size);
  return scalar(value);
}
bool RecordReader::visit_bin(const char*, uint32_t) { return scalar(Value(Value::other)); }
bool RecordReader::visit_ext(const char*, uint32_t) { return scalar(Value(Value::other)); }

bool RecordReader::scalar(const Value& v) {
  if (frame_ && depth_ == 1) return header_field(v);
  if (depth_ == record_depth_) return record_field(v);
  return fail(DecodeError::wrong_shape);  // a scalar at the top, or where a record belongs
}

bool RecordReader::header_field(const Value& v) {
  switch (index_[0]) {
    case 0: {  // version first: a newer frame may have another shape
      if (v.type != Value::uint) return fail(DecodeError::wrong_shape);
      if (v.u == 0 || v.u > kWireVersion) return fail(DecodeError::unknown_version);
      if (root_size_ != 5) return fail(DecodeError::wrong_shape);
      return true;
    }
    case 1:
      if (!read_string(v, header_->node_id) || header_->node_id.empty() ||
          header_->node_id.size() > RequestLogLimits::node_id)
        return fail(DecodeError::wrong_shape);
      return true;
    case 2: return read_uint(v, header_->epoch) || fail(DecodeError::wrong_shape);
    case 3: return read_uint(v, header_->first_seq) || fail(DecodeError::wrong_shape);
    default: return fail(DecodeError::wrong_shape);  // item 4 must be the records array
  }
}

bool RecordReader::read_string(const Value& v, std::string& out) {
  if (v.type == Value::str) {
    out.assign(v.s.data(), v.s.size());
    return true;
  }
  if (v.type == Value::nil) {  // other writers may send nil for "absent"
    out.clear();
    return true;
  }
  return false;
}

bool RecordReader::read_uint(const Value& v, uint64_t& out) {
  if (v.type != Value::uint) return false;
  out = v.u;
  return true;
}

bool RecordReader::read_int(const Value& v, int64_t& out) {
  if (v.type == Value::uint) {
    if (v.u > uint64_t(std::numeric_limits<int64_t>::max())) return false;
    out = int64_t(v.u);
    return true;
  }
  if (v.type == Value::negative) {
    out = v.i;
    return true;
  }
  return false;
}

bool RecordReader::read_double(const Value& v, double& out) {
  switch (v.type) {
    case Value::real: out = v.d; return true;
    case Value::uint: out = double(v.u); return true;
    case Value::negative: out = double(v.i); return true;
    default: return false;
  }
}

bool RecordReader::record_field(const Value& v) {
  const uint32_t k = index_[depth_ - 1];
  Message& m = *message_;
  if (k == 0) {
    if (!read_uint(v, kind_)) return fail(DecodeError::wrong_shape);
    return true;
  }
  if (k == 1) {
    if (!read_uint(v, version_)) return fail(DecodeError::wrong_shape);
    switch (kind_) {  // the version decides the shape: check it first
      case uint64_t(MessageKind::request_sent):
        if (version_ == 0 || version_ > kRequestLogVersion) return fail(DecodeError::unknown_version);
        // v1 has 14 elements (kind, version, 12 PhoenixAnalytics fields); v2 adds node_id, seq.
        if (record_size_ != (version_ == 1 ? 14u : 16u)) return fail(DecodeError::wrong_shape);
        m.kind = MessageKind::request_sent;
        return true;
      case uint64_t(MessageKind::identify):
      case uint64_t(MessageKind::group):
      case uint64_t(MessageKind::track):
        if (version_ == 0 || version_ > kAnalyticsVersion) return fail(DecodeError::unknown_version);
        if (record_size_ != 14) return fail(DecodeError::wrong_shape);
        m.kind = MessageKind(kind_);
        m.analytics.type = AnalyticsType(kind_);
        return true;
      default:
        return fail(DecodeError::wrong_shape);
    }
  }
  bool ok = false;
  if (m.kind == MessageKind::request_sent) {
    RequestLog& r = m.request;
    switch (k) {
      case 2: ok = read_string(v, r.request_id); break;
      case 3: ok = read_string(v, r.method); break;
      case 4: ok = read_string(v, r.path); break;
      case 5: ok = read_uint(v, status_) && status_ <= 0xFFFF; break;
      case 6: ok = read_double(v, r.duration_ms); break;
      case 7: ok = read_string(v, r.user_agent); break;
      case 8: ok = read_string(v, r.remote_ip); break;
      case 9: ok = read_string(v, r.referer); break;
      case 10: ok = read_string(v, r.device_type); break;
      case 11: ok = read_string(v, r.session_id); break;
      case 12: ok = read_uint(v, views_) && views_ <= 0xFFFFFFFFu; break;
      case 13: ok = read_int(v, r.inserted_at); break;
      case 14: ok = read_string(v, r.node_id); break;
      case 15: ok = read_uint(v, r.seq); break;
      default: ok = false;
    }
  } else {
    AnalyticsEvent& e = m.analytics;
    switch (k) {
      case 2: ok = read_string(v, e.message_id); break;
      case 3: ok = read_string(v, e.user_id); break;
      case 4: ok = read_int(v, e.timestamp); break;
      case 5: ok = read_string(v, e.event); break;
      case 6: ok = read_string(v, e.email); break;
      case 7: ok = read_string(v, e.timezone); break;
      case 8: ok = read_string(v, e.account_id); break;
      case 9: ok = read_string(v, e.name); break;
      case 10: ok = read_string(v, e.traits_json); break;
      case 11: ok = read_string(v, e.properties_json); break;
      case 12: ok = read_string(v, e.node_id); break;
      case 13: ok = read_uint(v, e.seq); break;
      default: ok = false;
    }
  }
  return ok || fail(DecodeError::wrong_shape);
}

std::optional<DecodeError> RecordReader::finish_record() {
  Message& m = *message_;
  if (m.kind == MessageKind::request_sent) {
    RequestLog& r = m.request;
    if (version_ == 1) {
      r.node_id.clear();
      r.seq = 0;
    }
    r.status_code = uint16_t(status_);
    r.session_page_views = uint32_t(views_);
    if (!validate(r).empty()) return DecodeError::invalid_field;
    if (frame_ && r.node_id.empty()) r.node_id = header_->node_id;  // v1 records
  } else if (!validate(m.analytics).empty()) {
    return DecodeError::invalid_field;
  }
  kind_ = version_ = status_ = views_ = 0;
  return std::nullopt;
}

}  // namespace reqbus::codec::detail
