// seqmix::io::safetensors: a validating reader and a small writer for the safetensors format
// (8-byte little-endian header length N, N bytes of JSON header, then the data section).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../config.hpp"
#include "../error.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::io {

/// Element types seqmix reads. Files with other dtypes (BOOL, U16, F8_*, ...) are rejected.
enum class dtype { f32, f64, bf16, f16, i64, i32, i8, u8 };

/// Bytes per element of `t`.
constexpr std::size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::f64: case dtype::i64: return 8;
    case dtype::f32: case dtype::i32: return 4;
    case dtype::bf16: case dtype::f16: return 2;
    case dtype::i8: case dtype::u8: return 1;
  }
  return 0;
}

/// The safetensors spelling of `t`: "F32", "F64", "BF16", "F16", "I64", "I32", "I8", "U8".
constexpr std::string_view dtype_name(dtype t) {
  constexpr std::array<std::string_view, 8> names{"F32", "F64", "BF16", "F16", "I64", "I32", "I8", "U8"};
  const auto i = static_cast<std::size_t>(t);
  return i < names.size() ? names[i] : std::string_view("?");
}

/// One tensor entry of a safetensors header.
struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<index_t> shape;  ///< `[]` is a scalar (one element)
  std::size_t begin = 0, end = 0;  ///< byte offsets within the data section, [begin, end)

  /// Number of elements (1 for a scalar, 0 when any extent is 0).
  index_t numel() const {
    index_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
};

namespace detail {
static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "safetensors decoding assumes IEEE-754 float and double");

inline std::optional<dtype> parse_dtype(std::string_view s) {
  for (int i = 0; i < 8; ++i)
    if (dtype_name(static_cast<dtype>(i)) == s) return static_cast<dtype>(i);
  return std::nullopt;
}

/// The dtype a C++ type is stored as without conversion, if any.
template <class T>
constexpr std::optional<dtype> dtype_of() {
  if constexpr (std::is_same_v<T, float>) return dtype::f32;
  else if constexpr (std::is_same_v<T, double>) return dtype::f64;
  else if constexpr (std::is_same_v<T, std::int64_t>) return dtype::i64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return dtype::i32;
  else if constexpr (std::is_same_v<T, std::int8_t>) return dtype::i8;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return dtype::u8;
  else return std::nullopt;
}

/// Little-endian load of an unsigned integer from a possibly unaligned address.
template <class U>
U load_le(const std::byte* p) {
  std::array<std::byte, sizeof(U)> b;
  std::memcpy(b.data(), p, sizeof(U));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
  return std::bit_cast<U>(b);
}

/// IEEE binary16 -> float, exact for every input (subnormals, signed zero, inf, nan payloads).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24 is exact in float
    const float m = static_cast<float>(man) * 0x1p-24f;
    return sign ? -m : m;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));  // rebias 15 -> 127
}

/// bfloat16 is the top half of a float.
inline float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

/// Decodes n elements of `type` at `in` (any alignment) into out[0..n).
template <class T>
void convert(dtype type, const std::byte* in, T* out, index_t n) {
  const std::size_t es = dtype_size(type);
  auto each = [&](auto decode) {
    for (index_t i = 0; i < n; ++i) out[i] = static_cast<T>(decode(in + static_cast<std::size_t>(i) * es));
  };
  using std::bit_cast;
  switch (type) {
    case dtype::f32: each([](const std::byte* p) { return bit_cast<float>(load_le<std::uint32_t>(p)); }); break;
    case dtype::f64: each([](const std::byte* p) { return bit_cast<double>(load_le<std::uint64_t>(p)); }); break;
    case dtype::bf16: each([](const std::byte* p) { return bf16_to_float(load_le<std::uint16_t>(p)); }); break;
    case dtype::f16: each([](const std::byte* p) { return half_to_float(load_le<std::uint16_t>(p)); }); break;
    case dtype::i64: each([](const std::byte* p) { return bit_cast<std::int64_t>(load_le<std::uint64_t>(p)); }); break;
    case dtype::i32: each([](const std::byte* p) { return bit_cast<std::int32_t>(load_le<std::uint32_t>(p)); }); break;
    case dtype::i8: each([](const std::byte* p) { return bit_cast<std::int8_t>(load_le<std::uint8_t>(p)); }); break;
    case dtype::u8: each([](const std::byte* p) { return load_le<std::uint8_t>(p); }); break;
  }
}
}  // namespace detail

/// A parsed, fully validated safetensors file. Owns its bytes; `raw()` spans point into them and
/// stay valid as long as this object (moves keep them valid, copies do not share them).
class safetensors {
 public:
  using metadata_map = std::map<std::string, std::string, std::less<>>;

  /// An empty file: no tensors, no metadata.
  safetensors() = default;

  /// Reads and parses the whole file; throws seqmix::error naming `path` if it cannot be read.
  static safetensors load(const std::filesystem::path& path) {
    const std::string where = "safetensors " + path.string() + ": ";
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);  // also rejects directories
    if (ec) throw error(where + "cannot open file (" + ec.message() + ")");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(where + "cannot open file");
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (static_cast<std::uintmax_t>(in.gcount()) != size) throw error(where + "short read");
    return parse(std::move(bytes), path.string());
  }

  /// Parses and validates an in-memory file. `source` names it in error messages.
  static safetensors parse(std::vector<std::byte> bytes, std::string source = "<memory>") {
    safetensors f;
    f.bytes_ = std::move(bytes);
    f.source_ = std::move(source);
    const std::size_t size = f.bytes_.size();
    if (size < 8) f.fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
    const std::uint64_t n = detail::load_le<std::uint64_t>(f.bytes_.data());
    if (n > size - 8)  // not 8 + n > size: that could overflow
      f.fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
             " bytes)");
    f.data_begin_ = 8 + static_cast<std::size_t>(n);
    const std::size_t data_size = size - f.data_begin_;

    nlohmann::json j;
    try {
      const char* h = reinterpret_cast<const char*>(f.bytes_.data() + 8);
      j = nlohmann::json::parse(h, h + n);  // trailing whitespace padding is accepted
    } catch (const nlohmann::json::exception& e) {
      f.fail(std::string("header is not valid JSON (") + e.what() + ")");
    }
    if (!j.is_object()) f.fail("header is not a JSON object");

    for (const auto& [key, value] : j.items()) {
      if (key == "__metadata__") {
        if (!value.is_object()) f.fail("__metadata__ is not a JSON object");
        for (const auto& [k, v] : value.items()) {
          if (!v.is_string()) f.fail("__metadata__ value of '" + k + "' is not a string");
          f.metadata_.emplace(k, v.get<std::string>());
        }
      } else {
        f.tensors_.emplace(key, f.parse_entry(key, value, data_size));
      }
    }
    f.check_layout(data_size);
    return f;
  }

  /// The path (or "<memory>" / the given name) used in messages.
  const std::string& source() const { return source_; }
  bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

  /// The entry of tensor `name`; throws seqmix::error naming the file and the tensor if missing.
  const tensor_info& info(std::string_view name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("no tensor named '" + std::string(name) + "'");
    return it->second;
  }

  /// All tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& kv : tensors_) out.push_back(kv.first);
    return out;
  }

  /// The `__metadata__` string map (empty if the file has none).
  const metadata_map& metadata() const { return metadata_; }
  /// One metadata value, or nullopt.
  std::optional<std::string> metadata(std::string_view key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) return std::nullopt;
    return it->second;
  }

  /// The stored little-endian bytes of tensor `name` (no alignment guarantee).
  std::span<const std::byte> raw(std::string_view name) const {
    const tensor_info& t = info(name);
    return {bytes_.data() + data_begin_ + t.begin, t.end - t.begin};
  }

  /// Tensor `name` converted to arithmetic T (F16/BF16 decoded exactly; integers and out-of-range
  /// values via static_cast). Throws if the stored rank is not Rank.
  template <class T, std::size_t Rank>
  tensor<T, Rank> get(std::string_view name) const {
    static_assert(std::is_arithmetic_v<T>, "safetensors::get: T must be an arithmetic type");
    const tensor_info& t = info(name);
    if (t.shape.size() != Rank)
      fail("tensor '" + t.name + "' has shape " + shape_string(t.shape) + " (rank " + std::to_string(t.shape.size()) +
           "), expected rank " + std::to_string(Rank));
    std::array<index_t, Rank> extents{};
    if constexpr (Rank > 0) std::copy(t.shape.begin(), t.shape.end(), extents.begin());  // begin() is null at Rank 0
    tensor<T, Rank> out(extents);
    const std::byte* src = bytes_.data() + data_begin_ + t.begin;
    if (detail::dtype_of<T>() == t.type && std::endian::native == std::endian::little)
      std::memcpy(out.data(), src, t.end - t.begin);
    else
      detail::convert(t.type, src, out.data(), t.numel());
    return out;
  }

  /// As get<T, Rank>(name), but first throws seqmix::error
  /// "<who>: <name> has shape [a, b], expected [c, d]" if the shape is not `expected`.
  template <class T, std::size_t Rank>
  tensor<T, Rank> get(std::string_view name, const std::array<index_t, Rank>& expected, std::string_view who) const {
    check_shape(who, name, info(name).shape, expected);
    return get<T, Rank>(name);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw error("safetensors " + source_ + ": " + what); }

  tensor_info parse_entry(const std::string& name, const nlohmann::json& e, std::size_t data_size) const {
    const std::string t = "tensor '" + name + "' ";
    if (!e.is_object()) fail(t + "entry is not a JSON object");
    auto field = [&](const char* key) -> const nlohmann::json& {
      const auto it = e.find(key);
      if (it == e.end()) fail(t + "has no " + key);
      return *it;
    };
    const auto& dt = field("dtype");
    const auto& sh = field("shape");
    const auto& off = field("data_offsets");

    tensor_info info{name, dtype::f32, {}, 0, 0};
    if (!dt.is_string()) fail(t + "dtype is not a string");
    const auto type = detail::parse_dtype(dt.get_ref<const std::string&>());
    if (!type) fail(t + "has unknown dtype '" + dt.get<std::string>() + "'");
    info.type = *type;

    // nlohmann parses every non-negative integer literal as number_unsigned.
    if (!sh.is_array()) fail(t + "shape is not an array");
    constexpr auto max_index = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
    index_t numel = 1;
    for (const auto& d : sh) {
      if (!d.is_number_unsigned()) fail(t + "shape " + sh.dump() + " has a negative or non-integer entry");
      const auto x = d.get<std::uint64_t>();
      if (x > max_index || (x != 0 && numel > std::numeric_limits<index_t>::max() / static_cast<index_t>(x)))
        fail(t + "element count of shape " + sh.dump() + " overflows");
      numel *= static_cast<index_t>(x);
      info.shape.push_back(static_cast<index_t>(x));
    }

    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(t + "data_offsets " + off.dump() + " are not two non-negative integers");
    const auto b = off[0].get<std::uint64_t>(), en = off[1].get<std::uint64_t>();
    if (b > en) fail(t + "data_offsets " + off.dump() + " have begin > end");
    if (en > data_size)
      fail(t + "data_offsets " + off.dump() + " run past the end of the data section (" + std::to_string(data_size) +
           " bytes)");
    const std::uint64_t es = dtype_size(info.type), bytes = en - b;
    if (static_cast<std::uint64_t>(numel) > bytes / es || static_cast<std::uint64_t>(numel) * es != bytes)
      fail(t + "data_offsets " + off.dump() + " hold " + std::to_string(bytes) + " bytes, but shape " + sh.dump() +
           " of " + std::string(dtype_name(info.type)) + " needs " + std::to_string(numel) + " x " +
           std::to_string(es));
    info.begin = static_cast<std::size_t>(b);
    info.end = static_cast<std::size_t>(en);
    return info;
  }

  // The tensors must tile the data section exactly: no overlaps, no gaps, no trailing bytes.
  void check_layout(std::size_t data_size) const {
    std::vector<const tensor_info*> order;
    order.reserve(tensors_.size());
    for (const auto& kv : tensors_) order.push_back(&kv.second);
    std::sort(order.begin(), order.end(), [](const tensor_info* a, const tensor_info* b) {
      return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
    });
    std::size_t pos = 0;
    const tensor_info* prev = nullptr;
    for (const tensor_info* t : order) {
      if (t->begin < pos) fail("tensors '" + prev->name + "' and '" + t->name + "' overlap");
      if (t->begin > pos)
        fail("gap in the data section: bytes [" + std::to_string(pos) + ", " + std::to_string(t->begin) +
             ") before tensor '" + t->name + "' belong to no tensor");
      pos = t->end;
      prev = t;
    }
    if (pos != data_size)
      fail(std::to_string(data_size - pos) + " trailing bytes in the data section after the last tensor");
  }

  std::vector<std::byte> bytes_;
  std::string source_ = "<memory>";
  std::size_t data_begin_ = 0;  // 8 + header length
  std::map<std::string, tensor_info, std::less<>> tensors_;
  metadata_map metadata_;
};

/// Builds safetensors files (for tests and tools). Tensors are laid out in insertion order; the
/// header is padded with spaces so the data section starts at a multiple of 8 bytes.
class safetensors_writer {
 public:
  /// Adds a copy of `v` (any strides) in row-major order. T: float, double, int64_t, int32_t,
  /// int8_t or uint8_t (stored as F32, F64, I64, I32, I8, U8).
  template <class T, std::size_t R>
  void add(std::string name, tensor_view<const T, R> v) {
    constexpr auto type = detail::dtype_of<T>();
    static_assert(type.has_value(), "safetensors_writer: T must be float, double, int64_t, int32_t, int8_t or uint8_t");
    const tensor<T, R> dense(v);  // row-major copy of any strided view
    std::vector<std::byte> data(static_cast<std::size_t>(dense.size()) * sizeof(T));
    if (!data.empty()) std::memcpy(data.data(), dense.data(), data.size());
    if constexpr (std::endian::native == std::endian::big)
      for (auto it = data.begin(); it != data.end(); it += sizeof(T)) std::reverse(it, it + sizeof(T));
    put(std::move(name), *type, {v.extents().begin(), v.extents().end()}, std::move(data));
  }
  template <class T, std::size_t R>
    requires(!std::is_const_v<T>)
  void add(std::string name, tensor_view<T, R> v) {
    add<T, R>(std::move(name), tensor_view<const T, R>(v));
  }
  template <class T, std::size_t R>
  void add(std::string name, const tensor<T, R>& t) {
    add<T, R>(std::move(name), t.view());
  }

  /// Adds already-encoded little-endian bytes of any dtype (e.g. F16/BF16 bit patterns).
  void add_raw(std::string name, dtype type, std::vector<index_t> shape, std::span<const std::byte> data) {
    std::size_t n = dtype_size(type);
    bool ok = true;
    for (auto x : shape) {
      const auto ux = static_cast<std::size_t>(x);
      ok = ok && x >= 0 && (x == 0 || n <= std::numeric_limits<std::size_t>::max() / ux);
      n = ok ? n * ux : 0;
    }
    if (!ok || n != data.size())
      throw error("safetensors_writer: tensor '" + name + "' of shape " + shape_string(shape) + " and dtype " +
                  std::string(dtype_name(type)) + " cannot hold " + std::to_string(data.size()) + " bytes");
    put(std::move(name), type, std::move(shape), {data.begin(), data.end()});
  }

  void add_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  /// The complete file.
  std::vector<std::byte> bytes() const {
    nlohmann::json h = nlohmann::json::object();
    std::size_t off = 0;
    for (const auto& e : entries_) {
      h[e.name] = {{"dtype", std::string(dtype_name(e.type))},
                   {"shape", e.shape},
                   {"data_offsets", {off, off + e.data.size()}}};
      off += e.data.size();
    }
    if (!metadata_.empty()) h["__metadata__"] = metadata_;
    std::string header;
    try {
      header = h.dump();
    } catch (const nlohmann::json::exception& e) {  // e.g. a name that is not valid UTF-8
      throw error(std::string("safetensors_writer: ") + e.what());
    }
    header.append((8 - header.size() % 8) % 8, ' ');
    std::vector<std::byte> out(8);
    for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((header.size() >> (8 * i)) & 0xffu);
    out.reserve(8 + header.size() + off);
    for (char c : header) out.push_back(static_cast<std::byte>(c));
    for (const auto& e : entries_) out.insert(out.end(), e.data.begin(), e.data.end());
    return out;
  }

  /// Writes bytes() to `path`; throws seqmix::error naming the path on failure.
  void save(const std::filesystem::path& path) const {
    const auto b = bytes();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw error("safetensors_writer: cannot open " + path.string() + " for writing");
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    out.close();
    if (!out) throw error("safetensors_writer: failed writing " + path.string());
  }

 private:
  struct entry {
    std::string name;
    dtype type;
    std::vector<index_t> shape;
    std::vector<std::byte> data;
  };

  void put(std::string name, dtype type, std::vector<index_t> shape, std::vector<std::byte> data) {
    if (name == "__metadata__") throw error("safetensors_writer: '__metadata__' is reserved");
    for (const auto& e : entries_)
      if (e.name == name) throw error("safetensors_writer: duplicate tensor '" + name + "'");
    entries_.push_back({std::move(name), type, std::move(shape), std::move(data)});
  }

  std::vector<entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace seqmix::io
