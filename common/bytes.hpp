// One bounds-checked reader and writer for every wire format (in the spirit of Arti's tor-bytes).
// Parsers never do pointer arithmetic: they ask the Reader, which says false when bytes run out.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace thor {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using MutableByteView = std::span<std::uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Reads big-endian integers and byte runs from a span. Every read either succeeds whole or returns
// false and consumes nothing, so a caller can map "ran out" to "need more bytes" or to "invalid".
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}

  std::size_t remaining() const { return data_.size() - pos_; }
  std::size_t consumed() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  bool u8(std::uint8_t& out) {
    if (remaining() < 1) return false;
    out = data_[pos_++];
    return true;
  }
  bool u16(std::uint16_t& out) {
    if (remaining() < 2) return false;
    out = static_cast<std::uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u32(std::uint32_t& out) {
    if (remaining() < 4) return false;
    out = 0;
    for (int i = 0; i < 4; ++i) out = (out << 8) | data_[pos_ + i];
    pos_ += 4;
    return true;
  }
  bool u64(std::uint64_t& out) {
    if (remaining() < 8) return false;
    out = 0;
    for (int i = 0; i < 8; ++i) out = (out << 8) | data_[pos_ + i];
    pos_ += 8;
    return true;
  }
  // A view of the next n bytes (valid while the underlying buffer is).
  bool take(std::size_t n, ByteView& out) {
    if (remaining() < n) return false;
    out = data_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool copy(MutableByteView out) {
    if (remaining() < out.size()) return false;
    if (!out.empty()) std::memcpy(out.data(), data_.data() + pos_, out.size());
    pos_ += out.size();
    return true;
  }
  template <std::size_t N>
  bool array(std::array<std::uint8_t, N>& out) {
    return copy(MutableByteView(out));
  }
  bool skip(std::size_t n) {
    if (remaining() < n) return false;
    pos_ += n;
    return true;
  }
  ByteView rest() const { return data_.subspan(pos_); }
  ByteView take_rest() {
    ByteView r = rest();
    pos_ = data_.size();
    return r;
  }

 private:
  ByteView data_;
  std::size_t pos_ = 0;
};

// Appends big-endian integers and byte runs to a growable buffer.
class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  Writer& u8(std::uint8_t v) {
    out_.push_back(v);
    return *this;
  }
  Writer& u16(std::uint16_t v) {
    out_.push_back(static_cast<std::uint8_t>(v >> 8));
    out_.push_back(static_cast<std::uint8_t>(v));
    return *this;
  }
  Writer& u32(std::uint32_t v) {
    for (int i = 3; i >= 0; --i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
  }
  Writer& u64(std::uint64_t v) {
    for (int i = 7; i >= 0; --i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
  }
  Writer& bytes(ByteView b) {
    out_.insert(out_.end(), b.begin(), b.end());
    return *this;
  }
  Writer& bytes(std::string_view s) { return bytes(as_bytes(s)); }
  Writer& zeros(std::size_t n) {
    out_.insert(out_.end(), n, 0);
    return *this;
  }
  std::size_t size() const { return out_.size(); }

 private:
  Bytes& out_;
};

// Writes into a fixed buffer (a cell). Writing past the end is a bug in the caller, who knows the
// sizes; it is recorded in ok() and the excess is dropped rather than overrunning memory.
class SpanWriter {
 public:
  explicit SpanWriter(MutableByteView out) : out_(out) {}
  bool ok() const { return ok_; }
  std::size_t written() const { return pos_; }
  std::size_t remaining() const { return out_.size() - pos_; }
  SpanWriter& u8(std::uint8_t v) {
    std::uint8_t b[1] = {v};
    return bytes(ByteView(b, 1));
  }
  SpanWriter& u16(std::uint16_t v) {
    std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
    return bytes(ByteView(b, 2));
  }
  SpanWriter& u32(std::uint32_t v) {
    std::uint8_t b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * (3 - i)));
    return bytes(ByteView(b, 4));
  }
  SpanWriter& u64(std::uint64_t v) {
    std::uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * (7 - i)));
    return bytes(ByteView(b, 8));
  }
  SpanWriter& bytes(ByteView b) {
    if (b.size() > remaining()) {
      ok_ = false;
      return *this;
    }
    if (!b.empty()) std::memcpy(out_.data() + pos_, b.data(), b.size());
    pos_ += b.size();
    return *this;
  }
  SpanWriter& bytes(std::string_view s) { return bytes(as_bytes(s)); }
  SpanWriter& zeros(std::size_t n) {
    if (n > remaining()) {
      ok_ = false;
      return *this;
    }
    std::memset(out_.data() + pos_, 0, n);
    pos_ += n;
    return *this;
  }

 private:
  MutableByteView out_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace thor
