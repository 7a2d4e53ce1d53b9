// RWKV-7 benchmarks: the op per policy (prefill and decode) and the RWKV7TimeMix layer.
#include <seqmix/kernels/rwkv7/rwkv7.hpp>
#include <seqmix/layers/rwkv7.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

// Op FLOPs per token and head: 2·K·V for sa = Sᵀa, K·V for the decay, 2·K·V each for the b·saᵀ and
// k·vᵀ updates and 2·K·V for o = Sᵀr: 9·K·V, the count behind ggml's figure for ggml_rwkv_wkv7.
double op_flops(index_t B, index_t T, index_t H, index_t K, index_t V) { return 9.0 * B * T * H * K * V; }

// Inputs as the layer makes them: a = -kk, b = kk·a_gate with kk a unit vector per head.
struct op_inputs {
  tensor<float, 4> r, w, k, v, a, b;
  op_inputs(index_t B, index_t T, index_t H, index_t K)
      : r(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 1)),
        w(uniform_tensor<float, 4>({B, T, H, K}, -0.6065, -0.01, 2)),  // the layer's log-decay range
        k(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 3)),
        v(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 4)),
        a(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 5)),
        b(uniform_tensor<float, 4>({B, T, H, K}, 0, 1, 6)) {
    for (index_t n = 0; n < B * T * H; ++n) {
      float* kk = a.data() + n * K;
      float n2 = 0;
      for (index_t i = 0; i < K; ++i) n2 += kk[i] * kk[i];
      const float inv = 1 / std::sqrt(n2);
      for (index_t i = 0; i < K; ++i) kk[i] *= -inv, b.data()[n * K + i] *= -kk[i];
    }
  }
};

template <class P>
void op(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  const index_t B = 1, H = 8, K = 64, V = 64;
  policy.threads = threads;
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}, {"H", H}, {"K", K}, {"V", V}};
  if constexpr (exec::is_chunkwise_v<P>) args.push_back({"C", long(P::chunk)});
  args.push_back({"threads", threads});
  add(name(std::string("rwkv7/op/") + policy_name + "/" + phase, args), double(B * T), op_flops(B, T, H, K, V),
      [=](benchmark::State& state) {
        const op_inputs in(B, T, H, K);
        const kernels::rwkv7::inputs<float> args{.r = in.r, .w = in.w, .k = in.k, .v = in.v, .a = in.a, .b = in.b};
        tensor<float, 4> o({B, T, H, V}), s({B, H, K, V});
        for (auto _ : state) {
          kernels::rwkv7::forward(policy, args, o, s);
          benchmark::DoNotOptimize(o.data());
        }
      });
}

// Layer: C 512 (8 heads of 64, the op benchmark's shape), LoRA ranks of the RWKV-7 0.1B model,
// layer 1 (so the value-residual path runs too).
template <class WT, class P>
void layer(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  using L = layers::RWKV7TimeMix<float, WT>;
  typename L::config c;
  c.hidden_size = 512, c.head_size = 64, c.layer_id = 1;
  c.decay_lora = 64, c.aaa_lora = 64, c.mv_lora = 32, c.gate_lora = 128;
  const index_t B = 1, C = c.hidden_size, H = c.n_head(), N = c.head_size;
  const double lora = 2.0 * 2.0 * C * double(c.decay_lora + c.aaa_lora + c.mv_lora + c.gate_lora);
  const double flops = B * T * (4 * 2.0 * C * C + lora) + op_flops(B, T, H, N, N);  // + elementwise work, not counted
  policy.threads = threads;
  add(with_weights<WT>(name(std::string("rwkv7/layer/") + policy_name + "/" + phase,
           {{"B", B}, {"T", T}, {"D", C}, {"H", H}, {"K", N}, {"V", N}, {"threads", threads}})),
      double(B * T), flops, [=](benchmark::State& state) {
        unsigned seed = 1;
        const L tmix = L::init(c, seed++);
        const auto x = uniform_tensor<float, 3>({B, T, C}, -1, 1, seed++);
        layers::cross_layer<float> cross{uniform_tensor<float, 3>({B, T, C}, -1, 1, seed++)};  // layer 0's v
        tensor<float, 3> y({B, T, C});
        auto s = tmix.make_state(B, {.cross = &cross});
        for (auto _ : state) {
          if (T == 1) tmix.step(exec::recurrent{threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
          else tmix.forward(policy, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

const bool registered = [] {
  for (int threads : {1, 2}) {
    op("recurrent", exec::recurrent{}, "prefill", 2048, threads);
    op("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, threads);
    op("parallel", exec::parallel{}, "prefill", 2048, threads);
    layer<float>("automatic", exec::automatic{}, "prefill", 2048, threads);
    layer<bf16>("automatic", exec::automatic{}, "prefill", 2048, threads);
  }
  op("chunkwise", exec::chunkwise<16>{}, "prefill", 2048, 1);
  op("recurrent", exec::recurrent{}, "prefill", 256, 1);  // inputs fit in L3: the kernel without DRAM traffic
  for (index_t T : {16, 64, 256}) {  // short prefills: the exec::automatic rule (docs/policy.md)
    if (T != 256) op("recurrent", exec::recurrent{}, "prefill", T, 1);
    op("chunkwise", exec::chunkwise<16>{}, "prefill", T, 1);
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
