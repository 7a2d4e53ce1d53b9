// Dense projection benchmarks (nn::linear): float32 and bf16 weights side by side,
// linear/op/<f32|bf16>/<prefill|decode>/B:1/T:<2048|1>/in:<n>/out:<m>/threads:<t>, for the shapes
// of issue 21 (1024 -> 4096, 4096 -> 1024, 4096 -> 4096) and the Bi-Mamba-780M in_proj
// (1536 -> 6448, compared with bitlinear/op in bitlinear.cpp). GFLOPS count 2·in·out per row;
// weight_bytes_per_second is the weight bytes read per call.
#include <seqmix/nn/linear.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

template <class W>
void linear_op(const char* type, const char* phase, index_t T, index_t in, index_t out, int threads) {
  add(name(std::string("linear/op/") + type + "/" + phase, {{"B", 1}, {"T", T}, {"in", in}, {"out", out}, {"threads", threads}}),
      double(T), 2.0 * double(T) * in * out, [=](benchmark::State& state) {
        const auto wf = uniform_tensor<float, 2>({out, in}, -0.02, 0.02, 1);
        tensor<W, 2> w({out, in});
        for (index_t i = 0; i < wf.size(); ++i) w.data()[i] = W(wf.data()[i]);
        nn::linear<float, W> op{std::move(w), std::nullopt};
        const auto x = uniform_tensor<float, 2>({T, in}, -1, 1, 4);
        tensor<float, 2> y({T, out});
        for (auto _ : state) {
          op(x.view(), y.view(), "linear", threads);
          benchmark::DoNotOptimize(y.data());
        }
        state.counters["weight_bytes_per_second"] =
            benchmark::Counter(double(out) * double(in) * sizeof(W), benchmark::Counter::kIsIterationInvariantRate);
      });
}

const bool registered = [] {
  const std::pair<index_t, index_t> shapes[] = {{1024, 4096}, {4096, 1024}, {4096, 4096}, {1536, 6448}};
  for (const auto& [in, out] : shapes)
    for (int threads : {1, 2})
      for (const auto& [phase, T] : {std::pair{"prefill", index_t(2048)}, std::pair{"decode", index_t(1)}}) {
        linear_op<float>("f32", phase, T, in, out, threads);
        linear_op<bf16>("bf16", phase, T, in, out, threads);
      }
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
