// The TensorView concept: anything with data(), extent(d) and stride(d) of a given rank, so user
// buffers (their own views, mdspan-like types) pass into seqmix without copies.
#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>

#include "view.hpp"

namespace seqmix {

/// V is a strided view of Rank dimensions whose elements are T (const-qualified T accepted for
/// read-only use): `v.data()`, `v.extent(d)`, `v.stride(d)` and a static `V::rank()`.
template <class V, class T, std::size_t Rank>
concept tensor_view_of = requires(const V& v, std::size_t d) {
  { v.data() } -> std::convertible_to<T*>;
  { v.extent(d) } -> std::convertible_to<index_t>;
  { v.stride(d) } -> std::convertible_to<index_t>;
  requires std::remove_cvref_t<V>::rank() == Rank;
};

/// Wraps any tensor_view_of<V, T, Rank> as seqmix's own tensor_view (no copy).
template <class T, std::size_t Rank, class V>
  requires tensor_view_of<V, T, Rank>
tensor_view<T, Rank> as_view(const V& v) {
  std::array<index_t, Rank> e{}, s{};
  for (std::size_t d = 0; d < Rank; ++d) e[d] = v.extent(d), s[d] = v.stride(d);
  return {static_cast<T*>(v.data()), e, s};
}

}  // namespace seqmix
