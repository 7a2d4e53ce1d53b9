// UltraMem: the ultra-sparse memory layer (arXiv 2411.12364) as spec/ultramem.md states it: RMS
// prenorm, causal depthwise query conv (carried state), query and key LayerNorms, Tucker-decomposed
// query-key retrieval with h independent cores (kernels/ultramem), implicit value expansion and the
// output projection. Weight names after the public re-implementation (lucidrains ultra-mem). See
// docs/ultramem.md.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/ultramem/ultramem.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/rmsnorm.hpp"
#include "../simd/gemm.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// UltraMem layer: x [B,T,C] → y [B,T,C].
///   xn = rmsnorm(x) ⊙ prenorm; xq = causal depthwise conv(xn) + bias (its State: the last Kq−1 xn);
///   q = LN(xq W_qᵀ) ⊙ query_ln over 2dk, q_row = q[:dk], q_col = q[dk:]; keys LN'd over dk;
///   per head the top-m virtual indices v and scores s (kernels::ultramem), w = act(s);
///   pooled[e] = Σ_{k: map[v_k] = e} w_k memories[h, v_k / E]; out_h = Σ_e pooled[e] · vep[e];
///   y = concat_h(out_h) W_combineᵀ.
/// The normalised keys and the cores' rank-1 factors are computed at construction.
template <class T = float, class WeightT = T>
class UltraMem : public mixer<UltraMem<T, WeightT>, T> {
 public:
  static constexpr const char* name = "UltraMem";

  struct config {
    index_t hidden_size = 0;        ///< dim (C)
    index_t num_keys = 0;           ///< n: n² virtual values per head
    index_t dim_qk = 0;             ///< dk
    index_t core_rank = 2;          ///< r
    index_t core_heads = 1;         ///< h (multi-core scoring)
    index_t topk = 0;               ///< m
    index_t dim_values = 0;         ///< dv
    index_t value_expansion = 1;    ///< E: virtual values per physical value
    index_t query_conv_kernel = 1;  ///< Kq
    double rms_eps = 1e-6;
    double ln_eps = 1e-5;
    std::string score_activation = "identity";  ///< identity or relu
    bool query_split = true;        ///< q_row = q[:dk], q_col = q[dk:] (the only form implemented)

    index_t virtual_values() const { return num_keys * num_keys; }
    index_t physical_values() const { return virtual_values() / std::max<index_t>(value_expansion, 1); }

    void validate() const {
      require_positive(name, "hidden_size (dim)", hidden_size, "num_keys", num_keys, "dim_qk", dim_qk, "core_rank", core_rank,
                       "core_heads", core_heads, "topk", topk, "dim_values", dim_values, "value_expansion",
                       value_expansion, "query_conv_kernel", query_conv_kernel, "rms_eps", rms_eps, "ln_eps", ln_eps);
      require(topk <= num_keys, name, "config topk must be at most num_keys");
      const index_t nn = checked_mul(num_keys, num_keys, name);
      require(nn % value_expansion == 0, name, "config value_expansion must divide num_keys²");
      (void)checked_mul(checked_mul(core_heads, nn / value_expansion, name), dim_values, name);
      (void)checked_mul(checked_mul(value_expansion, dim_values, name), dim_values, name);
      require(query_split, name, "config query_split = false (one query for rows and columns) is not implemented");
      (void)kernels::ultramem::activation_from(score_activation, name);
    }
    static auto fields() {
      return std::tuple{config_field{"dim", &config::hidden_size}, config_field{"num_keys", &config::num_keys},
                        config_field{"dim_qk", &config::dim_qk}, config_field{"core_rank", &config::core_rank},
                        config_field{"core_heads", &config::core_heads}, config_field{"topk", &config::topk},
                        config_field{"dim_values", &config::dim_values},
                        config_field{"value_expansion", &config::value_expansion},
                        config_field{"query_conv_kernel", &config::query_conv_kernel},
                        config_field{"rms_eps", &config::rms_eps}, config_field{"ln_eps", &config::ln_eps},
                        config_field{"score_activation", &config::score_activation},
                        config_field{"query_split", &config::query_split}};
    }
  };

  /// Checkpoint entries (the re-implementation's state_dict names): see each_weight.
  struct weights {
    tensor<T, 1> prenorm;                 // prenorm.weight [C]
    nn::causal_conv1d<T> query_conv;      // query_conv.weight [C, 1, Kq] (kept [C, Kq]), .bias [C]
    nn::linear<T> to_queries;             // [2dk, C]; float even with bf16 weights: the top-m selection
                                          // is discrete, and bf16 activations would move tokens across it
    tensor<T, 1> query_ln, key_ln;        // [2dk], [dk]
    tensor<T, 4> keys;                    // [2, r, n, dk]
    tensor<T, 3> core;                    // [h, r, r]
    tensor<T, 3> memories;                // [h, n²/E, dv]
    tensor<T, 3> value_expansion_proj;    // [E, dv, dv]
    tensor<T, 1> rand_proj_mapping;       // [n²] projector ids (int64 in checkpoints; exact in T)
    nn::linear<T, WeightT> combine;                // combine_values_to_out.weight [C, h·dv]
  };

  /// The weight table. init(): norms ones; linears and the conv as torch's default; keys and core
  /// uniform in ±1; memories and the expansion matrices uniform in ±1/√dv; rand_proj_mapping a
  /// rotation of 0..E−1 per block of E slots (the spec's permutation per block).
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t C = c.hidden_size, dk = c.dim_qk, r = c.core_rank, n = c.num_keys, h = c.core_heads,
                  dv = c.dim_values, E = c.value_expansion;
    const double bv = 1 / std::sqrt(double(std::max<index_t>(dv, 1)));
    f(weight_spec<1>{"prenorm.weight", {C}, init_rule::ones()}, w.prenorm);
    conv_weights(f, "query_conv", w.query_conv, C, c.query_conv_kernel, true);
    linear_weights(f, "to_queries", w.to_queries, 2 * dk, C);
    f(weight_spec<1>{"query_ln.weight", {2 * dk}, init_rule::ones()}, w.query_ln);
    f(weight_spec<1>{"key_ln.weight", {dk}, init_rule::ones()}, w.key_ln);
    f(weight_spec<4>{"keys", {2, r, n, dk}, init_rule::uniform(-1, 1)}, w.keys);
    f(weight_spec<3>{"core", {h, r, r}, init_rule::uniform(-1, 1)}, w.core);
    f(weight_spec<3>{"memories", {h, c.physical_values(), dv}, init_rule::uniform(-bv, bv)}, w.memories);
    f(weight_spec<3>{"value_expansion_proj", {E, dv, dv}, init_rule::uniform(-bv, bv)}, w.value_expansion_proj);
    f(weight_spec<1>{"rand_proj_mapping", {c.virtual_values()}, init_rule::values([E](index_t i, double) {
        std::uint64_t z = std::uint64_t(i / E) * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
        z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
        return double((i + index_t((z ^ (z >> 29)) % std::uint64_t(E))) % E);
      })},
      w.rand_proj_mapping);
    linear_weights(f, "combine_values_to_out", w.combine, C, h * dv);
  }

  /// The conv state: the last Kq−1 normalised inputs [B, C, Kq−1] (zeros for a fresh sequence).
  struct State {
    tensor<T, 3> conv;
    /// forward()'s large temporaries (8 MiB for a 1024-token prefill); not copied.
    struct buffers {
      scratch<T> xn, xq, q, out;
    } work;
  };

  UltraMem(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
    w_.query_conv.silu = false;
    const index_t dk = cfg_.dim_qk, r = cfg_.core_rank, n = cfg_.num_keys, E = cfg_.value_expansion;
    act_ = kernels::ultramem::activation_from(cfg_.score_activation, name);
    // Projector ids: integers in [0, E), else an error naming the weight.
    proj_.resize(static_cast<std::size_t>(cfg_.virtual_values()));
    for (index_t i = 0; i < cfg_.virtual_values(); ++i) {
      const T v = w_.rand_proj_mapping(i);
      require(v >= T(0) && v < T(E) && v == std::floor(v), name,
              "weight 'rand_proj_mapping' holds " + std::to_string(double(v)) + " at element " + std::to_string(i) +
                  ", not a projector id in [0, value_expansion = " + std::to_string(E) + ")");
      proj_[std::size_t(i)] = static_cast<std::int32_t>(v);
    }
    // Keys LayerNorm'd over dk (double), then the retrieval's prepared form.
    tensor<T, 4> kn({2, r, n, dk});
    for (index_t s = 0; s < 2; ++s)
      for (index_t a = 0; a < r; ++a)
        for (index_t i = 0; i < n; ++i) {
          double mean = 0, var = 0;
          for (index_t j = 0; j < dk; ++j) mean += double(w_.keys(s, a, i, j));
          mean /= double(dk);
          for (index_t j = 0; j < dk; ++j) var += (double(w_.keys(s, a, i, j)) - mean) * (double(w_.keys(s, a, i, j)) - mean);
          const double inv = 1 / std::sqrt(var / double(dk) + cfg_.ln_eps);
          for (index_t j = 0; j < dk; ++j)
            kn(s, a, i, j) = static_cast<T>((double(w_.keys(s, a, i, j)) - mean) * inv * double(w_.key_ln(j)));
        }
    R_ = kernels::ultramem::retrieval<T>(kn.view(), w_.core.view(), cfg_.topk, act_);
  }

  using mixer<UltraMem<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// A zero conv state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& = {}) const {
    return {tensor<T, 3>({batch, cfg_.hidden_size, cfg_.query_conv_kernel - 1}), {}};
  }

  /// y [B,T,C] for x [B,T,C]; the tokens continue the sequences in `state`.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    run(policy, x, y, state, nullptr, nullptr);
  }

  /// forward(), also writing each head's selection: indices, scores [B,T,h,m] (virtual indices and
  /// exact scores, best first), for diagnosis.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state,
               tensor_view<std::int64_t, 4> indices, tensor_view<T, 4> scores) const {
    run(policy, x, y, state, &indices, &scores);
  }

 private:
  template <exec::policy P>
  void run(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state,
           tensor_view<std::int64_t, 4>* indices, tensor_view<T, 4>* scores) const {
    exec::check(policy, name);
    const pool_scope scope(policy);
    const index_t N = this->check_io(x, y);
    const index_t B = x.extent(0), L = x.extent(1), C = cfg_.hidden_size, dk = cfg_.dim_qk, h = cfg_.core_heads,
                  m = cfg_.topk, dv = cfg_.dim_values, E = cfg_.value_expansion;
    check_shape(name, "state conv", state.conv.extents(), {B, C, cfg_.query_conv_kernel - 1});
    if (indices) check_shape(name, "indices", indices->extents(), {B, L, h, m});
    if (scores) check_shape(name, "scores", scores->extents(), {B, L, h, m});
    if (N == 0) return;
    const int th = policy.threads;

    // Prenorm, then the causal query conv (it carries the normalised inputs).
    const detail::sequence_rows<T> xr(x);
    auto& sb = state.work;
    const tensor_view<T, 3> xn(sb.xn.get(N * C), {B, L, C}, {L * C, C, 1}), xq(sb.xq.get(N * C), {B, L, C}, {L * C, C, 1});
    parallel_for(th, N, [&](index_t i) {
      nn::rmsnorm_row(xr.view.data() + i * C, w_.prenorm.data(), xn.data() + i * C, C, T(cfg_.rms_eps));
    });
    w_.query_conv(tensor_view<const T, 3>(xn), xq, state.conv.view(), name, th);

    // Queries: q = LN(xq W_qᵀ) ⊙ query_ln over 2dk.
    const index_t Q = 2 * dk;
    const tensor_view<T, 2> q(sb.q.get(N * Q), {N, Q}, {Q, 1});
    w_.to_queries(tensor_view<const T, 2>(xq.data(), {N, C}, {C, 1}), q, name, th);
    parallel_for(th, N, [&](index_t i) {
      T* row = q.data() + i * Q;
      double mean = 0, var = 0;
      for (index_t j = 0; j < Q; ++j) mean += double(row[j]);
      mean /= double(Q);
      for (index_t j = 0; j < Q; ++j) var += (double(row[j]) - mean) * (double(row[j]) - mean);
      const double inv = 1 / std::sqrt(var / double(Q) + cfg_.ln_eps);
      for (index_t j = 0; j < Q; ++j) row[j] = static_cast<T>((double(row[j]) - mean) * inv * double(w_.query_ln(j)));
    });

    // Retrieval per tile of tokens with IVE pooling interleaved: pooled[i, hh, e] += w_k ·
    // memories[hh, v_k / E], each token's rows (and projector ids) prefetched after its selection
    // and summed gather_lag tokens later; then the tile's expansion out_h = pooled_h [E·dv] · vep
    // [E·dv, dv] while its pooled rows are in cache.
    const tensor_view<const T, 2> q_row(q.data(), {N, dk}, {Q, 1}), q_col(q.data() + dk, {N, dk}, {Q, 1});
    const index_t hm = h * m, ED = E * dv;
    const tensor_view<T, 2> out(sb.out.get(N * h * dv), {N * h, dv}, {dv, 1});
    const tensor_view<const T, 2> vep(w_.value_expansion_proj.data(), {ED, dv}, {dv, 1});
    const T* mem = w_.memories.data();
    const index_t head_stride = cfg_.physical_values() * dv;
    kernels::ultramem::for_each_tile<T>(th, R_, N, [&](index_t t0, index_t t1, kernels::ultramem::workspace<T>& ws) {
      const index_t M = t1 - t0;
      std::vector<std::int64_t> idx(static_cast<std::size_t>(M * hm));
      std::vector<T> sc(idx.size());
      T* pooled = grow(ws.gather, M * h * ED);
      auto prefetch = [&](index_t k) {
        kernels::ultramem::prefetch_rows(mem, head_stride, dv, dv, idx.data() + k * hm, h, m, E);
        for (index_t j = 0; j < hm; ++j) simd::prefetch(proj_.data() + idx[std::size_t(k * hm + j)], 1);
      };
      auto gather = [&](index_t k) {
        const index_t tok = t0 + k;
        for (index_t hh = 0; hh < h; ++hh) {
          T* pool = pooled + (k * h + hh) * ED;
          std::fill(pool, pool + ED, T(0));
          for (index_t j = 0; j < m; ++j) {
            const std::size_t at = std::size_t(k * hm + hh * m + j);
            const std::int64_t v = idx[at];
            simd::axpy(kernels::ultramem::activate(act_, sc[at]), mem + hh * head_stride + (v / E) * dv,
                       pool + index_t(proj_[std::size_t(v)]) * dv, dv);
            if (indices) (*indices)(tok / L, tok % L, hh, j) = v;
            if (scores) (*scores)(tok / L, tok % L, hh, j) = sc[at];
          }
        }
      };
      kernels::ultramem::retrieve_and_gather(R_, q_row.subrange(0, t0, M), q_col.subrange(0, t0, M), idx.data(),
                                             sc.data(), ws, prefetch, gather);
      simd::gemm<T>(tensor_view<const T, 2>(pooled, {M * h, ED}, {ED, 1}), vep, out.subrange(0, t0 * h, M * h));
    });

    // y = out [N, h·dv] · W_combineᵀ.
    detail::project_to_sequence(w_.combine, tensor_view<const T, 2>(out.data(), {N, h * dv}, {h * dv, 1}), y, name, th);
  }

  static T* grow(std::vector<T>& v, index_t n) {
    if (v.size() < std::size_t(n)) v.resize(std::size_t(n));
    return v.data();
  }

  config cfg_;
  weights w_;
  kernels::ultramem::activation act_ = kernels::ultramem::activation::identity;
  std::vector<std::int32_t> proj_;         // rand_proj_mapping as integers
  kernels::ultramem::retrieval<T> R_;      // LN'd keys, core, rank-1 factors
};

static_assert(sequence_mixer<UltraMem<float>>);
static_assert(sequence_mixer<UltraMem<float, bf16>>);

}  // namespace seqmix::layers
