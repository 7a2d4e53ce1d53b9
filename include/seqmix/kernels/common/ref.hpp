// Pieces of the plain references (kernels/<family>/ref.hpp), which keep one head's state [K,V] in
// double: loading and storing it, and reading an output row out of it. For tests only.
#pragma once

#include <cstddef>
#include <vector>

#include "../../config.hpp"
#include "../../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::common {

/// S[i·V + j] = state(b, h, i, j) for the [K,V] state of head h (S is resized to K·V).
template <class T>
void load_state(const tensor_view<T, 4>& state, index_t b, index_t h, std::vector<double>& S) {
  const index_t K = state.extent(2), V = state.extent(3);
  S.resize(static_cast<std::size_t>(K * V));
  for (index_t i = 0; i < K; ++i)
    for (index_t j = 0; j < V; ++j) S[std::size_t(i * V + j)] = double(state(b, h, i, j));
}

/// state(b, h, i, j) = S[i·V + j], rounded to T.
template <class T>
void store_state(const std::vector<double>& S, const tensor_view<T, 4>& state, index_t b, index_t h) {
  const index_t K = state.extent(2), V = state.extent(3);
  for (index_t i = 0; i < K; ++i)
    for (index_t j = 0; j < V; ++j) state(b, h, i, j) = static_cast<T>(S[std::size_t(i * V + j)]);
}

/// o(b, t, ho, j) = scale · Σ_i x(b, t, hx, i) · S[i·V + j] for every j < V: the read-out
/// o_t = scale · S_tᵀ x_t of the linear-attention references.
template <class T>
void read_out(const tensor_view<const T, 4>& x, index_t hx, const tensor_view<T, 4>& o, index_t ho, index_t b,
              index_t t, const std::vector<double>& S, double scale) {
  const index_t K = x.extent(3), V = o.extent(3);
  for (index_t j = 0; j < V; ++j) {
    double acc = 0;
    for (index_t i = 0; i < K; ++i) acc += double(x(b, t, hx, i)) * S[std::size_t(i * V + j)];
    o(b, t, ho, j) = static_cast<T>(scale * acc);
  }
}

}  // namespace seqmix::kernels::common
