// seqmix::error and the helpers that build its messages.
#pragma once

#include <initializer_list>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "config.hpp"

namespace seqmix {

/// The one exception type of the library: bad shapes, missing weights, malformed files.
/// Messages name the layer (or component), the tensor and, for shape errors, both shapes.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// "[2, 37, 4, 16]" for any range of integers.
template <class Range>
std::string shape_string(const Range& shape) {
  std::ostringstream s;
  s << '[';
  bool first = true;
  for (auto e : shape) {
    s << (first ? "" : ", ") << e;
    first = false;
  }
  s << ']';
  return s.str();
}

inline std::string shape_string(std::initializer_list<index_t> shape) {
  return shape_string<std::initializer_list<index_t>>(shape);
}

/// Throws seqmix::error "<where>: <tensor> has shape <got>, expected <want>" unless equal.
template <class Got, class Want>
void check_shape(std::string_view where, std::string_view tensor, const Got& got, const Want& want) {
  bool same = std::size(got) == std::size(want);
  if (same) {
    auto w = std::begin(want);
    for (auto g : got) same = same && (static_cast<index_t>(g) == static_cast<index_t>(*w++));
  }
  if (!same)
    throw error(std::string(where) + ": " + std::string(tensor) + " has shape " + shape_string(got) +
                ", expected " + shape_string(want));
}

template <class Got>
void check_shape(std::string_view where, std::string_view tensor, const Got& got,
                 std::initializer_list<index_t> want) {
  check_shape<Got, std::initializer_list<index_t>>(where, tensor, got, want);
}

/// Throws seqmix::error "<where>: <message>" when cond is false.
inline void require(bool cond, std::string_view where, std::string_view message) {
  if (!cond) throw error(std::string(where) + ": " + std::string(message));
}

/// a · b for sizes a, b >= 0; throws seqmix::error "<where>: size a x b overflows" (or names the
/// negative factor) instead of wrapping. Use it wherever a count or byte size is a product of
/// extents that come from a caller or a file.
inline index_t checked_mul(index_t a, index_t b, std::string_view where) {
  if (a < 0 || b < 0)
    throw error(std::string(where) + ": negative size " + std::to_string(a < 0 ? a : b));
  index_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw error(std::string(where) + ": size " + std::to_string(a) + " x " + std::to_string(b) + " overflows");
  return r;
}

/// The element count of `extents` (1 for none, 0 when any extent is 0, however large the others);
/// throws seqmix::error naming `where` and the shape if an extent is negative or the count
/// overflows index_t.
template <class Range>
index_t checked_size(const Range& extents, std::string_view where) {
  bool zero = false;
  for (auto e : extents) {
    if (static_cast<index_t>(e) < 0)
      throw error(std::string(where) + ": negative extent in shape " + shape_string(extents));
    zero = zero || e == 0;
  }
  if (zero) return 0;
  index_t n = 1;
  for (auto e : extents)
    if (__builtin_mul_overflow(n, static_cast<index_t>(e), &n))
      throw error(std::string(where) + ": element count of shape " + shape_string(extents) + " overflows");
  return n;
}

inline index_t checked_size(std::initializer_list<index_t> extents, std::string_view where) {
  return checked_size<std::initializer_list<index_t>>(extents, where);
}

}  // namespace seqmix
