// State-space benchmarks: the Mamba-1 selective scan and the Mamba-2 SSD scan per policy (prefill
// and decode), the causal conv1d, and the Mamba / Mamba2 layers.
#include <seqmix/kernels/ssm/selective_scan.hpp>
#include <seqmix/kernels/ssm/ssd.hpp>
#include <seqmix/layers/mamba.hpp>
#include <seqmix/layers/mamba2.hpp>
#include <seqmix/nn/conv1d.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

// Mamba-1 op FLOPs per token, channel and state: dt·A, (dt·u)·B, a·h + _, C·h + _ = 6 (the
// exponential itself is not counted; it costs about 12 vector instructions and bounds the kernel).
double scan_flops(index_t B, index_t T, index_t D, index_t N) { return 6.0 * B * T * D * N; }
// Mamba-2 op FLOPs per token, head and state element: x ⊗ B into the state and C·h out = 4 (the
// decay multiply is not counted, as for GLA and ggml's figures).
double ssd_flops(index_t B, index_t T, index_t H, index_t P, index_t N) { return 4.0 * B * T * H * P * N; }

// Mamba-1 op: B=1, d_inner=1536, d_state=16, one group; dt = softplus(delta + bias) in ~[1e-3, 0.1]
// and A = -(1..16), as in trained checkpoints.
template <class P>
void scan_op(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  const index_t B = 1, D = 1536, N = 16;
  policy.threads = threads;
  add(name(std::string("mamba/op/") + policy_name + "/" + phase, {{"B", B}, {"T", T}, {"D", D}, {"N", N}, {"threads", threads}}),
      double(B * T), scan_flops(B, T, D, N), [=](benchmark::State& state) {
        const auto u = uniform_tensor<float, 3>({B, T, D}, -1, 1, 1), z = uniform_tensor<float, 3>({B, T, D}, -2, 2, 2);
        const auto delta = uniform_tensor<float, 3>({B, T, D}, -4, -1, 3);
        tensor<float, 2> A({D, N});
        for (index_t d = 0; d < D; ++d)
          for (index_t n = 0; n < N; ++n) A(d, n) = -float(n + 1);
        const auto Bm = uniform_tensor<float, 4>({B, T, 1, N}, -1, 1, 4), Cm = uniform_tensor<float, 4>({B, T, 1, N}, -1, 1, 5);
        const auto Dv = uniform_tensor<float, 1>({D}, 0.5, 1.5, 6), bias = uniform_tensor<float, 1>({D}, -3, -2, 7);
        tensor<float, 3> y({B, T, D}), h({B, D, N});
        const kernels::ssm::selective_scan::inputs<float> in{u, delta, A, Bm, Cm, Dv, z, bias};
        for (auto _ : state) {
          kernels::ssm::selective_scan::forward(policy, in, y, h);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

// Mamba-2 op: B=1, H=24, P=64, N=128, one group (d_inner 1536 of a 768-wide model).
template <class P>
void ssd_op(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  const index_t B = 1, H = 24, Pd = 64, N = 128, G = 1;
  policy.threads = threads;
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}, {"H", H}, {"P", Pd}, {"N", N}, {"G", G}};
  if constexpr (exec::is_chunkwise_v<P>) args.push_back({"C", P::chunk});
  args.push_back({"threads", threads});
  add(name(std::string("mamba2/op/") + policy_name + "/" + phase, args),
      double(B * T), ssd_flops(B, T, H, Pd, N), [=](benchmark::State& state) {
        const auto x = uniform_tensor<float, 4>({B, T, H, Pd}, -1, 1, 1);
        const auto dt = uniform_tensor<float, 3>({B, T, H}, -4, -1, 2);
        const auto A = uniform_tensor<float, 1>({H}, -16, -1, 3);
        const auto Bm = uniform_tensor<float, 4>({B, T, G, N}, -1, 1, 4), Cm = uniform_tensor<float, 4>({B, T, G, N}, -1, 1, 5);
        const auto Dv = uniform_tensor<float, 1>({H}, 0.5, 1.5, 6), bias = uniform_tensor<float, 1>({H}, -3, -2, 7);
        tensor<float, 4> y({B, T, H, Pd}), h({B, H, Pd, N});
        const kernels::ssm::ssd::inputs<float> in{x, dt, A, Bm, Cm, Dv, bias};
        for (auto _ : state) {
          kernels::ssm::ssd::forward(policy, in, y, h);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

// Causal depthwise conv1d with bias and silu, 1536 channels, width 4 (Mamba-1's short conv).
void conv(index_t T, int threads) {
  const index_t B = 1, C = 1536, W = 4;
  add(name("conv1d/nn/direct/prefill", {{"B", B}, {"T", T}, {"C", C}, {"W", W}, {"threads", threads}}), double(B * T),
      2.0 * B * T * C * W, [=](benchmark::State& state) {
        const nn::causal_conv1d<float> conv{uniform_tensor<float, 2>({C, W}, -0.5, 0.5, 1), uniform_tensor<float, 1>({C}, -0.2, 0.2, 2), true};
        const auto x = uniform_tensor<float, 3>({B, T, C}, -1, 1, 3);
        tensor<float, 3> y({B, T, C});
        auto s = conv.make_state(B);
        for (auto _ : state) {
          conv(x, y, s, "conv1d", threads);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

// Mamba layer: d_model 768 (d_inner 1536, d_state 16, dt_rank 48), the mamba-130m block.
template <class WT, class P>
void mamba_layer(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  using L = layers::Mamba<float, WT>;
  typename L::config c;
  c.hidden_size = 768;
  const index_t B = 1, dm = c.hidden_size, di = c.d_inner(), N = c.d_state, R = c.rank();
  const double proj = 2.0 * dm * 2 * di + 2.0 * di * (R + 2 * N) + 2.0 * R * di + 2.0 * di * dm + 2.0 * di * c.d_conv;
  policy.threads = threads;
  add(with_weights<WT>(name(std::string("mamba/layer/") + policy_name + "/" + phase,
           {{"B", B}, {"T", T}, {"D", dm}, {"d_inner", di}, {"N", N}, {"threads", threads}})),
      double(B * T), B * T * proj + scan_flops(B, T, di, N), [=](benchmark::State& state) {
        const L m = L::init(c, 1);
        const auto x = uniform_tensor<float, 3>({B, T, dm}, -1, 1, 9);
        tensor<float, 3> y({B, T, dm});
        auto s = m.make_state(B);
        for (auto _ : state) {
          if (T == 1) m.step(exec::recurrent{threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
          else m.forward(policy, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

// Mamba2 layer: d_model 768 (d_inner 1536, 24 heads of 64, d_state 128, one group), the
// mamba2-130m block.
template <class WT, class P>
void mamba2_layer(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  using L = layers::Mamba2<float, WT>;
  typename L::config c;
  c.hidden_size = 768;
  const index_t B = 1, dm = c.hidden_size, di = c.d_inner(), H = c.nheads(), N = c.d_state;
  const double proj = 2.0 * dm * c.d_in_proj() + 2.0 * c.conv_dim() * c.d_conv + 2.0 * di * dm;
  policy.threads = threads;
  add(with_weights<WT>(name(std::string("mamba2/layer/") + policy_name + "/" + phase,
           {{"B", B}, {"T", T}, {"D", dm}, {"H", H}, {"P", c.headdim}, {"N", N}, {"threads", threads}})),
      double(B * T), B * T * proj + ssd_flops(B, T, H, c.headdim, N), [=](benchmark::State& state) {
        const L m = L::init(c, 1);
        const auto x = uniform_tensor<float, 3>({B, T, dm}, -1, 1, 9);
        tensor<float, 3> y({B, T, dm});
        auto s = m.make_state(B);
        for (auto _ : state) {
          if (T == 1) m.step(exec::recurrent{threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
          else m.forward(policy, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

const bool registered = [] {
  for (int threads : {1, 2}) {
    scan_op("recurrent", exec::recurrent{}, "prefill", 2048, threads);
    scan_op("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, threads);
    scan_op("parallel", exec::parallel{}, "prefill", 256, threads);  // O(T²): a shorter sequence
    ssd_op("recurrent", exec::recurrent{}, "prefill", 2048, threads);
    ssd_op("chunkwise", exec::chunkwise<32>{}, "prefill", 2048, threads);
    ssd_op("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, threads);
    ssd_op("parallel", exec::parallel{}, "prefill", 2048, threads);
    conv(2048, threads);
    mamba_layer<float>("automatic", exec::automatic{}, "prefill", 2048, threads);
    mamba_layer<bf16>("automatic", exec::automatic{}, "prefill", 2048, threads);
    mamba2_layer<float>("automatic", exec::automatic{}, "prefill", 2048, threads);
    mamba2_layer<bf16>("automatic", exec::automatic{}, "prefill", 2048, threads);
  }
  scan_op("automatic", exec::automatic{}, "prefill", 2048, 1);
  ssd_op("automatic", exec::automatic{}, "prefill", 2048, 1);
  ssd_op("recurrent", exec::recurrent{}, "prefill", 32, 1);  // below the automatic crossover
  ssd_op("chunkwise", exec::chunkwise<32>{}, "prefill", 32, 1);
  for (index_t T : {16, 64, 256}) {  // short prefills: the exec::automatic rule (docs/policy.md)
    scan_op("recurrent", exec::recurrent{}, "prefill", T, 1);
    scan_op("chunkwise", exec::chunkwise<64>{}, "prefill", T, 1);
    if (T != 256) scan_op("parallel", exec::parallel{}, "prefill", T, 1);
  }
  for (index_t T : {2, 4, 8, 16, 48, 64, 128, 256}) {
    ssd_op("recurrent", exec::recurrent{}, "prefill", T, 1);
    ssd_op("chunkwise", exec::chunkwise<32>{}, "prefill", T, 1);
    ssd_op("chunkwise", exec::chunkwise<64>{}, "prefill", T, 1);
  }
  for (int threads : {1, 2}) {
    scan_op("recurrent", exec::recurrent{}, "decode", 1, threads);
    ssd_op("recurrent", exec::recurrent{}, "decode", 1, threads);
  }
  for (int threads : {1, 2}) {
    mamba_layer<float>("recurrent", exec::recurrent{}, "decode", 1, threads);
    mamba_layer<bf16>("recurrent", exec::recurrent{}, "decode", 1, threads);
    mamba2_layer<float>("recurrent", exec::recurrent{}, "decode", 1, threads);
    mamba2_layer<bf16>("recurrent", exec::recurrent{}, "decode", 1, threads);
  }
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
