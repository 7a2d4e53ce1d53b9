// UltraMem benchmarks at one realistic shape (issue 18): C = 1024, n = 512 (262,144 virtual values
// per head), dk = 128, r = 2, h = 2, m = 32, E = 4, dv = 256 (memories [2, 65536, 256]: 128 MiB).
// The op (retrieval + weighted value sum; its value table [h, n², dv_op] with dv_op = 64 so that it
// too is 128 MiB), the layer's prefill T = 2048 (threads 1 and 2) and decode, and a dense SwiGLU
// FFN of the same width and the same FLOPs per token (ffn/layer/swiglu/...), so the cost of the
// sparse memory shows against dense compute. Counters: GFLOPS by the stated counts below, and
// gather_bytes_per_second (the selected value rows read per second).
#include <cmath>

#include <seqmix/kernels/ultramem/ultramem.hpp>
#include <seqmix/layers/ultramem.hpp>
#include <seqmix/nn/linear.hpp>
#include <seqmix/simd/math.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

constexpr index_t C = 1024, n = 512, dk = 128, r = 2, h = 2, m = 32, E = 4, dv = 256, dv_op = 64, Kq = 4;

// FLOPs per token of the retrieval: the two key-score products 2·(2·r·n·dk); per head the rank-1
// scores 2·(2·r·n) and the grid (m rows of 2·r² for the core product, m² cells of 2·r).
constexpr double retrieval_flops = 4.0 * r * n * dk + h * (4.0 * r * n + 2.0 * m * r * r + 2.0 * r * m * m);
// The op adds the weighted sum 2·h·m·dv_op.
constexpr double op_flops = retrieval_flops + 2.0 * h * m * dv_op;
// The layer adds the query conv 2·C·Kq, to_queries 2·C·2dk, the IVE pooling 2·h·m·dv, the
// expansion 2·h·E·dv·dv and combine_values_to_out 2·h·dv·C (norms not counted).
constexpr double layer_flops =
    retrieval_flops + 2.0 * C * Kq + 2.0 * C * 2 * dk + 2.0 * h * m * dv + 2.0 * h * E * dv * dv + 2.0 * h * dv * C;
// The dense FFN of equal FLOPs per token: 6·C·F (gate, up, down) = layer_flops, F rounded to 64.
constexpr index_t ffn_width = index_t(layer_flops / (6.0 * C) / 64 + 0.5) * 64;

void set_gather(benchmark::State& state, double tokens, index_t row_floats) {
  state.counters["gather_bytes_per_second"] =
      benchmark::Counter(tokens * double(h * m * row_floats) * sizeof(float), benchmark::Counter::kIsIterationInvariantRate);
}

void op(int threads) {
  const index_t B = 1, T = 2048;
  add(name("ultramem/op/parallel/prefill", {{"B", B}, {"T", T}, {"n", n}, {"dk", dk}, {"r", r}, {"h", h}, {"m", m},
                                            {"dv", dv_op}, {"threads", threads}}),
      double(T), op_flops * double(T), [=](benchmark::State& state) {
        const auto qr = uniform_tensor<float, 3>({B, T, dk}, -1, 1, 1), qc = uniform_tensor<float, 3>({B, T, dk}, -1, 1, 2);
        const auto keys = uniform_tensor<float, 4>({2, r, n, dk}, -1, 1, 3);
        const auto core = uniform_tensor<float, 3>({h, r, r}, -1, 1, 4);
        const auto values = uniform_tensor<float, 3>({h, n * n, dv_op}, -1, 1, 5);
        tensor<float, 4> o({B, T, h, dv_op}), sc({B, T, h, m});
        tensor<std::int64_t, 4> idx({B, T, h, m});
        for (auto _ : state) {
          kernels::ultramem::forward(exec::parallel{threads}, qr, qc, keys, core, values, o, idx.view(), sc);
          benchmark::DoNotOptimize(o.data());
          benchmark::ClobberMemory();
        }
        set_gather(state, double(T), dv_op);
      });
}

template <class WT>
using layer_t = layers::UltraMem<float, WT>;

template <class WT>
typename layer_t<WT>::config layer_config() {
  typename layer_t<WT>::config c;
  c.hidden_size = C, c.num_keys = n, c.dim_qk = dk, c.core_rank = r, c.core_heads = h, c.topk = m, c.dim_values = dv;
  c.value_expansion = E, c.query_conv_kernel = Kq;
  return c;
}

template <class WT>
const layer_t<WT>& shared_layer() {
  static const layer_t<WT> l = layer_t<WT>::init(layer_config<WT>(), 1);  // 128 MiB of memories, built once
  return l;
}

template <class WT>
void layer(const char* phase, index_t T, int threads) {
  const index_t B = 1;
  add(with_weights<WT>(name(std::string("ultramem/layer/") + (T == 1 ? "recurrent/" : "chunkwise/") + phase,
                            {{"B", B}, {"T", T}, {"C", C}, {"n", n}, {"h", h}, {"m", m}, {"E", E}, {"dv", dv},
                             {"threads", threads}})),
      double(T), layer_flops * double(T), [=](benchmark::State& state) {
        const layer_t<WT>& l = shared_layer<WT>();
        // Decode reads rows of a table far larger than the caches: a fresh token each step.
        const index_t steps = 256;
        const auto x = uniform_tensor<float, 3>({B, T == 1 ? steps : T, C}, -1, 1, 10);
        tensor<float, 3> y({B, T, C});
        auto s = l.make_state(B);
        index_t k = 0;
        for (auto _ : state) {
          if (T == 1) l.step(exec::recurrent{threads}, x.view().slice(1, k++ % steps), y.view().slice(1, 0), s);
          else l.forward(exec::chunkwise<64>{threads}, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
        set_gather(state, double(T), dv);
      });
}

// The dense SwiGLU FFN: y = (silu(x W_gᵀ) ⊙ x W_uᵀ) W_dᵀ with W_g, W_u [F, C] (one [2F, C]
// product), W_d [C, F].
void ffn(index_t T, int threads) {
  const index_t B = 1, F = ffn_width;
  add(name("ffn/layer/swiglu/prefill", {{"B", B}, {"T", T}, {"C", C}, {"F", F}, {"threads", threads}}), double(T),
      6.0 * C * F * double(T), [=](benchmark::State& state) {
        nn::linear<float> gu{uniform_tensor<float, 2>({2 * F, C}, -0.03, 0.03, 1), std::nullopt},
            down{uniform_tensor<float, 2>({C, F}, -0.03, 0.03, 2), std::nullopt};
        const auto x = uniform_tensor<float, 2>({B * T, C}, -1, 1, 3);
        tensor<float, 2> a({B * T, 2 * F}), y({B * T, C});
        for (auto _ : state) {
          gu(x.view(), a.view(), "ffn", threads);
          parallel_for(threads, B * T, [&](index_t i) {
            float* row = a.data() + i * 2 * F;
            simd::transform(row, row + F, row, F, [](auto g, auto u) { return simd::silu(g) * u; });
          });
          down(tensor_view<const float, 2>(a.data(), {B * T, F}, {2 * F, 1}), y.view(), "ffn", threads);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

const bool registered = [] {
  for (int threads : {1, 2}) op(threads);
  for (int threads : {1, 2}) {
    layer<float>("prefill", 2048, threads);
    layer<bf16>("prefill", 2048, threads);
  }
  layer<float>("decode", 1, 1);
  layer<bf16>("decode", 1, 1);
  for (int threads : {1, 2}) ffn(2048, threads);
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
