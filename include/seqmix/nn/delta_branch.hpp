// The q, k, v branch DeltaNet and Gated DeltaNet share (spec/delta_net.md): projections, short
// causal convs with SiLU, per-head L2 norms of q and k; and their beta activation and output norm.
#pragma once

#include "../kernels/delta_rule/delta_rule.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"
#include "conv1d.hpp"
#include "linear.hpp"
#include "rmsnorm.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

// The q, k, v branch shared by DeltaNet and Gated DeltaNet: projection, short causal conv with
// SiLU (conv state carried), and the L2 norm of q and k per head (eps inside the square root).
// Writes q, k [B·L, key_dim] and v [B·L, value_dim] (the caller's buffers); `lin` holds each
// projection before its conv: room for B·L rows of the widest of the three.
template <class T, class W = T>
struct qkv_branch {
  const nn::linear<T, W>*proj_q, *proj_k, *proj_v;
  const nn::causal_conv1d<T>*conv_q, *conv_k, *conv_v;
  index_t head_k_dim;
  T l2norm_eps;

  void operator()(tensor_view<const T, 2> x, index_t B, index_t L, tensor<T, 3>& state_q, tensor<T, 3>& state_k,
                  tensor<T, 3>& state_v, tensor_view<T, 2> q, tensor_view<T, 2> k, tensor_view<T, 2> v,
                  tensor_view<T, 1> lin, const char* who, int threads) const {
    const index_t N = B * L;
    auto branch = [&](const nn::linear<T, W>& proj, const nn::causal_conv1d<T>& conv, tensor<T, 3>& st,
                      tensor_view<T, 2> out) {
      const index_t C = proj.out_features();
      require(lin.size() >= N * C, who, "qkv_branch: the projection buffer is too small");
      check_shape(who, "qkv_branch output", out.extents(), {N, C});
      const tensor_view<T, 2> lin2(lin.data(), {N, C});
      proj(x, lin2, who, threads);
      conv(lin2.template reshape<3>({B, L, C}), out.template reshape<3>({B, L, C}), st, who, threads);
    };
    branch(*proj_q, *conv_q, state_q, q);
    branch(*proj_k, *conv_k, state_k, k);
    branch(*proj_v, *conv_v, state_v, v);
    const index_t heads = q.extent(1) / head_k_dim;
    kernels::delta_rule::l2_normalize_rows(q.data(), N * heads, head_k_dim, head_k_dim, l2norm_eps);
    kernels::delta_rule::l2_normalize_rows(k.data(), N * heads, head_k_dim, head_k_dim, l2norm_eps);
  }
};

// beta = sigmoid(b) (times 2 when negative eigenvalues are allowed), in place.
template <class T>
void beta_activation(tensor_view<T, 2> b, bool allow_neg_eigval) {
  const T f = allow_neg_eigval ? T(2) : T(1);
  simd::transform(b.data(), b.data(), b.size(), [f](auto z) { return simd::sigmoid(z) * f; });
}

// Per-(token, head) RMSNorm of o [N, heads·V] with weight w [V], gated by silu(gate) when given
// (gate: N·heads·V values in o's layout).
template <class T>
void output_norm(tensor_view<T, 2> o, const T* gate, const tensor<T, 1>& w, index_t V, T eps) {
  for (index_t n = 0, rows = o.size() / V; n < rows; ++n) {
    T* row = o.data() + n * V;
    if (gate) nn::rmsnorm_gated_row(row, gate + n * V, w.data(), row, V, eps);
    else nn::rmsnorm_row(row, w.data(), row, V, eps);
  }
}

}  // namespace seqmix::nn
