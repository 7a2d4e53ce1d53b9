// tensor_view<T, Rank>: a non-owning strided view (the mdspan vocabulary: extents, strides).
#pragma once

#include <array>
#include <cstddef>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"

namespace seqmix {

/// A non-owning, strided, row-major-by-default view of Rank-dimensional data.
/// Strides are in elements. `tensor_view<const T, R>` is the read-only form; a mutable view
/// converts to it implicitly.
template <class T, std::size_t Rank>
class tensor_view {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using shape_type = std::array<index_t, Rank>;
  static constexpr std::size_t rank() { return Rank; }

  tensor_view() = default;
  /// Contiguous row-major view. Throws seqmix::error for a negative extent or an element count
  /// that overflows index_t (a view with a zero extent may have any other extents).
  tensor_view(T* data, const shape_type& extents) : data_(data), extents_(extents) {
    index_t s = 1;
    bool bad = false, zero = false, overflow = false;
    for (std::size_t d = Rank; d-- > 0;) {
      strides_[d] = s;
      bad = bad || extents_[d] < 0;
      zero = zero || extents_[d] == 0;
      if (__builtin_mul_overflow(s, extents_[d], &s)) overflow = true, s = 0;
    }
    if (bad || (overflow && !zero)) (void)checked_size(extents_, "tensor_view");  // throws
  }
  /// General strided view.
  tensor_view(T* data, const shape_type& extents, const shape_type& strides)
      : data_(data), extents_(extents), strides_(strides) {}
  /// Mutable -> const view conversion.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  tensor_view(const tensor_view<U, Rank>& other)
      : data_(other.data()), extents_(other.extents()), strides_(other.strides()) {}

  T* data() const { return data_; }
  const shape_type& extents() const { return extents_; }
  const shape_type& strides() const { return strides_; }
  index_t extent(std::size_t d) const { return extents_[d]; }
  index_t stride(std::size_t d) const { return strides_[d]; }
  /// Element count; throws seqmix::error if an extent is negative or the count overflows.
  index_t size() const { return checked_size(extents_, "tensor_view"); }
  bool empty() const { return size() == 0; }

  /// True when the elements are dense and row-major (no gaps, last axis fastest).
  bool is_contiguous() const {
    index_t s = 1;
    for (std::size_t d = Rank; d-- > 0;) {
      if (extents_[d] != 1 && strides_[d] != s) return false;
      if (d > 0 && __builtin_mul_overflow(s, extents_[d], &s)) {  // only an empty view gets here validly
        for (auto e : extents_)
          if (e == 0) return true;
        return false;
      }
    }
    return true;
  }

  template <class... I>
    requires(sizeof...(I) == Rank && (std::is_integral_v<I> && ...))
  T& operator()(I... idx) const {
    const std::array<index_t, Rank> i{static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t d = 0; d < Rank; ++d) off += i[d] * strides_[d];
    return data_[off];
  }

  /// Pointer to the element at the given leading indices (the trailing ones are 0).
  template <class... I>
    requires(sizeof...(I) <= Rank && (std::is_integral_v<I> && ...))
  T* ptr(I... idx) const {
    const std::array<index_t, sizeof...(I)> i{static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t d = 0; d < sizeof...(I); ++d) off += i[d] * strides_[d];
    return data_ + off;
  }

  /// The view with axis `d` fixed at index `i` (rank drops by one).
  tensor_view<T, Rank - 1> slice(std::size_t d, index_t i) const
    requires(Rank > 1)
  {
    std::array<index_t, Rank - 1> e{}, s{};
    for (std::size_t a = 0, b = 0; a < Rank; ++a)
      if (a != d) e[b] = extents_[a], s[b++] = strides_[a];
    return {data_ + i * strides_[d], e, s};
  }

  /// The view restricted to [begin, begin + count) along axis `d`.
  tensor_view subrange(std::size_t d, index_t begin, index_t count) const {
    shape_type e = extents_;
    e[d] = count;
    return {data_ + begin * strides_[d], e, strides_};
  }

  /// A contiguous view re-read with other extents (same element count).
  template <std::size_t R2>
  tensor_view<T, R2> reshape(const std::array<index_t, R2>& extents) const {
    if (!is_contiguous() || checked_size(extents, "tensor_view::reshape") != size())
      throw error("tensor_view::reshape: cannot view " + shape_string(extents_) + " as " +
                  shape_string(extents));
    return {data_, extents};
  }

 private:
  T* data_ = nullptr;
  shape_type extents_{};
  shape_type strides_{};
};

template <class T, std::size_t R>
tensor_view(T*, const std::array<index_t, R>&) -> tensor_view<T, R>;
template <class T, std::size_t R>
tensor_view(T*, const std::array<index_t, R>&, const std::array<index_t, R>&) -> tensor_view<T, R>;

/// The transpose of a rank-2 view (swaps extents and strides; no copy).
template <class T>
tensor_view<T, 2> transposed(const tensor_view<T, 2>& v) {
  return {v.data(), {v.extent(1), v.extent(0)}, {v.stride(1), v.stride(0)}};
}

}  // namespace seqmix
