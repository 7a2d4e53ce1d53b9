// 1-bit linear benchmarks (docs/bitlinear.md): nn::binary_linear, to be read beside the float32
// rows linear/op/f32/... of the same shapes (bench/linear.cpp), decode (one row) and prefill (2048
// rows), 4096 x 4096 and the Bi-Mamba-780M in_proj shape (1536 -> 2·3072 + 2·128 + 48 = 6448);
// GFLOPS count 2·in·out per row, weight_bytes_per_second the weight bytes read per call (packed signs and scales / float32 matrix). Then the BiMamba2 layer
// beside Mamba2 of the same shape (d_model 1536, 48 heads of 64, d_state 128), prefill and decode.
#include <seqmix/layers/bi_mamba.hpp>
#include <seqmix/layers/mamba2.hpp>
#include <seqmix/nn/binary_linear.hpp>
#include <seqmix/nn/linear.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

std::string op_name(const std::string& prefix, const char* phase, index_t T, index_t in, index_t out, int threads) {
  return name(prefix + "/" + phase, {{"B", 1}, {"T", T}, {"in", in}, {"out", out}, {"threads", threads}});
}

void counters(benchmark::State& state, double weight_bytes) {
  state.counters["weight_bytes_per_second"] = benchmark::Counter(weight_bytes, benchmark::Counter::kIsIterationInvariantRate);
}

void bit_op(const char* path, bool portable, const char* phase, index_t T, index_t in, index_t out, int threads) {
  add(op_name(std::string("bitlinear/op/") + path, phase, T, in, out, threads), double(T), 2.0 * double(T) * in * out,
      [=](benchmark::State& state) {
        nn::binary_linear<float> op;
        op.weight = nn::packed_bits::random(out, in, 1);
        op.wscale = uniform_tensor<float, 1>({in}, 0.01, 0.02, 2);
        op.wbias = uniform_tensor<float, 1>({in}, -0.001, 0.001, 3);
        const auto x = uniform_tensor<float, 2>({T, in}, -1, 1, 4);
        tensor<float, 2> y({T, out});
        for (auto _ : state) {
          if (portable) op.portable(x.view(), y.view(), "bitlinear", threads);
          else op(x.view(), y.view(), "bitlinear", threads);
          benchmark::DoNotOptimize(y.data());
        }
        counters(state, double(op.memory_bytes()));
      });
}

// BiMamba2 and Mamba2 of the Bi-Mamba-780M block shape.
template <class L>
void layer(const char* family, const char* phase, index_t T, int threads) {
  typename L::config c;
  c.hidden_size = 1536;
  const index_t B = 1, dm = c.hidden_size, di = c.d_inner(), H = c.nheads(), N = c.d_state;
  const double flops = double(B * T) * (2.0 * dm * c.d_in_proj() + 2.0 * c.conv_dim() * c.d_conv + 2.0 * di * dm +
                                        6.0 * H * c.headdim * N);
  add(name(std::string(family) + "/layer/" + (T == 1 ? "recurrent" : "automatic") + "/" + phase,
           {{"B", B}, {"T", T}, {"D", dm}, {"H", H}, {"P", c.headdim}, {"N", N}, {"threads", threads}}),
      double(B * T), flops, [=](benchmark::State& state) {
        const L m = L::init(c, 1);
        const auto x = uniform_tensor<float, 3>({B, T, dm}, -1, 1, 9);
        tensor<float, 3> y({B, T, dm});
        auto s = m.make_state(B);
        for (auto _ : state) {
          if (T == 1) m.step(exec::recurrent{threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
          else m.forward(exec::automatic{threads}, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

const bool registered = [] {
  const char* path = simd::bits::lut_path();
  const std::pair<index_t, index_t> shapes[] = {{4096, 4096}, {1536, 2 * 3072 + 2 * 128 + 48}};
  for (const auto& [in, out] : shapes)
    for (int threads : {1, 2}) {
      bit_op(path, false, "decode", 1, in, out, threads);
      bit_op(path, false, "prefill", 2048, in, out, threads);
    }
  if (std::string(path) != "portable") bit_op("portable", true, "decode", 1, 4096, 4096, 1);
  for (int threads : {1, 2}) {
    layer<layers::BiMamba2<float>>("bi_mamba", "decode", 1, threads);
    layer<layers::Mamba2<float>>("mamba2", "decode", 1, threads);
    layer<layers::BiMamba2<float>>("bi_mamba", "prefill", 2048, threads);
    layer<layers::Mamba2<float>>("mamba2", "prefill", 2048, threads);
  }
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
