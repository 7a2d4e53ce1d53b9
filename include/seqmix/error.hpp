// seqmix::error and the helpers that build its messages.
#pragma once

#include <initializer_list>
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

}  // namespace seqmix
