// scratch<T>: a layer's forward() temporaries, kept in its State across calls. A prefill's
// intermediates are tens of MB; fresh buffers on every call would be mapped and zero-filled by the
// kernel each time (13% of a Hymba prefill). A copy of a state starts with an empty scratch (the
// contents are never state), so states stay cheap to copy and safe to fork.
#pragma once

#include <cstddef>
#include <vector>

#include "../tensor/tensor.hpp"

namespace seqmix::layers {

template <class T>
class scratch {
 public:
  scratch() = default;
  scratch(const scratch&) {}
  scratch& operator=(const scratch&) { return *this; }
  scratch(scratch&&) noexcept = default;
  scratch& operator=(scratch&&) noexcept = default;
  ~scratch() = default;

  /// Room for at least `n` elements (grown on demand, never shrunk; old contents unspecified).
  T* get(index_t n) {
    if (buf_.size() < std::size_t(n)) buf_.resize(std::size_t(n));
    return buf_.data();
  }
  /// Bytes held.
  index_t bytes() const { return index_t(buf_.capacity() * sizeof(T)); }
  /// Frees the memory (e.g. after a prefill, when decode needs far less).
  void release() { buf_ = std::vector<T>(); }

 private:
  std::vector<T> buf_;
};

}  // namespace seqmix::layers
