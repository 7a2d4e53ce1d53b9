// nGPT benchmarks: the normalized residual update (bandwidth-bound: compare bytes_per_second with
// machine/triad/DRAM of the same run), the NGPTBlock layer (prefill per policy and thread count,
// decode after 4096 cached tokens), and beside it the same block without the nGPT normalizations
// ("ngpt/plain/...": pre-norm RMSNorm, standard RoPE, attention with scale 1/√hd, u ⊙ silu(v) MLP,
// plain residual adds) on the same kernels and GEMM shapes, so the cost of normalizing shows as
// the time difference of two rows with the same FLOP count.
#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/kernels/ngpt/ngpt.hpp>
#include <seqmix/layers/ngpt.hpp>
#include <seqmix/nn/linear.hpp>
#include <seqmix/nn/rmsnorm.hpp>
#include <seqmix/nn/rotary.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

namespace attn = kernels::attention;

// ---- the op: B=1, T=2048, C=1024 (h, h_m and out 8 MiB each) ----
// Bytes: h and h_m read once, out written once (12 bytes per float element, as the triad counts).
// FLOPs per element, as written (recomputation of the sum in the last sweep not counted): 4 for the
// two sums of squares, 5 for z = A + lr(B − A) with A = h/‖h‖, B = h_m/‖h_m‖, 2 for ‖z‖², 1 to scale.
template <class P>
void op(const char* policy_name, P policy, int threads) {
  const index_t B = 1, T = 2048, C = 1024;
  policy.threads = threads;
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}, {"C", C}};
  if (threads > 1) args.push_back({"threads", threads});
  benchmark::RegisterBenchmark(name(std::string("ngpt/op/") + policy_name + "/prefill", args).c_str(),
                               [=](benchmark::State& state) {
                                 const auto h = uniform_tensor<float, 3>({B, T, C}, -1, 1, 1);
                                 const auto hm = uniform_tensor<float, 3>({B, T, C}, -1, 1, 2);
                                 const auto alpha = uniform_tensor<float, 1>({C}, -0.2, 0.2, 3);
                                 tensor<float, 3> out({B, T, C});
                                 const kernels::ngpt::options<float> opt{float(0.05 * std::sqrt(double(C)))};
                                 for (auto _ : state) {
                                   kernels::ngpt::forward(policy, h, hm, alpha, out, opt);
                                   benchmark::DoNotOptimize(out.data());
                                   benchmark::ClobberMemory();
                                 }
                                 const double n = double(B * T * C);
                                 state.SetBytesProcessed(int64_t(double(state.iterations()) * 3 * sizeof(float) * n));
                                 state.SetItemsProcessed(int64_t(state.iterations()) * B * T);
                                 state.counters["GFLOPS"] =
                                     benchmark::Counter(12 * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
                               })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

// ---- the plain block: what NGPTBlock computes with the normalizations taken out ----
struct plain_block {
  struct config {
    index_t hidden_size = 0, num_heads = 0;
  };
  config c;
  nn::linear<float> q, k, v, o, fc, proj;
  tensor<float, 1> norm1, norm2;
  nn::rotary<float> rope;

  static plain_block init(const config& c, std::uint64_t seed) {
    const index_t C = c.hidden_size;
    plain_block b;
    b.c = c;
    unsigned s = unsigned(seed) * 16;
    auto lin = [&](nn::linear<float>& l, index_t out, index_t in) {
      const double r = 1 / std::sqrt(double(in));
      l.weight = uniform_tensor<float, 2>({out, in}, -r, r, ++s);
    };
    lin(b.q, C, C), lin(b.k, C, C), lin(b.v, C, C), lin(b.o, C, C), lin(b.fc, 8 * C, C), lin(b.proj, C, 4 * C);
    b.norm1 = tensor<float, 1>({C}, 1.f), b.norm2 = tensor<float, 1>({C}, 1.f);
    b.rope = {C / c.num_heads, 10000, nn::rope_layout::half_split};
    return b;
  }
  struct State : attn::kv_cache<float> {  // the cache and the temporaries, as NGPTBlock's
    using attn::kv_cache<float>::kv_cache;
    layers::scratch<float> work;
  };
  State make_state(index_t batch, const layers::state_options<float>& opt) const {
    const index_t D = c.hidden_size / c.num_heads;
    return State({batch, c.num_heads, D, c.num_heads, D}, opt.capacity);
  }

  template <exec::policy P>
  void forward(const P& policy, tensor_view<const float, 3> x, tensor_view<float, 3> y, State& state) const {
    const pool_scope scope(policy);
    const index_t B = x.extent(0), L = x.extent(1), N = B * L, C = c.hidden_size, H = c.num_heads, D = C / H;
    const int th = policy.threads;
    const float* xr = x.data();  // contiguous here
    float* ws = state.work.get(14 * N * C);
    const tensor_view<float, 2> xn(ws, {N, C}), qt(ws + N * C, {N, C}), kt(ws + 2 * N * C, {N, C}),
        vt(ws + 3 * N * C, {N, C}), ot(ws + 4 * N * C, {N, C}), h(ws + 5 * N * C, {N, C}), uv(ws + 6 * N * C, {N, 8 * C});
    parallel_for(th, N, [&](index_t n) { nn::rmsnorm_row(xr + n * C, norm1.data(), xn.data() + n * C, C, 1e-6f); });
    q(xn, qt, "plain", th), k(xn, kt, "plain", th), v(xn, vt, "plain", th);
    auto heads = [&](const tensor_view<float, 2>& t) { return t.template reshape<4>({B, L, H, D}); };
    std::vector<float> cs, sn;
    rope.tables(state.length(), L, cs, sn);
    rope.apply(heads(qt), cs, sn, "plain", th), rope.apply(heads(kt), cs, sn, "plain", th);
    attn::forward(policy, heads(qt), heads(kt), heads(vt), heads(ot), state, {1 / std::sqrt(float(D))});
    o(ot, h, "plain", th);
    parallel_for(th, N, [&](index_t n) {
      float* r = h.data() + n * C;
      simd::transform(r, xr + n * C, r, C, [](auto a, auto b) { return a + b; });
      nn::rmsnorm_row(r, norm2.data(), xn.data() + n * C, C, 1e-6f);
    });
    fc(xn, uv, "plain", th);
    parallel_for(th, N, [&](index_t n) {
      float* r = uv.data() + n * 8 * C;
      simd::transform(r, r + 4 * C, r, 4 * C, [](auto a, auto b) { return a * simd::silu(b); });
    });
    proj(tensor_view<const float, 2>(uv.data(), {N, 4 * C}, {8 * C, 1}), ot, "plain", th);
    parallel_for(th, N, [&](index_t n) {
      simd::transform(h.data() + n * C, ot.data() + n * C, y.data() + n * C, C, [](auto a, auto b) { return a + b; });
    });
  }
  void step(const exec::recurrent& policy, tensor_view<const float, 2> x, tensor_view<float, 2> y, State& s) const {
    forward(policy, layers::detail::as_sequence(x), layers::detail::as_sequence(y), s);
  }
};

// ---- the layers: B=1, C=1024, H=16 (head_dim 64); prefill T=2048, decode one token after 4096 ----
// FLOPs per token: 2·C·(4C + 8C + 4C) for q, k, v, att_c_proj, c_fc, mlp_c_proj; per visible
// (query, key) pair 4·C (q·k and p·v over the H heads of hd, as ggml counts flash attention); a
// causal prefill has T²/2 pairs. Norms, RoPE, softmax and silu are not counted (the same count for
// the plain block, so its rows compare by time).
template <class Layer, class WT, class P>
void layer(const char* family, const typename Layer::config& cfg, P policy, const char* policy_name, const char* phase,
           index_t T, index_t cached, int threads) {
  const index_t B = 1, C = 1024, H = 16;
  policy.threads = threads;
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}};
  if (cached > 0) args.push_back({"cache", cached});
  args.insert(args.end(), {{"C", C}, {"H", H}, {"threads", threads}});
  double pairs = 0;
  for (index_t t = 0; t < T; ++t) pairs += double(cached + t + 1);
  if (cached == 0) pairs = double(T) * double(T) / 2;
  const double flops = double(B * T) * 2.0 * double(C) * double(16 * C) + pairs * 4.0 * double(C);
  add(with_weights<WT>(name(std::string(family) + policy_name + "/" + phase, args)), double(B * T), flops,
      [=](benchmark::State& state) {
    const Layer l = Layer::init(cfg, 1);
    auto unit = [&](index_t n, unsigned seed) {  // unit-norm rows, as nGPT hidden states
      auto x = uniform_tensor<float, 3>({B, n, C}, -1, 1, seed);
      for (index_t t = 0; t < n; ++t) {
        double ss = 0;
        for (index_t i = 0; i < C; ++i) ss += double(x(0, t, i)) * x(0, t, i);
        for (index_t i = 0; i < C; ++i) x(0, t, i) = float(x(0, t, i) / std::sqrt(ss));
      }
      return x;
    };
    const auto x = unit(T, 10);
    tensor<float, 3> y({B, T, C});
    auto s = l.make_state(B, {.capacity = cached + T});
    if (cached > 0) {
      tensor<float, 3> yc({B, cached, C});
      l.forward(exec::chunkwise<64>{threads}, unit(cached, 11).view(), yc.view(), s);
    }
    if (T > 1) l.forward(policy, x.view(), y.view(), s);  // untimed: the state's scratch, as in steady use
    for (auto _ : state) {
      s.truncate(cached);
      if (T == 1) l.step(exec::recurrent{threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
      else l.forward(policy, x.view(), y.view(), s);
      benchmark::DoNotOptimize(y.data());
    }
  });
}

template <class WT, class P>
void ngpt_layer(P policy, const char* policy_name, const char* phase, index_t T, index_t cached, int threads) {
  using L = layers::NGPTBlock<float, WT>;
  typename L::config nc;
  nc.hidden_size = 1024, nc.num_heads = 16;
  layer<L, WT>("ngpt/layer/", nc, policy, policy_name, phase, T, cached, threads);
}

// The nGPT block with float and bf16 weights, and the plain block.
template <class P>
void both(P policy, const char* policy_name, const char* phase, index_t T, index_t cached, int threads) {
  ngpt_layer<float>(policy, policy_name, phase, T, cached, threads);
  ngpt_layer<bf16>(policy, policy_name, phase, T, cached, threads);
  layer<plain_block, float>("ngpt/plain/", plain_block::config{1024, 16}, policy, policy_name, phase, T, cached,
                            threads);
}

const bool registered = [] {
  op("recurrent", exec::recurrent{}, 1);
  op("chunkwise", exec::chunkwise<64>{}, 1);
  op("parallel", exec::parallel{}, 1);
  op("chunkwise", exec::chunkwise<64>{}, 2);
  for (int threads : {1, 2}) both(exec::chunkwise<64>{}, "chunkwise", "prefill", 2048, 0, threads);
  both(exec::parallel{}, "parallel", "prefill", 2048, 0, 1);
  for (int threads : {1, 2}) both(exec::recurrent{}, "recurrent", "decode", 1, 4096, threads);
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
