// HymbaBlock: the hybrid-head block of Hymba (NVlabs/hymba barebones_hymba_block.py, spec/hymba.md):
// attention heads and Mamba-1 SSM heads run side by side on one in_proj, each branch is
// RMS-normalized, the two are averaged and projected (kernels/hymba). Meta tokens, the sliding
// window with always-visible meta tokens, the bounded ring KV cache, cross-layer KV sharing and the
// meta-token snapshot are described in docs/hymba.md.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/attention/attention.hpp"
#include "../kernels/hymba/hymba.hpp"
#include "../kernels/ssm/selective_scan.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/rmsnorm.hpp"
#include "../nn/rotary.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// Hymba block: x [B,T,C] → y [B,T,C].
///   z = x W_inᵀ + b = [q | k | v | x_ssm | gate] (no k, v with kv_reuse);
///   attention: RoPE on q, k at absolute positions, GQA, scale hd^-1/2, window of W+1 keys with the
///   M meta tokens always visible (modify_attention_mask), over the KV cache (or, with kv_reuse,
///   over the cache of the layer before, cross_layer::shared_kv);
///   SSM: causal conv + silu, x_proj → dt, B, C each RMS-normalized, Δ = softplus(dt W_dtᵀ + b_dt),
///   the selective scan with D skip, times silu(gate);
///   out = ((RMSNorm₁(attn) + RMSNorm₂(ssm)) / 2) W_outᵀ + b_out.
/// With M > 0 meta tokens prepended, a sequence starts with the M meta positions. They do not
/// depend on the prompt: the block runs them once at construction and make_state() starts every
/// sequence from that snapshot (KV entries, conv and SSM state); forward() then returns the rows
/// of x only, and meta_outputs() the M meta rows.
template <class T = float, class WeightT = T>
class HymbaBlock : public mixer<HymbaBlock<T, WeightT>, T> {
 public:
  static constexpr const char* name = "HymbaBlock";

  struct config {
    index_t hidden_size = 0;              ///< C
    index_t intermediate_size = 0;        ///< I (0: mamba_expand · C)
    double mamba_expand = 2;
    index_t num_attention_heads = 0;      ///< H
    index_t num_key_value_heads = 0;      ///< Hkv (0: H)
    index_t attention_head_size = 0;      ///< hd (0: I / H; must be I / H)
    index_t conv_kernel_size = 4;         ///< K
    index_t time_step_rank = 0;           ///< R
    index_t ssm_state_size = 16;          ///< N
    index_t attention_window_size = 0;    ///< W: W + 1 keys incl. the query's own (0: global layer)
    bool modify_attention_mask = true;    ///< meta tokens always visible to the window
    index_t num_meta_tokens = 0;          ///< M
    bool prepend_meta_tokens = true;      ///< the block prepends meta_token (else x carries them)
    bool use_positional_embedding = true;
    double rope_base = 10000;
    bool kv_reuse = false;                ///< attend the previous layer's KV cache (no k, v rows)
    double rms_eps = 1e-6;
    index_t max_length = 4096;            ///< KV-cache capacity make_state() uses by default (meta included)

    index_t inner() const {
      return intermediate_size > 0 ? intermediate_size : index_t(std::llround(mamba_expand * double(hidden_size)));
    }
    index_t kv_heads() const { return num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads; }
    index_t dim() const {
      return attention_head_size > 0 ? attention_head_size : inner() / std::max<index_t>(num_attention_heads, 1);
    }
    index_t kv_width() const { return kv_reuse ? 0 : kv_heads() * dim(); }
    index_t proj_rows() const { return 3 * inner() + 2 * kv_width(); }
    /// The attention kernels' mask: W + 1 keys, meta tokens as sinks.
    kernels::attention::mask mask() const {
      const index_t w = attention_window_size > 0 ? attention_window_size + 1 : 0;
      return {w, w > 0 && modify_attention_mask ? num_meta_tokens : 0};
    }
    bool prepends() const { return num_meta_tokens > 0 && prepend_meta_tokens; }

    void validate() const {
      require_positive(name, "hidden_size", hidden_size, "num_attention_heads", num_attention_heads,
                       "conv_kernel_size", conv_kernel_size, "time_step_rank", time_step_rank, "ssm_state_size",
                       ssm_state_size, "rope_base", rope_base, "rms_eps", rms_eps, "max_length", max_length);
      require(intermediate_size >= 0 && (intermediate_size > 0 || (std::isfinite(mamba_expand) && mamba_expand > 0 &&
                                                                   mamba_expand * double(hidden_size) < 1e15)),
              name, "config intermediate_size must be positive (or 0 with a positive mamba_expand)");
      require_head_split(name, inner(), inner(), num_attention_heads);
      require(num_key_value_heads >= 0 && num_attention_heads % kv_heads() == 0, name,
              "config num_attention_heads must be a multiple of num_key_value_heads");
      require(attention_head_size >= 0 && dim() * num_attention_heads == inner(), name,
              "config attention_head_size must be intermediate_size / num_attention_heads");
      require(!use_positional_embedding || dim() % 2 == 0, name,
              "config attention_head_size must be even for rotary embeddings");
      require(attention_window_size >= 0 && attention_window_size < max_length, name,
              "config attention_window_size must be >= 0 (0: global) and below max_length");
      require(num_meta_tokens >= 0 && num_meta_tokens < max_length, name,
              "config num_meta_tokens must be >= 0 and below max_length");
    }
    static auto fields() {
      return std::tuple{config_field{"hidden_size", &config::hidden_size},
                        config_field{"intermediate_size", &config::intermediate_size},
                        config_field{"mamba_expand", &config::mamba_expand},
                        config_field{"num_attention_heads", &config::num_attention_heads},
                        config_field{"num_key_value_heads", &config::num_key_value_heads},
                        config_field{"attention_head_size", &config::attention_head_size},
                        config_field{"conv_kernel_size", &config::conv_kernel_size},
                        config_field{"time_step_rank", &config::time_step_rank},
                        config_field{"ssm_state_size", &config::ssm_state_size},
                        config_field{"attention_window_size", &config::attention_window_size},
                        config_field{"modify_attention_mask", &config::modify_attention_mask},
                        config_field{"num_meta_tokens", &config::num_meta_tokens},
                        config_field{"prepend_meta_tokens", &config::prepend_meta_tokens},
                        config_field{"use_positional_embedding", &config::use_positional_embedding},
                        config_field{"rope_base", &config::rope_base}, config_field{"kv_reuse", &config::kv_reuse},
                        config_field{"rms_eps", &config::rms_eps}, config_field{"max_length", &config::max_length}};
    }
  };

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> in_proj;  // [3I + 2·Hkv·hd, C] (+ bias); [3I, C] with kv_reuse
    nn::linear<T, WeightT> out_proj; // [C, I] (+ bias)
    tensor<T, 1> norm1, norm2;    // pre_avg_layernorm1/2.weight [I]
    nn::causal_conv1d<T> conv1d;  // mamba.conv1d [I, 1, K] (+ bias)
    nn::linear<T, WeightT> x_proj;   // mamba.x_proj.0 [R + 2N, I]
    nn::linear<T, WeightT> dt_proj;  // mamba.dt_proj.0 [I, R] (its bias is dt_bias)
    tensor<T, 1> dt_bias;         // mamba.dt_proj.0.bias [I]: added after the matmul, inside the softplus
    tensor<T, 2> A_log;           // mamba.A_log.0 [I, N]
    tensor<T, 1> D;               // mamba.D.0 [I]
    tensor<T, 1> dt_norm, B_norm, C_norm;  // mamba.{dt,B,C}_layernorm.weight [R], [N], [N]
    tensor<T, 2> meta_token;      // [M, C] (M > 0)
  };

  /// The weight table. init(): linears and the conv as torch's default, norms ones, the SSM's
  /// A_log, D and dt bias as mamba_ssm's, meta tokens uniform in ±1.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t C = c.hidden_size, I = c.inner(), R = c.time_step_rank, N = c.ssm_state_size;
    linear_weights(f, "in_proj", w.in_proj, c.proj_rows(), C, true);
    linear_weights(f, "out_proj", w.out_proj, C, I, true);
    f(weight_spec<1>{"pre_avg_layernorm1.weight", {I}, init_rule::ones()}, w.norm1);
    f(weight_spec<1>{"pre_avg_layernorm2.weight", {I}, init_rule::ones()}, w.norm2);
    conv_weights(f, "mamba.conv1d", w.conv1d, I, c.conv_kernel_size, true);
    linear_weights(f, "mamba.x_proj.0", w.x_proj, R + 2 * N, I);
    linear_weights(f, "mamba.dt_proj.0", w.dt_proj, I, R);
    f(weight_spec<1>{"mamba.dt_proj.0.bias", {I}, init_rule::dt_bias()}, w.dt_bias);
    f(weight_spec<2>{"mamba.A_log.0", {I, N},
                     init_rule::values([N](index_t i, double) { return std::log(double(1 + i % N)); })},
      w.A_log);
    f(weight_spec<1>{"mamba.D.0", {I}, init_rule::ones()}, w.D);
    f(weight_spec<1>{"mamba.dt_layernorm.weight", {R}, init_rule::ones()}, w.dt_norm);
    f(weight_spec<1>{"mamba.B_layernorm.weight", {N}, init_rule::ones()}, w.B_norm);
    f(weight_spec<1>{"mamba.C_layernorm.weight", {N}, init_rule::ones()}, w.C_norm);
    f(weight_spec<2>{"meta_token", {c.num_meta_tokens, C}, init_rule::uniform(-1, 1), c.num_meta_tokens > 0},
      w.meta_token);
  }

  /// kv: the KV cache (rotated keys, values; a ring of O(window) slots plus the meta tokens on a
  /// local layer; empty with kv_reuse); conv: the last K − 1 raw x_ssm inputs [B, I, K−1]; ssm: the
  /// scan state [B, I, N]; position: tokens seen (meta tokens included); meta_pending: the M meta
  /// tokens have still to run before the next tokens (a state made without the snapshot).
  struct State {
    kernels::attention::kv_cache<T> kv;
    tensor<T, 3> conv, ssm;
    index_t position = 0;
    bool meta_pending = false;
    cross_layer<T>* cross = nullptr;
    /// forward()'s temporaries (a 1024-row prefill pass at C = 1024 takes 63 MB); not copied,
    /// not counted by bytes().
    scratch<T> work;

    index_t batch() const { return ssm.extent(0); }
    index_t length() const { return position; }
    /// Bytes of forward()'s buffers (up to (7I + 2·Hkv·hd + R + 2N)·min(T, 1024)·sizeof(T) after a
    /// call of T tokens: 63 MB after a long prefill at C = 1024), and their release: a model that
    /// keeps one state per layer frees them after the prefill (decode needs a row's worth).
    index_t buffer_bytes() const { return work.bytes(); }
    void release_buffers() { work.release(); }
    /// Bytes the state holds (KV slots as allocated, conv and SSM state): what a sequence costs.
    index_t bytes() const {
      const auto& s = kv.dims();
      const index_t kvb = kv.slots() > 0 ? kv.batch() * (s.key_heads * s.key_dim + s.value_heads * s.value_dim) * kv.slots() : 0;
      return (kvb + conv.size() + ssm.size()) * index_t(sizeof(T));
    }
  };

  HymbaBlock(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
    A_ = tensor<T, 2>(w_.A_log.extents());
    for (index_t i = 0; i < A_.size(); ++i) A_.data()[i] = -std::exp(w_.A_log.data()[i]);
    rope_ = {cfg_.dim(), cfg_.rope_base, nn::rope_layout::half_split};
    if (cfg_.prepends() && !cfg_.kv_reuse) take_snapshot();
  }

  using mixer<HymbaBlock<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// kv_reuse: takes this block's meta snapshot against `producer`, the block whose KV cache it
  /// reads (its meta positions attend the producer's meta keys, which the producer's own snapshot
  /// holds). Afterwards make_state() starts after the meta tokens here too, so the pair never runs
  /// them again, and a consumer of a windowed (ring) cache does not have to attend M + T rows in
  /// its first call.
  void take_snapshot_from(const HymbaBlock& producer) {
    require(cfg_.kv_reuse && cfg_.prepends(), name, "take_snapshot_from is for kv_reuse blocks with meta tokens prepended");
    require(producer.snap_.ready && !producer.cfg_.kv_reuse, name, "the producer has no meta snapshot");
    const index_t M = cfg_.num_meta_tokens, C = cfg_.hidden_size, Hk = cfg_.kv_heads(), D = cfg_.dim();
    const auto pm = producer.cfg_.mask(), m = cfg_.mask();
    require(producer.cfg_.num_meta_tokens == M && producer.cfg_.kv_heads() == Hk && producer.cfg_.dim() == D &&
                pm.window == m.window && pm.sink == m.sink,
            name, "the producer has other meta tokens, KV heads, head size or window");
    kernels::attention::kv_cache<T> cache({1, Hk, D, Hk, D}, M, m);
    cache.append(producer.snap_.k, producer.snap_.v);
    cross_layer<T> cross;
    cross.shared_kv = &cache;
    State s = make_state_without_snapshot(1, {.capacity = M, .cross = &cross});
    s.meta_pending = false;
    tensor<T, 3> y({1, M, C});
    run(exec::chunkwise<64>{}, w_.meta_token.view().template reshape<3>({1, M, C}), y.view(), s);
    snap_.conv = std::move(s.conv), snap_.ssm = std::move(s.ssm);
    snap_.y = tensor<T, 2>(y.view().template reshape<2>({M, C}));
    snap_.ready = true;
  }

  /// Whether make_state() starts from the meta-token snapshot (meta tokens prepended; a kv_reuse
  /// block once take_snapshot_from() gave it one, else it runs its meta tokens in its first call).
  bool has_snapshot() const { return snap_.ready; }
  /// The block's outputs at the M meta positions [M, C] (the same for every sequence); empty
  /// without a snapshot.
  const tensor<T, 2>& meta_outputs() const { return snap_.y; }

  /// A state for `batch` sequences with room for `options.capacity` tokens (default
  /// cfg().max_length, meta tokens included; a local layer's cache holds O(window) of them). With a
  /// snapshot the sequences start after the M meta tokens; otherwise (a kv_reuse block before
  /// take_snapshot_from) they run in the first call.
  State make_state(index_t batch, const state_options<T>& options = {}) const {
    State s = make_state_without_snapshot(batch, options);
    if (snap_.ready) restart(s);
    return s;
  }

  /// Starts `s` again as make_state() would (from the snapshot when the block has one and
  /// `snapshot` is true, else at position 0 as make_state_without_snapshot()), keeping its
  /// storage: the KV cache's slots and forward()'s buffers, so a server reuses one state per slot
  /// without allocating. `s` keeps its batch and cross-layer values.
  void restart(State& s, bool snapshot = true) const {
    check_state(s, s.batch(), false);
    if (!cfg_.kv_reuse) s.kv.reset();
    std::fill_n(s.conv.data(), s.conv.size(), T(0));
    std::fill_n(s.ssm.data(), s.ssm.size(), T(0));
    s.position = 0, s.meta_pending = cfg_.prepends();
    if (!snap_.ready || !snapshot) return;
    const index_t M = cfg_.num_meta_tokens, Hk = cfg_.kv_heads(), D = cfg_.dim(), I = cfg_.inner(), batch = s.batch();
    const auto bcast = [&](const tensor<T, 4>& t) {
      return tensor_view<const T, 4>(t.data(), {batch, M, Hk, D}, {0, Hk * D, D, 1});
    };
    if (!cfg_.kv_reuse) s.kv.append(bcast(snap_.k), bcast(snap_.v));
    for (index_t b = 0; b < batch; ++b) {
      std::copy_n(snap_.conv.data(), I * (cfg_.conv_kernel_size - 1), s.conv.view().ptr(b, 0, 0));
      std::copy_n(snap_.ssm.data(), I * cfg_.ssm_state_size, s.ssm.view().ptr(b, 0, 0));
    }
    s.position = M, s.meta_pending = false;
  }

  /// A state at position 0: with meta tokens prepended, the next forward() runs them first (what
  /// make_state() saves; for forward_with_meta, comparisons and benchmarks).
  State make_state_without_snapshot(index_t batch, const state_options<T>& options = {}) const {
    require(batch >= 0, name, "batch must not be negative");
    State s;
    if (!cfg_.kv_reuse) {
      const index_t cap = options.capacity > 0 ? options.capacity : cfg_.max_length;
      s.kv = kernels::attention::kv_cache<T>({batch, cfg_.kv_heads(), cfg_.dim(), cfg_.kv_heads(), cfg_.dim()}, cap,
                                             cfg_.mask());
    }
    s.conv = w_.conv1d.make_state(batch);
    s.ssm = tensor<T, 3>({batch, cfg_.inner(), cfg_.ssm_state_size});
    s.meta_pending = cfg_.prepends();
    s.cross = options.cross;
    return s;
  }

  /// y [B,T,C] for x [B,T,C]; the tokens continue the sequences in `state` (a state still owing its
  /// meta tokens runs them first; their outputs are not returned: see forward_with_meta).
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy's pool runs every parallel part of the layer
    const index_t N = this->check_io(x, y), B = x.extent(0), L = x.extent(1), M = cfg_.num_meta_tokens;
    check_state(state, B);
    if (!state.meta_pending) {
      if (N > 0) run(policy, x, y, state);
      return;
    }
    tensor<T, 3> yy({B, M + L, cfg_.hidden_size});
    run(policy, with_meta(x), yy.view(), state);
    state.meta_pending = false;
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < L; ++t) std::copy_n(yy.view().ptr(b, M + t, 0), cfg_.hidden_size, y.ptr(b, t, 0));
  }

  /// The spec's block on a state still owing its meta tokens: y [B, M + T, C] for x [B, T, C], the
  /// M meta rows first (upstream's output).
  template <exec::policy P>
  void forward_with_meta(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);
    const index_t B = x.extent(0), L = x.extent(1), M = cfg_.num_meta_tokens;
    check_shape(name, "x", x.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "y", y.extents(), {B, M + L, cfg_.hidden_size});
    check_state(state, B);
    require(state.meta_pending, name, "forward_with_meta needs a state that has not run its meta tokens "
                                      "(make_state_without_snapshot, meta tokens prepended)");
    run(policy, with_meta(x), y, state);
    state.meta_pending = false;
  }

  /// Cache bytes per token of context: a state for one sequence of `context` tokens (meta tokens
  /// included), measured by State::bytes(), divided by `context`.
  double cache_bytes_per_token(index_t context) const {
    require(context > 0, name, "context must be positive");
    return double(make_state_without_snapshot(1, {.capacity = context}).bytes()) / double(context);
  }

 private:
  struct snapshot {
    bool ready = false;
    tensor<T, 4> k, v;      // [1, M, Hkv, hd]
    tensor<T, 3> conv, ssm;  // [1, I, K−1], [1, I, N]
    tensor<T, 2> y;         // [M, C]
  };

  void check_state(const State& s, index_t B, bool check_length = true) const {
    const index_t I = cfg_.inner();
    check_shape(name, "state.conv", s.conv.extents(), {B, I, cfg_.conv_kernel_size - 1});
    check_shape(name, "state.ssm", s.ssm.extents(), {B, I, cfg_.ssm_state_size});
    if (cfg_.kv_reuse) return;
    const auto& d = s.kv.dims();
    check_shape(name, "state.kv (batch, key heads, key dim, value heads, value dim)",
                std::array<index_t, 5>{d.batch, d.key_heads, d.key_dim, d.value_heads, d.value_dim},
                {B, cfg_.kv_heads(), cfg_.dim(), cfg_.kv_heads(), cfg_.dim()});
    const auto m = cfg_.mask();
    require(s.kv.visibility().window == m.window && s.kv.visibility().sink == m.sink, name,
            "state.kv was made for another window or meta-token count");
    require(!check_length || s.kv.length() == s.position, name,
            "state.kv holds " + std::to_string(s.kv.length()) + " positions, state.position is " +
                std::to_string(s.position));
  }

  /// concat(meta_token, x) along time [B, M + T, C].
  tensor<T, 3> with_meta(tensor_view<const T, 3> x) const {
    const index_t B = x.extent(0), L = x.extent(1), M = cfg_.num_meta_tokens, C = cfg_.hidden_size;
    tensor<T, 3> xx({B, M + L, C});
    for (index_t b = 0; b < B; ++b) {
      for (index_t t = 0; t < M; ++t) std::copy_n(w_.meta_token.view().ptr(t, 0), C, xx.view().ptr(b, t, 0));
      for (index_t t = 0; t < L; ++t)
        for (index_t c = 0; c < C; ++c) xx(b, M + t, c) = x(b, t, c);
    }
    return xx;
  }

  void take_snapshot() {
    const index_t M = cfg_.num_meta_tokens, C = cfg_.hidden_size;
    State s = make_state_without_snapshot(1, {.capacity = M});
    s.meta_pending = false;
    tensor<T, 3> y({1, M, C});
    run(exec::chunkwise<64>{}, w_.meta_token.view().template reshape<3>({1, M, C}), y.view(), s);
    snap_.k = s.kv.keys(), snap_.v = s.kv.values();
    snap_.conv = std::move(s.conv), snap_.ssm = std::move(s.ssm);
    snap_.y = tensor<T, 2>(y.view().template reshape<2>({M, C}));
    snap_.ready = true;
  }

  /// The block of spec/hymba.md on rows x [B,R,C] (meta tokens already in x) at positions
  /// state.position + t; y [B,R,C]. A long prefill runs in passes of about 1024 token rows: the
  /// state carries from one to the next, so the result is the same, and the temporaries (in_proj's
  /// output alone is 28 KiB a row at C = 1024) stay below 32 MiB, reused from the heap instead of
  /// fresh pages the kernel has to clear on every call. A kv_reuse layer runs its rows in one pass
  /// (its queries are the shared cache's last positions).
  template <exec::policy P>
  void run(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), step = std::max<index_t>(64, 1024 / std::max<index_t>(B, 1));
    // A cache the next kv_reuse block reads attends all L of its queries after this call: a ring
    // keeps the window plus L slots until the next call (which shrinks it back for decode).
    if (!cfg_.kv_reuse && state.cross && cfg_.mask().window > 0)
      state.kv.set_step(std::max(kernels::attention::block_keys, L));
    if (cfg_.kv_reuse || L <= step) return run_pass(policy, x, y, state);
    for (index_t t0 = 0; t0 < L; t0 += step) {
      const index_t n = std::min(step, L - t0);
      run_pass(policy, x.subrange(1, t0, n), y.subrange(1, t0, n), state);
    }
  }

  template <exec::policy P>
  void run_pass(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), R = x.extent(1), Nt = checked_mul(B, R, name);
    if (Nt == 0) return;
    const index_t I = cfg_.inner(), H = cfg_.num_attention_heads, Hk = cfg_.kv_heads(), D = cfg_.dim(),
                  KV = cfg_.kv_width(), Wz = cfg_.proj_rows(), Ns = cfg_.ssm_state_size, Rk = cfg_.time_step_rank,
                  xw = Rk + 2 * Ns, P0 = state.position;
    const int th = policy.threads;
    const detail::sequence_rows<T> rows(x);
    // The pass's temporaries, carved from the state's buffer: z [Nt, Wz], attn, u, ys, delta
    // [Nt, I] and xdbl [Nt, xw] (every element is written before it is read).
    T* ws = state.work.get(checked_mul(Nt, Wz + 4 * I + xw, name));  // each part below is smaller
    const index_t wz = Nt * Wz, wi = Nt * I;
    const tensor_view<T, 2> z(ws, {Nt, Wz});
    const tensor_view<T, 3> attn(ws + wz, {B, R, I}), u(ws + wz + wi, {B, R, I}), ys(ws + wz + 2 * wi, {B, R, I});
    const tensor_view<T, 2> delta(ws + wz + 3 * wi, {Nt, I}), xdbl(ws + wz + 4 * wi, {Nt, xw});
    w_.in_proj(rows.view, z, name, th);
    // Column slices of z: q | k | v | x_ssm | gate.
    auto heads = [&](index_t col, index_t h) {
      return tensor_view<T, 4>(z.data() + col, {B, R, h, D}, {R * Wz, Wz, D, 1});
    };
    auto slice = [&](index_t col) { return tensor_view<const T, 3>(z.data() + col, {B, R, I}, {R * Wz, Wz, 1}); };
    const auto q = heads(0, H);
    const index_t xs_col = I + 2 * KV;

    // Attention heads.
    if (cfg_.use_positional_embedding) {
      std::vector<T> cos, sin;  // one table for q and k
      rope_.tables(P0, R, cos, sin);
      rope_.apply(q, cos, sin, name, th);
      if (!cfg_.kv_reuse) rope_.apply(heads(I, Hk), cos, sin, name, th);
    }
    const auto a4 = attn.template reshape<4>({B, R, H, D});
    const kernels::attention::options<T> opt{T(1) / std::sqrt(T(D))};
    if (!cfg_.kv_reuse) {
      state.kv.check_room(name, R);
      kernels::attention::forward(policy, q, heads(I, Hk), heads(I + KV, Hk), a4, state.kv, opt);
      if (state.cross) state.cross->shared_kv = &state.kv;
    } else {
      kernels::attention::attend(policy, q, a4, shared_cache(state, B, P0 + R), opt);
    }

    // SSM heads.
    w_.conv1d(slice(xs_col), u, state.conv, name, th);
    w_.x_proj(u.template reshape<2>({Nt, I}), xdbl, name, th);
    const T eps = T(cfg_.rms_eps);
    parallel_ranges(threads_for_work(th, double(Nt) * double(xw), 1 << 15), Nt, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) {
        T* row = xdbl.ptr(r, 0);
        nn::rmsnorm_row(row, w_.dt_norm.data(), row, Rk, eps);
        nn::rmsnorm_row(row + Rk, w_.B_norm.data(), row + Rk, Ns, eps);
        nn::rmsnorm_row(row + Rk + Ns, w_.C_norm.data(), row + Rk + Ns, Ns, eps);
      }
    });
    w_.dt_proj(tensor_view<const T, 2>(xdbl.data(), {Nt, Rk}, {xw, 1}), delta, name, th);
    const tensor_view<const T, 4> Bm(xdbl.data() + Rk, {B, R, 1, Ns}, {R * xw, xw, Ns, 1});
    const tensor_view<const T, 4> Cm(xdbl.data() + Rk + Ns, {B, R, 1, Ns}, {R * xw, xw, Ns, 1});
    const kernels::ssm::selective_scan::inputs<T> in{u, delta.template reshape<3>({B, R, I}), A_, Bm, Cm,
                                                     w_.D, slice(xs_col + I), w_.dt_bias};
    kernels::ssm::selective_scan::forward(policy, in, ys, state.ssm);

    // The two branches combined (written over attn; kernels::hymba::combine), then projected by
    // out_proj, whose weights are packed as every projection's are (the op's fused forward
    // takes them row-major).
    const kernels::hymba::inputs<T> hin{attn, ys, w_.norm1, w_.norm2, {}};
    kernels::hymba::combine(policy, hin, attn, {eps});
    detail::project_to_sequence<T>(w_.out_proj, attn.template reshape<2>({Nt, I}), y, name, th);
    state.position += R;
  }

  /// The cache a kv_reuse layer attends: cross_layer::shared_kv, checked against this layer's heads,
  /// window and position (it must end at this call's last token).
  kernels::attention::kv_cache<T>& shared_cache(const State& s, index_t B, index_t end) const {
    require(s.cross && s.cross->shared_kv, name,
            "kv_reuse needs the shared KV cache of the layer before (cross_layer::shared_kv; pass the model's "
            "cross_layer to make_state)");
    auto& c = *s.cross->shared_kv;
    const auto& d = c.dims();
    check_shape(name, "shared KV cache (batch, key heads, key dim, value heads, value dim)",
                std::array<index_t, 5>{d.batch, d.key_heads, d.key_dim, d.value_heads, d.value_dim},
                {B, cfg_.kv_heads(), cfg_.dim(), cfg_.kv_heads(), cfg_.dim()});
    const auto m = cfg_.mask();
    require(c.visibility().window == m.window && c.visibility().sink == m.sink, name,
            "the shared KV cache has another window or meta-token count than this layer");
    require(c.length() == end, name,
            "the shared KV cache holds " + std::to_string(c.length()) + " positions, this call ends at position " +
                std::to_string(end));
    return c;
  }

  config cfg_;
  weights w_;
  tensor<T, 2> A_;  // -exp(A_log)
  nn::rotary<T> rope_;
  snapshot snap_;
};

static_assert(sequence_mixer<HymbaBlock<float>>);
static_assert(sequence_mixer<HymbaBlock<float, bf16>>);

}  // namespace seqmix::layers
