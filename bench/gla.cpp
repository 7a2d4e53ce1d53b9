// GLA benchmarks: the op per policy (prefill and decode) and the GatedLinearAttention layer.
#include <seqmix/kernels/gla/gla.hpp>
#include <seqmix/layers/gla.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

// Op FLOPs per token and head: 2·K·V to add k vᵀ into the state and 2·K·V to read q·S (the
// decay multiply is not counted, as in ggml's figure for ggml_gated_linear_attn).
double op_flops(index_t B, index_t T, index_t H, index_t K, index_t V) { return 4.0 * B * T * H * K * V; }

template <class P>
void op(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  const index_t B = 1, H = 8, K = 64, V = 64;
  policy.threads = threads;
  add(name(std::string("gla/op/") + policy_name + "/" + phase, {{"B", B}, {"T", T}, {"H", H}, {"K", K}, {"V", V}, {"threads", threads}}),
      double(B * T), op_flops(B, T, H, K, V), [=](benchmark::State& state) {
        const auto q = uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 1), k = uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 2);
        const auto v = uniform_tensor<float, 4>({B, T, H, V}, -1, 1, 3);
        const auto g = uniform_tensor<float, 4>({B, T, H, K}, -0.2, 0, 4);  // decays typical of trained models
        tensor<float, 4> o({B, T, H, V}), s({B, H, K, V});
        for (auto _ : state) {
          kernels::gla::forward(policy, q, k, v, g, o, s);
          benchmark::DoNotOptimize(o.data());
        }
      });
}

// Layer: hidden 1024, 8 heads (head_k_dim 64, head_v_dim 128), low-rank gates of rank 16.
template <class WT, class P>
void layer(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  using L = layers::GatedLinearAttention<float, WT>;
  typename L::config c;
  c.hidden_size = 1024, c.num_heads = 8;
  const index_t B = 1, D = c.hidden_size, kd = c.key_dim(), vd = c.value_dim(), r = c.gate_low_rank_dim;
  const double proj = 2.0 * D * (2 * kd + 2 * vd + r) + 2.0 * r * kd + 2.0 * vd * D;  // per token
  const double flops = B * T * proj + op_flops(B, T, c.num_heads, c.head_k_dim(), c.head_v_dim());
  policy.threads = threads;
  add(with_weights<WT>(name(std::string("gla/layer/") + policy_name + "/" + phase,
                           {{"B", B}, {"T", T}, {"D", D}, {"H", c.num_heads}, {"K", c.head_k_dim()}, {"V", c.head_v_dim()},
                            {"threads", threads}})),
      double(B * T), flops, [=](benchmark::State& state) {
        const L gla = L::init(c, 1);
        const auto x = uniform_tensor<float, 3>({B, T, D}, -1, 1, 10);
        tensor<float, 3> y({B, T, D});
        auto s = gla.make_state(B);
        for (auto _ : state) {
          if (T == 1) gla.step(exec::recurrent{threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
          else gla.forward(policy, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

const bool registered = [] {
  for (int threads : {1, 2}) {
    op("recurrent", exec::recurrent{}, "prefill", 2048, threads);
    op("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, threads);
    op("parallel", exec::parallel{}, "prefill", 2048, threads);
    layer<float>("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, threads);
    layer<bf16>("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, threads);
  }
  // Short prefills: where each policy wins (the exec::automatic rule, docs/policy.md).
  for (index_t T : {16, 64, 256}) {
    op("recurrent", exec::recurrent{}, "prefill", T, 1);
    op("chunkwise", exec::chunkwise<64>{}, "prefill", T, 1);
    op("parallel", exec::parallel{}, "prefill", T, 1);
  }
  for (int threads : {1, 2}) op("recurrent", exec::recurrent{}, "decode", 1, threads);
  for (int threads : {1, 2}) {
    layer<float>("recurrent", exec::recurrent{}, "decode", 1, threads);
    layer<bf16>("recurrent", exec::recurrent{}, "decode", 1, threads);
  }
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
