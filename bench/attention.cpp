// Softmax and differential attention benchmarks: the op per policy (causal prefill, windowed
// prefill, decode against a 4096-token cache; decode against 4096 and 32768 tokens with a float32
// and a bf16 KV cache) and the Attention / MultiheadDiffAttn layers.
#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/kernels/attention/differential.hpp>
#include <seqmix/layers/attention.hpp>
#include <seqmix/layers/diff_attn.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

namespace attn = kernels::attention;

// FLOPs as ggml counts them for flash attention: 2·D for q·k and 2·Dv for p·v per visible
// (query, key) pair; a causal prefill has T²/2 pairs per head (4·T²/2·D·Hq for Dv = D), a
// window W caps a query's keys at W. Exponentials and the softmax bookkeeping are not counted.
double pairs(index_t P, index_t T, index_t W) {
  double n = 0;
  for (index_t t = 0; t < T; ++t) n += double(W > 0 ? std::min(P + t + 1, W) : P + t + 1);
  return n;
}
double pairs_causal(index_t T) { return double(T) * double(T) / 2; }  // the T²/2

// The KV-cache storage argument of a row, "kv:f32" or "kv:bf16", inserted before its threads
// argument (as bench/common.hpp's with_weights): ".../D:128/kv:bf16/threads:1".
template <class S>
std::string with_kv(std::string row) {
  const char* tag = std::is_same_v<S, bf16> ? "/kv:bf16" : "/kv:f32";
  const auto at = row.rfind("/threads:");
  return at == std::string::npos ? row + tag : row.insert(at, tag);
}

// Op: B=1, Hq=8, Hkv=2. prefill: T new tokens on an empty cache; decode: one token after P cached.
// S: the KV cache's storage type; rows with S given (kv_tag) name it, the float rows without it
// keep their names.
template <class S = float, class P>
void op(const char* policy_name, P policy, const char* phase, index_t T, index_t cached, index_t D, index_t W,
        int threads, bool kv_tag = false) {
  const index_t B = 1, Hq = 8, Hkv = 2;
  policy.threads = threads;
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}};
  if (cached > 0) args.push_back({"cache", cached});
  args.insert(args.end(), {{"Hq", Hq}, {"Hkv", Hkv}, {"D", D}});
  if (W > 0) args.push_back({"W", W});
  args.push_back({"threads", threads});
  const double np = (W == 0 && cached == 0) ? pairs_causal(T) : pairs(cached, T, W);
  std::string row = name(std::string("attention/op/") + policy_name + "/" + phase, args);
  add(kv_tag ? with_kv<S>(row) : row, double(B * T), 4.0 * np * double(D * Hq),
      [=](benchmark::State& state) {
        const auto q = uniform_tensor<float, 4>({B, T, Hq, D}, -1, 1, 1), k = uniform_tensor<float, 4>({B, T, Hkv, D}, -1, 1, 2);
        const auto v = uniform_tensor<float, 4>({B, T, Hkv, D}, -1, 1, 3);
        tensor<float, 4> o({B, T, Hq, D});
        attn::kv_cache<S> cache({B, Hkv, D, Hkv, D}, cached + T, {W, 0});
        if (cached > 0)
          cache.append(uniform_tensor<float, 4>({B, cached, Hkv, D}, -1, 1, 4), uniform_tensor<float, 4>({B, cached, Hkv, D}, -1, 1, 5));
        for (auto _ : state) {
          cache.truncate(cached);
          attn::forward(policy, q, k, v, o, cache);
          benchmark::DoNotOptimize(o.data());
        }
      });
}

// Differential op: H=4 differential heads (8 component maps of d=64), Hkv=2 (4 key heads of 64,
// 2 value heads of 128). Per visible pair and differential head: 2 maps × (2d + 2·2d) FLOPs.
template <class P>
void diff_op(const char* policy_name, P policy, const char* phase, index_t T, index_t cached, int threads) {
  const index_t B = 1, H = 4, Hkv = 2, d = 64;
  policy.threads = threads;
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}};
  if (cached > 0) args.push_back({"cache", cached});
  args.insert(args.end(), {{"H", H}, {"Hkv", Hkv}, {"d", d}, {"threads", threads}});
  const double np = cached == 0 ? pairs_causal(T) : pairs(cached, T, 0);
  add(name(std::string("diff_attn/op/") + policy_name + "/" + phase, args), double(B * T), np * double(H) * 12.0 * d,
      [=](benchmark::State& state) {
        const auto q = uniform_tensor<float, 4>({B, T, 2 * H, d}, -1, 1, 1);
        const auto k = uniform_tensor<float, 4>({B, T, 2 * Hkv, d}, -1, 1, 2);
        const auto v = uniform_tensor<float, 4>({B, T, Hkv, 2 * d}, -1, 1, 3);
        const auto lam = uniform_tensor<float, 1>({d}, -0.1, 0.1, 4), subln = uniform_tensor<float, 1>({2 * d}, 0.5, 1.5, 5);
        const attn::diff_params<float> dp{lam, lam, lam, lam, subln, 0.5, 1e-5};
        tensor<float, 4> o({B, T, H, 2 * d});
        attn::kv_cache<float> cache({B, 2 * Hkv, d, Hkv, 2 * d}, cached + T);
        if (cached > 0)
          cache.append(uniform_tensor<float, 4>({B, cached, 2 * Hkv, d}, -1, 1, 6),
                       uniform_tensor<float, 4>({B, cached, Hkv, 2 * d}, -1, 1, 7));
        for (auto _ : state) {
          cache.truncate(cached);
          attn::differential<P, float>(policy, q, k, v, o, cache, dp);
          benchmark::DoNotOptimize(o.data());
        }
      });
}

// Layers at hidden 1024: Attention with 8 query heads of 128 and 2 KV heads (Llama-like GQA);
// MultiheadDiffAttn with 8 differential heads (d = 64) and 2 KV heads. decode: one token after 4096.
template <class Layer, class WT, class P>
void layer(const char* prefix, const typename Layer::config& c,
           double proj_flops, double op_flops_per_pair, P policy, const char* policy_name, const char* phase, index_t T,
           index_t cached, int threads) {
  const index_t B = 1, C = 1024;
  policy.threads = threads;
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}};
  if (cached > 0) args.push_back({"cache", cached});
  args.insert(args.end(), {{"C", C}, {"threads", threads}});
  const double np = cached == 0 ? pairs_causal(T) : pairs(cached, T, 0);
  add(with_weights<WT>(name(std::string(prefix) + policy_name + "/" + phase, args)), double(B * T),
      double(B * T) * proj_flops + np * op_flops_per_pair, [=](benchmark::State& state) {
        const Layer l = Layer::init(c, 1);
        const auto x = uniform_tensor<float, 3>({B, T, C}, -1, 1, 10);
        tensor<float, 3> y({B, T, C});
        auto s = l.make_state(B, {.capacity = cached + T});
        if (cached > 0) {
          const auto xc = uniform_tensor<float, 3>({B, cached, C}, -1, 1, 11);
          l.forward(exec::chunkwise<64>{threads}, xc, s);
        }
        for (auto _ : state) {
          s.truncate(cached);
          if (T == 1) l.step(exec::recurrent{threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
          else l.forward(policy, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

template <class WT>
typename layers::Attention<float, WT>::config attention_config() {
  typename layers::Attention<float, WT>::config c;
  c.hidden_size = 1024, c.num_heads = 8, c.num_kv_heads = 2, c.head_dim = 128;
  return c;
}
template <class WT>
typename layers::MultiheadDiffAttn<float, WT>::config diff_config() {
  typename layers::MultiheadDiffAttn<float, WT>::config c;
  c.hidden_size = 1024, c.num_heads = 8, c.num_kv_heads = 2, c.depth = 3;
  return c;
}
template <class WT, class P>
void layers_with(P policy, const char* policy_name, const char* phase, index_t T, index_t cached, int threads) {
  const double a_proj = 2.0 * 1024 * (2 * 8 * 128 + 2 * 2 * 128);  // q, o: 1024x1024; k, v: 256x1024
  layer<layers::Attention<float, WT>, WT>("attention/layer/", attention_config<WT>(), a_proj, 4.0 * 128 * 8, policy,
                                          policy_name, phase, T, cached, threads);
  const double d_proj = 2.0 * 1024 * (2 * 1024 + 2 * 256);  // q, out: 1024x1024; k, v: 256x1024
  layer<layers::MultiheadDiffAttn<float, WT>, WT>("diff_attn/layer/", diff_config<WT>(), d_proj, 8 * 12.0 * 64,
                                                  policy, policy_name, phase, T, cached, threads);
}
// Float and bf16 weights side by side.
template <class P>
void layers_for(P policy, const char* policy_name, const char* phase, index_t T, index_t cached, int threads) {
  layers_with<float>(policy, policy_name, phase, T, cached, threads);
  layers_with<bf16>(policy, policy_name, phase, T, cached, threads);
}

const bool registered = [] {
  for (int threads : {1, 2}) {
    for (index_t D : {64, 128}) op("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, 0, D, 0, threads);
    op("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, 0, 64, 512, threads);
    diff_op("chunkwise", exec::chunkwise<64>{}, "prefill", 2048, 0, threads);
    layers_for(exec::chunkwise<64>{}, "chunkwise", "prefill", 2048, 0, threads);
  }
  op("recurrent", exec::recurrent{}, "prefill", 2048, 0, 64, 0, 1);
  op("parallel", exec::parallel{}, "prefill", 2048, 0, 64, 0, 1);
  for (index_t T : {4, 16, 64, 256}) {  // short prefills: the exec::automatic rule (docs/policy.md)
    op("recurrent", exec::recurrent{}, "prefill", T, 0, 64, 0, 1);
    op("chunkwise", exec::chunkwise<64>{}, "prefill", T, 0, 64, 0, 1);
    op("parallel", exec::parallel{}, "prefill", T, 0, 64, 0, 1);
  }
  for (index_t T : {2, 4, 16}) {  // a few tokens after a long cache (speculative decoding, chat turns)
    op("recurrent", exec::recurrent{}, "prefill", T, 4096, 64, 0, 1);
    op("chunkwise", exec::chunkwise<64>{}, "prefill", T, 4096, 64, 0, 1);
  }
  op("chunkwise", exec::chunkwise<64>{}, "decode", 1, 4096, 64, 0, 1);
  for (int threads : {1, 2})
    for (index_t D : {64, 128}) op("recurrent", exec::recurrent{}, "decode", 1, 4096, D, 0, threads);
  op("recurrent", exec::recurrent{}, "decode", 1, 4096, 64, 512, 1);
  // A bf16 KV cache against float32 (docs/attention.md): half the bytes a decode streams.
  for (index_t cached : {4096, 32768})
    for (index_t D : {64, 128}) {
      op<float>("recurrent", exec::recurrent{}, "decode", 1, cached, D, 0, 1, true);
      op<bf16>("recurrent", exec::recurrent{}, "decode", 1, cached, D, 0, 1, true);
    }
  diff_op("recurrent", exec::recurrent{}, "decode", 1, 4096, 1);
  for (int threads : {1, 2}) layers_for(exec::recurrent{}, "recurrent", "decode", 1, 4096, threads);
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
