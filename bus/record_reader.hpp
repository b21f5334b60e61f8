#pragma once
// Private to bus/: RecordReader, the msgpack-c visitor that decodes a frame payload or a single
// record straight into Messages, without building a msgpack object tree first. It enforces the
// layout of docs/WIRE.md as it reads: versions before shapes, exact record sizes, no maps, no
// nesting beyond the layout, declared lengths within the input, validate() on each record.
// Thread-safety: one reader per decode call; no shared state.
#include <msgpack.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bus/frame.hpp"
#include "reqbus/codec.hpp"
#include "reqbus/message.hpp"

namespace reqbus::codec::detail {

class RecordReader : public msgpack::null_visitor {
 public:
  // A frame payload into out[0..header.count) (grown one Message at a time, never ahead of
  // the records actually read), or one record into `*single`.
  RecordReader(size_t size, reqbus::detail::FrameHeader& header, std::vector<Message>& out)
      : size_(size), frame_(true), record_depth_(3), header_(&header), out_(&out) {}
  RecordReader(size_t size, Message& single)
      : size_(size), frame_(false), record_depth_(1), message_(&single) {}

  // Parses [data, data + size); nullopt when the whole input was one valid frame / record.
  std::optional<DecodeError> run(const char* data);

  // msgpack-c's visitor interface (msgpack/v2/null_visitor.hpp). false stops the parse.
  bool visit_nil();
  bool visit_boolean(bool v);
  bool visit_positive_integer(uint64_t v);
  bool visit_negative_integer(int64_t v);
  bool visit_float32(float v);
  bool visit_float64(double v);
  bool visit_str(const char* v, uint32_t size);
  bool visit_bin(const char* v, uint32_t size);
  bool visit_ext(const char* v, uint32_t size);
  bool start_array(uint32_t n);
  bool end_array_item();
  bool end_array();
  bool start_map(uint32_t n);
  void parse_error(size_t, size_t) {}
  void insufficient_bytes(size_t, size_t) { insufficient_ = true; }

 private:
  struct Value {
    enum Type { nil, uint, negative, real, str, other };
    explicit Value(Type t) : type(t) {}
    Type type;
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    std::string_view s;
  };
  bool fail(DecodeError error);
  bool scalar(const Value& v);
  bool header_field(const Value& v);
  bool record_field(const Value& v);
  std::optional<DecodeError> finish_record();
  static bool read_string(const Value& v, std::string& out);
  static bool read_uint(const Value& v, uint64_t& out);
  static bool read_int(const Value& v, int64_t& out);
  static bool read_double(const Value& v, double& out);

  const size_t size_;
  const bool frame_;        // a frame payload, else a single record
  const int record_depth_;  // array depth of a record: 3 in a frame, 1 alone
  reqbus::detail::FrameHeader* header_ = nullptr;
  std::vector<Message>* out_ = nullptr;
  Message* message_ = nullptr;  // the record being read
  std::optional<DecodeError> error_;
  bool insufficient_ = false;
  int depth_ = 0;           // arrays open
  uint32_t index_[3] = {};  // item index within each open array
  uint32_t root_size_ = 0;  // frame: items in the root array
  uint32_t record_size_ = 0;
  uint32_t records_ = 0;    // frame: records decoded
  uint64_t kind_ = 0, version_ = 0, status_ = 0, views_ = 0;  // the record's, until it ends
};

}  // namespace reqbus::codec::detail
