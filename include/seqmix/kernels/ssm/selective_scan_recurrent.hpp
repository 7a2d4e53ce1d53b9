// Mamba-1 selective scan, recurrent policy: token by token with the state in registers / L1.
//
// Prefill vectorises over channels: a unit of `lanes` consecutive channels (one group) keeps its
// state as N vectors [n][channel] and walks the whole sequence, so the decay factors
// exp(dt·A[d,n]) are N vector exponentials per token and no horizontal sum is needed (B_t[n] and
// C_t[n] are broadcasts). The state is transposed in and out once per call.
// Decode (a few tokens) vectorises over the state instead: the [D,N] state rows are used in
// place, and each channel reduces its vector C ⊙ h.
#pragma once

#include <algorithm>
#include <numbers>
#include <optional>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../tensor/tensor.hpp"
#include "common.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm::selective_scan {

namespace detail {

using ssm::detail::present;
using ssm::detail::time_step;
using ssm::detail::vload;
using ssm::detail::vstore;

// Parameters laid out for channel vectors: A · log2 e transposed to [N][D] (the decays are
// 2^(dt · At)); D and delta_bias as dense rows (zeros when absent).
template <class T>
struct prepared {
  std::vector<T> At, skip, bias;
  prepared(const inputs<T>& in, index_t D, index_t N)
      : At(std::size_t(N * D)), skip(std::size_t(D), T(0)), bias(std::size_t(D), T(0)) {
    const T* a = in.A.data();
    const index_t sd = in.A.stride(0), sn = in.A.stride(1);
    for (index_t d = 0; d < D; ++d)
      for (index_t n = 0; n < N; ++n) At[std::size_t(n * D + d)] = T(double(a[d * sd + n * sn]) * std::numbers::log2e);
    for (index_t d = 0; d < D; ++d) {
      if (present(in.D)) skip[std::size_t(d)] = in.D.data()[d * in.D.stride(0)];
      if (present(in.delta_bias)) bias[std::size_t(d)] = in.delta_bias.data()[d * in.delta_bias.stride(0)];
    }
  }
};

// D and delta_bias as dense rows (zeros when absent).
template <class T>
struct prepared_rows {
  std::vector<T> skip, bias;
  // Padded to whole vectors, so a block's rows load as one vector.
  prepared_rows(const inputs<T>& in, index_t D)
      : skip(std::size_t((D + simd::lanes<T> - 1) / simd::lanes<T> * simd::lanes<T>), T(0)), bias(skip.size(), T(0)) {
    for (index_t d = 0; d < D; ++d) {
      if (present(in.D)) skip[std::size_t(d)] = in.D.data()[d * in.D.stride(0)];
      if (present(in.delta_bias)) bias[std::size_t(d)] = in.delta_bias.data()[d * in.delta_bias.stride(0)];
    }
  }
};

// The state of channels [d0, d0 + W) of batch element b as N vectors h[n][channel] (in), and
// back (out).
template <class T, class V>
void load_unit_state(const tensor_view<T, 3>& state, index_t b, index_t d0, index_t N, V* h) {
  constexpr index_t W = simd::lanes<T>;
  const T* p = state.ptr(b, d0);
  const index_t sd = state.stride(1), sn = state.stride(2);
  alignas(64) T tmp[W];
  for (index_t n = 0; n < N; ++n) {
    for (index_t i = 0; i < W; ++i) tmp[i] = p[i * sd + n * sn];
    h[n] = simd::load(tmp);
  }
}
template <class T, class V>
void store_unit_state(const tensor_view<T, 3>& state, index_t b, index_t d0, index_t N, const V* h) {
  constexpr index_t W = simd::lanes<T>;
  T* p = state.ptr(b, d0);
  const index_t sd = state.stride(1), sn = state.stride(2);
  alignas(64) T tmp[W];
  for (index_t n = 0; n < N; ++n) {
    simd::store(tmp, h[n]);
    for (index_t i = 0; i < W; ++i) p[i * sd + n * sn] = tmp[i];
  }
}

// Token-major rows: element (t, i) at p[t * ts + i].
template <class T>
struct rows {
  T* p;
  index_t ts;
  T* row(index_t t) const { return p + t * ts; }
};

// The pointers of one unit of channels [d0, d0 + width) of batch element b (all in group g).
template <class T>
struct unit_args {
  rows<const T> u, delta, z;  // z.p == nullptr: no gate
  rows<T> y;
  const T* B;  // B(b, t, g, n) = B[t * bts + n * bns]
  index_t bts, bns;
  const T* C;
  index_t cts, cns;
  const T* At;  // log2 e · A(d0 + i, n) = At[n * lda + i]
  index_t lda;
  const T* skip;
  const T* bias;
  bool softplus;
};

template <class T>
unit_args<T> make_unit(const inputs<T>& in, const tensor_view<T, 3>& y, const prepared<T>& pp, index_t D, index_t G,
                       index_t b, index_t d0, bool softplus) {
  const index_t g = d0 / (D / G);
  const bool gate = present(in.z);
  return {{in.u.ptr(b, 0, d0), in.u.stride(1)},
          {in.delta.ptr(b, 0, d0), in.delta.stride(1)},
          {gate ? in.z.ptr(b, 0, d0) : nullptr, gate ? in.z.stride(1) : 0},
          {y.ptr(b, 0, d0), y.stride(1)},
          in.B.ptr(b, 0, g),
          in.B.stride(1),
          in.B.stride(3),
          in.C.ptr(b, 0, g),
          in.C.stride(1),
          in.C.stride(3),
          pp.At.data() + d0,
          D,
          pp.skip.data() + d0,
          pp.bias.data() + d0,
          softplus};
}

// Tokens [t0, t1) of one unit of lanes(V) channels (V = batch<T>) or one channel (V = T); the
// state is h[n] (a vector of channels per n).
template <class V, class T>
inline void scan_unit(const unit_args<T>& s, index_t t0, index_t t1, index_t N, V* h) {
  const V skip = vload<V>(s.skip), bias = vload<V>(s.bias);
  for (index_t t = t0; t < t1; ++t) {
    const V dt = time_step(vload<V>(s.delta.row(t)) + bias, s.softplus);
    const V u = vload<V>(s.u.row(t)), du = dt * u;
    const T* Bt = s.B + t * s.bts;
    const T* Ct = s.C + t * s.cts;
    // Two accumulators: the sum over n is a dependency chain of N FMAs otherwise.
    V acc0 = skip * u, acc1 = V(T(0));
    index_t n = 0;
    for (; n + 2 <= N; n += 2) {
      const V a0 = simd::exp2_nonpositive(dt * vload<V>(s.At + n * s.lda));
      const V a1 = simd::exp2_nonpositive(dt * vload<V>(s.At + (n + 1) * s.lda));
      h[n] = simd::fma(a0, h[n], du * V(Bt[n * s.bns]));
      h[n + 1] = simd::fma(a1, h[n + 1], du * V(Bt[(n + 1) * s.bns]));
      acc0 = simd::fma(h[n], V(Ct[n * s.cns]), acc0);
      acc1 = simd::fma(h[n + 1], V(Ct[(n + 1) * s.cns]), acc1);
    }
    if (n < N) {
      h[n] = simd::fma(simd::exp2_nonpositive(dt * vload<V>(s.At + n * s.lda)), h[n], du * V(Bt[n * s.bns]));
      acc0 = simd::fma(h[n], V(Ct[n * s.cns]), acc0);
    }
    V out = acc0 + acc1;
    if (s.z.p) out *= simd::silu(vload<V>(s.z.row(t)));
    vstore(s.y.row(t), out);
  }
}

// Units of channels for one batch element: full vectors of lanes channels that lie in one
// group, single channels elsewhere (the tail, and vectors straddling a group boundary).
struct unit {
  index_t d0, width;
};

template <class T>
std::vector<unit> channel_units(index_t D, index_t G) {
  constexpr index_t W = simd::lanes<T>;
  const index_t per_group = D / G;
  std::vector<unit> units;
  for (index_t d = 0; d < D;) {
    if (d + W <= D && d / per_group == (d + W - 1) / per_group) units.push_back({d, W}), d += W;
    else units.push_back({d, 1}), ++d;
  }
  return units;
}

// Runs `fn(b, unit)` over every (batch element, unit), split over `threads`.
template <class Fn>
void for_each_unit(int threads, index_t B, const std::vector<unit>& units, Fn&& fn) {
  const index_t per_batch = static_cast<index_t>(units.size());
  parallel_ranges(threads, B * per_batch, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i / per_batch, units[std::size_t(i % per_batch)]);
  });
}

// Runs `scan(s, h)` for every unit with its state h (N vectors of lanes channels, or N scalars),
// transposing the [B,D,N] state in and out.
template <class T, class Scan>
void for_each_unit_state(int threads, const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state,
                         const dims& dm, bool softplus, Scan&& scan) {
  using V = simd::batch<T>;
  constexpr index_t W = simd::lanes<T>;
  const prepared<T> pp(in, dm.D, dm.N);
  const auto units = channel_units<T>(dm.D, dm.G);
  for_each_unit(threads, dm.B, units, [&](index_t b, unit un) {
    const auto s = make_unit(in, y, pp, dm.D, dm.G, b, un.d0, softplus);
    if (un.width == W) {
      std::vector<V> h(static_cast<std::size_t>(dm.N));
      load_unit_state(state, b, un.d0, dm.N, h.data());
      scan(s, h.data());
      store_unit_state(state, b, un.d0, dm.N, h.data());
    } else {
      std::vector<T> h(static_cast<std::size_t>(dm.N));
      for (index_t n = 0; n < dm.N; ++n) h[std::size_t(n)] = state(b, un.d0, n);
      scan(s, h.data());
      for (index_t n = 0; n < dm.N; ++n) state(b, un.d0, n) = h[std::size_t(n)];
    }
  });
}

// Channel-vectorised scan of tokens [0, L) for every unit, the state transposed in and out.
template <class T>
void scan_channels(int threads, const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state, const dims& dm,
                   bool softplus) {
  for_each_unit_state<T>(threads, in, y, state, dm, softplus, [&]<class V>(const auto& s, V* h) {
    scan_unit<V, T>(s, 0, dm.L, dm.N, h);
  });
}

// Up to this many tokens the state-vectorised path is faster (measured at D = 1536, N = 16).
inline constexpr index_t state_path_tokens = 3;

// True when the state-vectorised decode path applies: N a multiple of the lanes and unit strides
// along N for A, B, C and the state.
template <class T>
bool state_vectorisable(const inputs<T>& in, const tensor_view<T, 3>& state, index_t N) {
  return N % simd::lanes<T> == 0 && in.A.stride(1) == 1 && in.B.stride(3) == 1 && in.C.stride(3) == 1 &&
         state.stride(2) == 1;
}

// Decode: tokens [0, L) with the [D,N] state rows used in place (N a multiple of the lanes).
// Per token the channel-wise quantities (dt, dt·u, D·u, gate) are computed as whole rows first;
// then each channel updates its state row and leaves the vector C ⊙ h, and lanes channels' sums
// come out of one parallel horizontal add.
template <class T>
void scan_states(int threads, const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state, const dims& dm,
                 bool softplus) {
  using V = simd::batch<T>;
  constexpr index_t W = simd::lanes<T>;
  const index_t D = dm.D, N = dm.N, per_group = D / dm.G;
  const bool gate = present(in.z);
  const index_t blocks = (D + W - 1) / W;
  const index_t sA = in.A.stride(0), sS = state.stride(1), sB = in.B.stride(2), sC = in.C.stride(2);
  parallel_ranges(threads_for_work(threads, double(dm.B) * D * N * dm.L), dm.B * blocks, [&](index_t begin, index_t end) {
    // D and delta_bias: loaded in place when dense (no per-call copies on the decode path).
    const bool dense = (!present(in.D) || in.D.stride(0) == 1) && (!present(in.delta_bias) || in.delta_bias.stride(0) == 1);
    const std::optional<prepared_rows<T>> pp = dense ? std::nullopt : std::optional<prepared_rows<T>>(std::in_place, in, D);
    // Blocks are taken `group` at a time: their channel rows (softplus, silu: long dependency
    // chains) are computed first as independent vectors, then the channels scan.
    constexpr index_t group = 8;
    alignas(64) T dt[group][W], du[group][W], su[group][W], g[group][W], pad[W];
    // lanes values of an optional [D] row from channel d0 (w of them, zero-padded), 0 when absent.
    auto param = [&](const tensor_view<const T, 1>& v, const std::vector<T>* rows, index_t d0, index_t w) {
      if (rows) return simd::load(rows->data() + d0);
      if (!present(v)) return V(T(0));
      if (w == W) return simd::load(v.data() + d0);
      for (index_t c = 0; c < W; ++c) pad[c] = c < w ? v.data()[d0 + c] : T(0);
      return simd::load(pad);
    };
    // Row `x` [B,T,D] at (b, t) from channel d0 as a vector (w valid channels, zero-padded).
    auto row = [&](const tensor_view<const T, 3>& x, index_t b, index_t t, index_t d0, index_t w) {
      const T* p = x.ptr(b, t, d0);
      if (w == W) return simd::load(p);
      for (index_t c = 0; c < W; ++c) pad[c] = c < w ? p[c] : T(0);
      return simd::load(pad);
    };
    simd::row_sums<T> sums;
    for (index_t i0 = begin; i0 < end;) {
      // Blocks [i0, i1) of one batch element.
      const index_t b = i0 / blocks, i1 = std::min({end, i0 + group, (b + 1) * blocks});
      for (index_t t = 0; t < dm.L; ++t) {
        for (index_t i = i0; i < i1; ++i) {
          const index_t k = i - i0, d0 = (i % blocks) * W, w = std::min(W, D - d0);
          const V bias = param(in.delta_bias, pp ? &pp->bias : nullptr, d0, w);
          const V skip = param(in.D, pp ? &pp->skip : nullptr, d0, w);
          const V uv = row(in.u, b, t, d0, w), d = time_step(row(in.delta, b, t, d0, w) + bias, softplus);
          simd::store(dt[k], d * V(T(std::numbers::log2e)));  // decays are 2^(dt·log2 e · A)
          simd::store(du[k], d * uv);
          simd::store(su[k], skip * uv);
          simd::store(g[k], gate ? simd::silu(row(in.z, b, t, d0, w)) : V(T(1)));
        }
        for (index_t i = i0; i < i1; ++i) {
          const index_t k = i - i0, d0 = (i % blocks) * W, w = std::min(W, D - d0);
          index_t grp = d0 / per_group, next_group = (grp + 1) * per_group;
          const T* Bt = in.B.ptr(b, t, 0);
          const T* Ct = in.C.ptr(b, t, 0);
          const T* A = in.A.ptr(d0);
          T* h = state.ptr(b, d0);
          // K > 0: rows of K vectors (N = K·lanes) with the group's B and C in registers, so the
          // channel loop loads only A and h (decode 13.7 -> 11.0 µs median against loading B and
          // C per channel, whose loads may wait on the sums' stores when their addresses share
          // bits 0-11). K = 0: any N, B and C loaded per channel.
          auto channels = [&]<index_t K>(std::integral_constant<index_t, K>) {
            V bv[std::max<index_t>(K, 1)], cv[std::max<index_t>(K, 1)];
            auto group_rows = [&] {
              SEQMIX_UNROLL for (index_t v = 0; v < K; ++v)
                bv[v] = simd::load(Bt + grp * sB + v * W), cv[v] = simd::load(Ct + grp * sC + v * W);
            };
            group_rows();
            for (index_t c = 0; c < w; ++c, A += sA, h += sS) {
              if (d0 + c == next_group) ++grp, next_group += per_group, group_rows();
              const V dtv(dt[k][c]), duv(du[k][c]);
              V acc(T(0));
              auto update = [&](index_t n, const V& bn, const V& cn) {
                const V hv = simd::fma(simd::exp2_nonpositive(dtv * simd::load(A + n)), simd::load(h + n), duv * bn);
                simd::store(h + n, hv);
                acc = simd::fma(hv, cn, acc);
              };
              if constexpr (K > 0) {
                SEQMIX_UNROLL for (index_t v = 0; v < K; ++v) update(v * W, bv[v], cv[v]);
              } else {
                for (index_t n = 0; n < N; n += W) update(n, simd::load(Bt + grp * sB + n), simd::load(Ct + grp * sC + n));
              }
              sums.put(c, acc);
            }
          };
          if (N == W) channels(std::integral_constant<index_t, 1>{});
          else if (N == 2 * W) channels(std::integral_constant<index_t, 2>{});
          else channels(std::integral_constant<index_t, 0>{});
          for (index_t c = w; c < W; ++c) sums.put(c, V(T(0)));
          const V out = (sums.sums() + simd::load(su[k])) * simd::load(g[k]);
          if (w == W) {
            simd::store(y.ptr(b, t, d0), out);
          } else {
            alignas(64) T tmp[W];
            simd::store(tmp, out);
            std::copy_n(tmp, w, y.ptr(b, t, d0));
          }
        }
      }
      i0 = i1;
    }
  });
}

}  // namespace detail

/// Mamba-1 selective scan, token by token (see inputs<T>). y [B,T,D]; state [B,D,N] holds h before
/// the sequence and h after it on return.
template <class T>
void recurrent(const exec::recurrent& policy, const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state,
               options opt = {}) {
  const dims dm = check_args(in, y, state);
  if (dm.L == 0 || dm.D == 0) return;
  // Below a few tokens, transposing the state costs more than the scan itself.
  if (dm.L <= detail::state_path_tokens && detail::state_vectorisable(in, state, dm.N))
    detail::scan_states(policy.threads, in, y, state, dm, opt.delta_softplus);
  else
    detail::scan_channels(policy.threads, in, y, state, dm, opt.delta_softplus);
}

}  // namespace seqmix::kernels::ssm::selective_scan
