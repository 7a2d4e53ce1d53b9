// seqmix::io::safetensors: a validating reader (in memory or memory-mapped) and a small writer for
// the safetensors format (8-byte little-endian header length N, N bytes of JSON header, then the
// data section). Needs no JSON library: io/json.hpp reads and writes the header.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define SEQMIX_IO_HAS_MMAP 1
#else
#define SEQMIX_IO_HAS_MMAP 0
#endif

#include "../config.hpp"
#include "../error.hpp"
#include "../tensor/bf16.hpp"
#include "../tensor/tensor.hpp"
#include "json.hpp"

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

  /// Number of elements (1 for a scalar, 0 when any extent is 0). Throws seqmix::error if the
  /// count overflows, which a parsed file's entries never do.
  index_t numel() const { return checked_size(shape, "safetensors tensor_info"); }
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
  else if constexpr (std::is_same_v<T, bf16>) return dtype::bf16;
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

/// Element i of `type` at `in` (any alignment), as double (exact for every dtype but I64
/// beyond 2^53, which only messages use).
inline double decode_double(dtype type, const std::byte* in, index_t i) {
  const std::byte* p = in + static_cast<std::size_t>(i) * dtype_size(type);
  using std::bit_cast;
  switch (type) {
    case dtype::f32: return bit_cast<float>(load_le<std::uint32_t>(p));
    case dtype::f64: return bit_cast<double>(load_le<std::uint64_t>(p));
    case dtype::bf16: return bf16_to_float(load_le<std::uint16_t>(p));
    case dtype::f16: return half_to_float(load_le<std::uint16_t>(p));
    case dtype::i64: return static_cast<double>(bit_cast<std::int64_t>(load_le<std::uint64_t>(p)));
    case dtype::i32: return bit_cast<std::int32_t>(load_le<std::uint32_t>(p));
    case dtype::i8: return bit_cast<std::int8_t>(load_le<std::uint8_t>(p));
    case dtype::u8: return load_le<std::uint8_t>(p);
  }
  return 0;
}

/// True if floating-point x converts to integer T without undefined behaviour (finite and, once
/// truncated, within T's range).
template <class T, class F>
bool fits_integer(F x) {
  if (!std::isfinite(x)) return false;
  constexpr int digits = std::numeric_limits<T>::digits;  // 2^digits = max + 1, exact in double
  const double top = std::ldexp(1.0, digits), xd = static_cast<double>(x);
  if constexpr (std::is_signed_v<T>) return (xd > -top - 1.0 || xd == -top) && xd < top;  // -top: INT64_MIN
  else return xd > -1.0 && xd < top;
}

/// Decodes n elements of `type` at `in` (any alignment) into out[0..n). Returns the index of the
/// first element that does not fit an integer T (a NaN, an infinity or out of range: converting it
/// would be undefined behaviour), or -1 when all were converted.
template <class T>
index_t convert(dtype type, const std::byte* in, T* out, index_t n) {
  const std::size_t es = dtype_size(type);
  index_t bad = -1;
  auto each = [&](auto decode) {
    for (index_t i = 0; i < n; ++i) {
      const auto x = decode(in + static_cast<std::size_t>(i) * es);
      if constexpr (std::is_integral_v<T> && std::is_floating_point_v<decltype(x)>) {
        if (!fits_integer<T>(x)) {
          bad = i;
          return;
        }
      }
      if constexpr (std::is_same_v<T, bf16>) out[i] = bf16(static_cast<float>(x));  // rounded once more
      else out[i] = static_cast<T>(x);
    }
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
  return bad;
}
}  // namespace detail

/// Options of safetensors::load, map and parse.
struct load_options {
  /// get() (and so every layer loading from the file) throws seqmix::error naming the tensor when a
  /// floating-point value it returns is NaN or infinite, after conversion to the requested type.
  bool check_finite = false;
};

namespace detail {
/// The bytes of a file: owned in memory, or a read-only mapping of the file (unmapped when the
/// last safetensors sharing it goes).
class file_bytes {
 public:
  explicit file_bytes(std::vector<std::byte> v) : owned_(std::move(v)), data_(owned_.data()), size_(owned_.size()) {}
#if SEQMIX_IO_HAS_MMAP
  /// Takes ownership of a mapping made with mmap(nullptr, size, PROT_READ, ...).
  file_bytes(void* mapping, std::size_t size)
      : data_(static_cast<const std::byte*>(mapping)), size_(size), mapped_(true) {}
#endif
  file_bytes(const file_bytes&) = delete;
  file_bytes& operator=(const file_bytes&) = delete;
  ~file_bytes() {
#if SEQMIX_IO_HAS_MMAP
    if (mapped_) ::munmap(const_cast<std::byte*>(data_), size_);
#endif
  }

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool mapped() const { return mapped_; }

 private:
  std::vector<std::byte> owned_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
};

/// At most `limit` characters of `s` (longer text ends in "...") for error messages.
inline std::string clip(std::string_view s, std::size_t limit = 64) {
  if (s.size() <= limit) return std::string(s);
  return std::string(s.substr(0, limit - 3)) + "...";
}

/// Index of the first NaN or infinity in p[0..n), or -1.
template <class T>
index_t first_non_finite(const T* p, index_t n) {
  if constexpr (std::is_floating_point_v<T>) {
    for (index_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return i;
  } else if constexpr (std::is_same_v<T, bf16>) {
    for (index_t i = 0; i < n; ++i)
      if ((p[i].bits & 0x7f80u) == 0x7f80u) return i;  // exponent all ones: inf or NaN
  }
  return -1;
}

template <class T>
std::string value_string(T x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return value_string(to_float(x));
  } else {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x)) return "NaN";
      if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
    }
    std::ostringstream s;
    s << +x;
    return s.str();
  }
}
}  // namespace detail

class weight_source;

/// A parsed, fully validated safetensors file. The bytes are held in memory (load, parse) or mapped
/// read-only from the file (map); `raw()` spans point into them and stay valid as long as this
/// object or a copy of it (copies share the bytes, which are never written).
///
/// The header is read with a strict JSON reader (io/json.hpp) that nests at most 64 levels and never
/// converts numbers to floating point. Rejected with seqmix::error: a header over 100 MB or that
/// is not a JSON object, a tensor name or metadata key given twice, unknown dtypes, shapes that
/// are not non-negative integers or whose element count overflows, offsets that do not tile the
/// data section exactly (overlaps, gaps, trailing bytes) or that disagree with shape and dtype.
class safetensors {
 public:
  using metadata_map = std::map<std::string, std::string, std::less<>>;

  /// Largest header accepted (as the reference implementation, which rejects larger ones too).
  static constexpr std::uint64_t max_header_bytes = 100'000'000;

  /// An empty file: no tensors, no metadata.
  safetensors() = default;

  /// Reads the whole file into memory and parses it; throws seqmix::error naming `path` if it
  /// cannot be read.
  static safetensors load(const std::filesystem::path& path, load_options options = {}) {
    const std::string where = "safetensors " + path.string() + ": ";
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);  // also rejects directories
    if (ec) throw error(where + "cannot open file (" + ec.message() + ")");
    if (size > static_cast<std::uintmax_t>(std::numeric_limits<std::ptrdiff_t>::max()))
      throw error(where + "file of " + std::to_string(size) + " bytes is too large to read");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(where + "cannot open file");
    std::vector<std::byte> bytes;
    try {
      bytes.resize(static_cast<std::size_t>(size));
    } catch (const std::bad_alloc&) {
      throw error(where + "cannot allocate " + std::to_string(size) + " bytes to read the file (map() does not need to)");
    }
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (static_cast<std::uintmax_t>(in.gcount()) != size) throw error(where + "short read");
    return parse(std::move(bytes), path.string(), options);
  }

  /// Maps the file read-only and parses it: get() copies each tensor straight from the mapping, so
  /// the file is never held in memory twice. The same checks as load(). The file must not be
  /// truncated while mapped (the system then kills a reader of the lost pages with SIGBUS, as for
  /// any mapping). Falls back to load() where mmap is not available.
  static safetensors map(const std::filesystem::path& path, load_options options = {}) {
#if SEQMIX_IO_HAS_MMAP
    const std::string where = "safetensors " + path.string() + ": ";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw error(where + "cannot open file (" + std::generic_category().message(errno) + ")");
    struct ::stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw error(where + "cannot open file (not a regular file)");
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    std::shared_ptr<const detail::file_bytes> bytes;
    if (size == 0) {
      ::close(fd);
      bytes = std::make_shared<const detail::file_bytes>(std::vector<std::byte>{});
    } else {
      void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      const int err = errno;
      ::close(fd);
      if (m == MAP_FAILED) throw error(where + "cannot map file (" + std::generic_category().message(err) + ")");
      try {
        bytes = std::make_shared<const detail::file_bytes>(m, size);
      } catch (...) {
        ::munmap(m, size);
        throw;
      }
    }
    return from_bytes(std::move(bytes), path.string(), options);
#else
    return load(path, options);
#endif
  }

  /// Parses and validates an in-memory file. `source` names it in error messages.
  static safetensors parse(std::vector<std::byte> bytes, std::string source = "<memory>", load_options options = {}) {
    return from_bytes(std::make_shared<const detail::file_bytes>(std::move(bytes)), std::move(source), options);
  }

  /// The path (or "<memory>" / the given name) used in messages.
  const std::string& source() const { return source_; }
  const load_options& options() const { return options_; }
  /// True if the bytes are a mapping of the file (map()), false if they are in memory.
  bool mapped() const { return bytes_ && bytes_->mapped(); }
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
    return {bytes_->data() + data_begin_ + t.begin, t.end - t.begin};
  }

  /// Tensor `name` converted to arithmetic T or bf16 (F16/BF16 decoded exactly; between floating
  /// types and from integers via static_cast; BF16 into bf16 copied bit for bit, other dtypes into
  /// bf16 through float, rounded to nearest even). Throws seqmix::error if the stored rank is not Rank, if a
  /// floating value does not fit an integer T (NaN, infinite, out of range), and, with
  /// options().check_finite, if a floating T value is NaN or infinite.
  template <class T, std::size_t Rank>
  tensor<T, Rank> get(std::string_view name) const {
    tensor<T, Rank> out = read<T, Rank>(name);
    if (options_.check_finite) {
      const index_t bad = detail::first_non_finite(out.data(), out.size());
      if (bad >= 0)
        fail("tensor '" + std::string(name) + "' holds a non-finite value (" + detail::value_string(out.data()[bad]) +
             ") at element " + std::to_string(bad) + " of shape " + shape_string(out.extents()));
    }
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
  friend class weight_source;

  [[noreturn]] void fail(const std::string& what) const { throw error("safetensors " + source_ + ": " + what); }

  // get() without the finite check.
  template <class T, std::size_t Rank>
  tensor<T, Rank> read(std::string_view name) const {
    static_assert(std::is_arithmetic_v<T> || std::is_same_v<T, bf16>, "safetensors::get: T must be arithmetic or bf16");
    const tensor_info& t = info(name);
    if (t.shape.size() != Rank)
      fail("tensor '" + t.name + "' has shape " + shape_string(t.shape) + " (rank " + std::to_string(t.shape.size()) +
           "), expected rank " + std::to_string(Rank));
    std::array<index_t, Rank> extents{};
    if constexpr (Rank > 0) std::copy(t.shape.begin(), t.shape.end(), extents.begin());  // begin() is null at Rank 0
    tensor<T, Rank> out(extents);  // the element count was checked when parsing
    const std::byte* src = bytes_->data() + data_begin_ + t.begin;
    if (detail::dtype_of<T>() == t.type && std::endian::native == std::endian::little) {
      if (t.end > t.begin) std::memcpy(out.data(), src, t.end - t.begin);
    } else {
      const index_t bad = detail::convert(t.type, src, out.data(), t.numel());
      if (bad >= 0)
        fail("tensor '" + t.name + "' element " + std::to_string(bad) + " (" + detail::value_string(detail::decode_double(t.type, src, bad)) +
             ") does not fit a " + std::to_string(sizeof(T) * 8) + "-bit integer");
    }
    return out;
  }

  static safetensors from_bytes(std::shared_ptr<const detail::file_bytes> bytes, std::string source, load_options options) {
    safetensors f;
    f.bytes_ = std::move(bytes);
    f.source_ = std::move(source);
    f.options_ = options;
    const std::size_t size = f.bytes_->size();
    if (size < 8) f.fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
    const std::uint64_t n = detail::load_le<std::uint64_t>(f.bytes_->data());
    if (n > size - 8)  // not 8 + n > size: that could overflow
      f.fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
             " bytes)");
    if (n > max_header_bytes)
      f.fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(max_header_bytes) + " bytes");
    f.data_begin_ = 8 + static_cast<std::size_t>(n);
    const std::size_t data_size = size - f.data_begin_;
    const char* h = reinterpret_cast<const char*>(f.bytes_->data() + 8);
    try {
      // First the syntax of the whole header (so a syntax error is reported as such wherever it
      // is), then its meaning. Trailing whitespace (the format's padding) is accepted.
      detail::json_reader syntax(h, h + n);
      syntax.skip_value();
      syntax.skip_ws();
      if (!syntax.at_end()) syntax.fail("unexpected characters after the header");
      detail::json_reader r(h, h + n);
      f.read_header(r, data_size);
    } catch (const detail::json_syntax_error& e) {
      f.fail("header is not valid JSON (" + e.what + " at byte " + std::to_string(e.offset) + ")");
    }
    f.check_layout(data_size);
    return f;
  }

  void read_header(detail::json_reader& r, std::size_t data_size) {
    if (r.peek() != '{') fail("header is not a JSON object");
    r.expect('{');
    if (r.consume('}')) return;
    bool have_metadata = false;
    do {
      std::string key = r.string();
      r.expect(':');
      if (key == "__metadata__") {
        if (have_metadata) fail("__metadata__ appears twice in the header");
        have_metadata = true;
        if (r.peek() != '{') fail("__metadata__ is not a JSON object");
        r.expect('{');
        if (r.consume('}')) continue;
        do {
          std::string k = r.string();
          r.expect(':');
          if (r.peek() != '"') fail("__metadata__ value of '" + detail::clip(k, 256) + "' is not a string");
          std::string v = r.string();
          if (metadata_.find(k) != metadata_.end()) fail("__metadata__ key '" + detail::clip(k, 256) + "' appears twice");
          metadata_.emplace(std::move(k), std::move(v));
        } while (r.consume(','));
        r.expect('}');
      } else {
        if (contains(key)) fail("tensor '" + detail::clip(key, 256) + "' appears twice in the header");
        tensor_info info = read_entry(r, key, data_size);
        tensors_.emplace(std::move(key), std::move(info));
      }
    } while (r.consume(','));
    r.expect('}');
  }

  // An array field of an entry: its text (for messages) and its elements, if all are numbers.
  struct int_list {
    bool seen = false, is_array = false, all_numbers = true;
    std::string_view text;
    std::vector<detail::json_number> items;
  };

  static void read_list(detail::json_reader& r, int_list& out) {
    const char* start = (r.peek(), r.position());
    if (r.peek() == '[') {
      out.is_array = true;
      r.expect('[');
      if (!r.consume(']')) {
        do {
          const char c = r.peek();
          if (c == '-' || (c >= '0' && c <= '9')) out.items.push_back(r.number());
          else out.all_numbers = false, r.skip_value(3);
        } while (r.consume(','));
        r.expect(']');
      }
    } else {
      r.skip_value(2);
    }
    out.text = std::string_view(start, static_cast<std::size_t>(r.position() - start));
  }

  tensor_info read_entry(detail::json_reader& r, const std::string& name, std::size_t data_size) const {
    const std::string t = "tensor '" + detail::clip(name, 256) + "' ";
    if (r.peek() != '{') fail(t + "entry is not a JSON object");
    r.expect('{');
    bool seen_dtype = false;
    std::optional<std::string> dtype_str;
    int_list sh, off;
    if (!r.consume('}')) {
      do {
        const std::string k = r.string();
        r.expect(':');
        auto once = [&](bool& seen) {
          if (seen) fail(t + "has '" + k + "' twice");
          seen = true;
        };
        if (k == "dtype") {
          once(seen_dtype);
          if (r.peek() == '"') dtype_str = r.string();
          else r.skip_value(2);
        } else if (k == "shape") {
          once(sh.seen);
          read_list(r, sh);
        } else if (k == "data_offsets") {
          once(off.seen);
          read_list(r, off);
        } else {
          r.skip_value(2);  // other fields are allowed and ignored
        }
      } while (r.consume(','));
      r.expect('}');
    }
    if (!seen_dtype) fail(t + "has no dtype");
    if (!sh.seen) fail(t + "has no shape");
    if (!off.seen) fail(t + "has no data_offsets");

    tensor_info info{name, dtype::f32, {}, 0, 0};
    if (!dtype_str) fail(t + "dtype is not a string");
    const auto type = detail::parse_dtype(*dtype_str);
    if (!type) fail(t + "has unknown dtype '" + detail::clip(*dtype_str) + "'");
    info.type = *type;

    // The element count (ignoring zero extents, so no shape's count can overflow in any order of
    // multiplication) must fit index_t.
    if (!sh.is_array) fail(t + "shape is not an array");
    const std::string shape_text = detail::clip(sh.text);
    constexpr auto max_index = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
    index_t numel = 1, nonzero = 1;
    bool overflow = false;
    if (!sh.all_numbers) fail(t + "shape " + shape_text + " has a negative or non-integer entry");
    for (const auto& d : sh.items)
      if (!d.is_integer) fail(t + "shape " + shape_text + " has a negative or non-integer entry");
    info.shape.reserve(sh.items.size());
    for (const auto& d : sh.items) {
      overflow = overflow || !d.fits || d.value > max_index;
      const auto x = overflow ? index_t(1) : static_cast<index_t>(d.value);
      if (x != 0) overflow = overflow || __builtin_mul_overflow(nonzero, x, &nonzero);
      if (overflow) fail(t + "element count of shape " + shape_text + " overflows");
      numel = x == 0 ? 0 : numel * x;  // <= nonzero: no overflow
      info.shape.push_back(x);
    }

    const std::string off_text = detail::clip(off.text);
    if (!off.is_array || !off.all_numbers || off.items.size() != 2 || !off.items[0].is_integer || !off.items[1].is_integer)
      fail(t + "data_offsets " + off_text + " are not two non-negative integers");
    constexpr auto huge = std::numeric_limits<std::uint64_t>::max();  // offsets beyond 2^64 - 1 saturate
    const auto b = off.items[0].fits ? off.items[0].value : huge, en = off.items[1].fits ? off.items[1].value : huge;
    if (b > en) fail(t + "data_offsets " + off_text + " have begin > end");
    if (en > data_size)
      fail(t + "data_offsets " + off_text + " run past the end of the data section (" + std::to_string(data_size) +
           " bytes)");
    const std::uint64_t es = dtype_size(info.type), bytes = en - b;
    if (static_cast<std::uint64_t>(numel) > bytes / es || static_cast<std::uint64_t>(numel) * es != bytes)
      fail(t + "data_offsets " + off_text + " hold " + std::to_string(bytes) + " bytes, but shape " + shape_text +
           " of " + std::string(dtype_name(info.type)) + " needs " + std::to_string(numel) + " x " + std::to_string(es));
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
      if (t->begin < pos) fail("tensors '" + detail::clip(prev->name, 256) + "' and '" + detail::clip(t->name, 256) + "' overlap");
      if (t->begin > pos)
        fail("gap in the data section: bytes [" + std::to_string(pos) + ", " + std::to_string(t->begin) +
             ") before tensor '" + detail::clip(t->name, 256) + "' belong to no tensor");
      pos = t->end;
      prev = t;
    }
    if (pos != data_size)
      fail(std::to_string(data_size - pos) + " trailing bytes in the data section after the last tensor");
  }

  std::shared_ptr<const detail::file_bytes> bytes_;
  std::string source_ = "<memory>";
  load_options options_{};
  std::size_t data_begin_ = 0;  // 8 + header length
  std::map<std::string, tensor_info, std::less<>> tensors_;
  metadata_map metadata_;
};

/// Builds safetensors files (for tests and tools). Tensors are laid out in insertion order; the
/// header is padded with spaces so the data section starts at a multiple of 8 bytes.
class safetensors_writer {
 public:
  /// Adds a copy of `v` (any strides) in row-major order. T: float, double, int64_t, int32_t,
  /// int8_t, uint8_t or bf16 (stored as F32, F64, I64, I32, I8, U8, BF16).
  template <class T, std::size_t R>
  void add(std::string name, tensor_view<const T, R> v) {
    constexpr auto type = detail::dtype_of<T>();
    static_assert(type.has_value(), "safetensors_writer: T must be float, double, int64_t, int32_t, int8_t, uint8_t or bf16");
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

  /// The complete file. The header lists the tensors and `__metadata__` by name in byte order
  /// (as nlohmann::json::dump() of the same object would), compact, padded with spaces.
  std::vector<std::byte> bytes() const {
    auto quoted = [](std::string_view s, const char* what) {
      std::string q;
      if (!detail::append_json_string(q, s))
        throw error(std::string("safetensors_writer: ") + what + " '" + detail::clip(s, 256) + "' is not valid UTF-8");
      return q;
    };
    std::vector<std::pair<std::string, std::string>> members;  // (key, value text)
    std::size_t off = 0;
    for (const auto& e : entries_) {
      std::string v = "{\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + e.data.size()) +
                      "],\"dtype\":\"" + std::string(dtype_name(e.type)) + "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) v += (i ? "," : "") + std::to_string(e.shape[i]);
      v += "]}";
      members.emplace_back(e.name, std::move(v));
      off += e.data.size();
    }
    if (!metadata_.empty()) {
      std::string v = "{";
      for (const auto& [k, val] : metadata_)
        v += (v.size() > 1 ? "," : "") + quoted(k, "metadata key") + ":" + quoted(val, "metadata value");
      members.emplace_back("__metadata__", v + "}");
    }
    std::sort(members.begin(), members.end());
    std::string header = "{";
    for (const auto& [k, v] : members) header += (header.size() > 1 ? "," : "") + quoted(k, "tensor name") + ":" + v;
    header += "}";
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
