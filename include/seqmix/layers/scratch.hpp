// scratch<T>: a layer's forward() temporaries, kept in its State across calls. A prefill's
// intermediates are tens of MB; fresh buffers on every call would be mapped and zero-filled by the
// kernel each time (13% of a Hymba prefill). A copy of a state starts with an empty scratch (the
// contents are never state), so states stay cheap to copy and safe to fork.
#pragma once

#include <utility>

#include "../tensor/tensor.hpp"

namespace seqmix::layers {

template <class T>
class scratch {
 public:
  scratch() = default;
  scratch(const scratch&) {}
  scratch& operator=(const scratch&) { return *this; }
  scratch(scratch&& o) noexcept : buf_(std::move(o.buf_)), size_(std::exchange(o.size_, 0)) {}
  scratch& operator=(scratch&& o) noexcept {
    buf_ = std::move(o.buf_), size_ = std::exchange(o.size_, 0);
    return *this;
  }
  ~scratch() = default;

  /// Room for at least `n` elements (grown on demand, never shrunk; old contents unspecified). A
  /// tensor's storage: on huge pages from 2 MiB and cache-coloured (tensor/tensor.hpp), as the
  /// fresh tensors it replaces were (a std::vector's plain pages cost 7-14% of a prefill).
  T* get(index_t n) {
    if (size_ < n) buf_ = tensor<T, 1>({n}), size_ = n;
    return buf_.data();
  }
  /// Bytes held.
  index_t bytes() const { return size_ * index_t(sizeof(T)); }
  /// Frees the memory (e.g. after a prefill, when decode needs far less).
  void release() { buf_ = tensor<T, 1>(), size_ = 0; }

 private:
  tensor<T, 1> buf_{{0}};
  index_t size_ = 0;
};

}  // namespace seqmix::layers
