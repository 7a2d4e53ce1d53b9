// The parts of a block around its mixer: the two pre-norms and the SwiGLU MLP, with their weight
// table (upstream Llama/Qwen names under "model.layers.N."), and the row-wise RMSNorm of a model.
#pragma once

#include <string>

#include "../layers/weight_table.hpp"
#include "../nn/linear.hpp"
#include "../nn/rmsnorm.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

/// y = x / rms(x) · w for each row of x [N, C] (y may be x).
template <class T>
void rmsnorm_rows(tensor_view<const T, 2> x, const tensor<T, 1>& w, tensor_view<T, 2> y, double eps) {
  for (index_t r = 0; r < x.extent(0); ++r) nn::rmsnorm_row(x.ptr(r, 0), w.data(), y.ptr(r, 0), x.extent(1), T(eps));
}

/// A block's weights besides its mixer; the MLP ones are empty when the block has none. W: the
/// MLP projections' weight type (T, or bf16 with T = float); the norms stay T.
template <class T, class W = T>
struct block_weights {
  tensor<T, 1> input_norm, post_norm;
  nn::linear<T, W> gate, up, down;

  /// The table: C the model width, I the MLP width (0: no MLP).
  template <class Weights, class F>
  static void each_weight(index_t C, index_t I, Weights& w, F&& f) {
    using layers::init_rule, layers::weight_spec;
    f(weight_spec<1>{"input_layernorm.weight", {C}, init_rule::ones()}, w.input_norm);
    f(weight_spec<1>{"post_attention_layernorm.weight", {C}, init_rule::ones(), I > 0}, w.post_norm);
    f(weight_spec<2>{"mlp.gate_proj.weight", {I, C}, {}, I > 0}, w.gate.weight);
    f(weight_spec<2>{"mlp.up_proj.weight", {I, C}, {}, I > 0}, w.up.weight);
    f(weight_spec<2>{"mlp.down_proj.weight", {C, I}, {}, I > 0}, w.down.weight);
  }
};

/// The MLP's buffers, kept in a sequence's state so decode allocates nothing per token.
template <class T>
struct mlp_buffers {
  tensor<T, 2> gate, up;
  void fit(index_t rows, index_t width) {
    // (a moved-from tensor may keep its extents without storage)
    if (!gate.data() || gate.extent(0) != rows || gate.extent(1) != width)
      gate = tensor<T, 2>({rows, width}), up = tensor<T, 2>({rows, width});
  }
};

/// y = down(silu(gate(h)) ⊙ up(h)) for h [N, C], y [N, C].
template <class T, class W>
void swiglu(const block_weights<T, W>& w, tensor_view<const T, 2> h, tensor_view<T, 2> y, mlp_buffers<T>& buf,
            int threads, std::string_view who) {
  const index_t N = h.extent(0), I = w.gate.out_features();
  buf.fit(N, I);
  w.gate(h, buf.gate.view(), who, threads);
  w.up(h, buf.up.view(), who, threads);
  simd::transform(buf.gate.data(), buf.up.data(), buf.gate.data(), N * I,
                  [](auto g, auto u) { return simd::silu(g) * u; });
  w.down(buf.gate.view(), y, who, threads);
}

}  // namespace seqmix::models
