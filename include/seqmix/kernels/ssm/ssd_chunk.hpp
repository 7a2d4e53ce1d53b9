// Mamba-2 SSD scan, chunkwise and parallel policies: the SSD chunk algorithm (docs/ssm.md). Per
// chunk of L tokens, head h (group g), with a_s = dt_s·A_h and cs_t = Σ_{s≤t} a_s (≤ 0):
//   y_t   = e^{cs_t} C_t·h_0 + Σ_{s≤t} (C_t·B_s) e^{cs_t - cs_s} dt_s x_s + D x_t
//   h_end = e^{cs_L} h_0 + Σ_s e^{cs_L - cs_s} dt_s x_s ⊗ B_s
// as matrix products: CB = C·Bᵀ once per group, M = CB ⊙ decay mask per head, Y = (C·h_0ᵀ)
// row-scaled + M·X, hᵀ = e^{cs_L} hᵀ + Bᵀ·(w ⊙ X). Every exponent is a difference cs_t - cs_s ≤ 0
// taken in double, so no factor exceeds 1 and none loses the small decays to cancellation. The
// state is held transposed ([N,P] per head) for the whole call, so both state products read and
// write it with unit stride.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/gemm.hpp"
#include "../../simd/transpose.hpp"
#include "../../simd/vec.hpp"
#include "../../tensor/tensor.hpp"
#include "../common/decay.hpp"
#include "common.hpp"
#include "ssd_recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm::ssd {

namespace detail {

// Scratch of one thread for chunks of at most C tokens. Operands are staged contiguously and
// 64-byte aligned: the rows of x and y are H·P apart, which maps a chunk's rows onto a few L1
// sets.
template <class T>
struct chunk_workspace {
  index_t C, N, P;
  tensor<T, 2> Bt;              // [N][C]: B of the current group, transposed
  tensor<T, 2> Cc;              // [C][N]: C of the current group
  tensor<T, 2> CB;              // [C][C]: C·Bᵀ of the current group
  tensor<T, 2> M;               // [C][C]: the head's masked, decayed scores
  tensor<T, 2> X;               // [H·C][P]: x of every head of the chunk, head-major
  tensor<T, 2> Xw, Y, Z;        // [C][P]: x_s · e^{cs_L - cs_s} dt_s; C·h_0ᵀ; M·X
  index_t H;
  tensor<T, 2> dt;              // [C][H rounded up to whole vectors]: time steps of the chunk
  tensor<T, 1> dth, hi, lo, e;  // [C]: the head's dt; cs as a double-float (hi + lo); e^{cs}, then w
  bool stream_out = false;      // write y with non-temporal stores (outputs far larger than the caches)
  chunk_workspace(index_t C_, index_t N_, index_t P_, index_t H)
      : C(C_), N(N_), P(P_), Bt({N_, C_}), Cc({C_, N_}), CB({C_, C_}), M({C_, C_}), X({H * C_, P_}), Xw({C_, P_}),
        Y({C_, P_}), Z({C_, P_}), H(H), dt({C_, (H + simd::lanes<T> - 1) / simd::lanes<T> * simd::lanes<T>}, T(0)),
        dth({C_}), hi({C_}), lo({C_}), e({C_}) {}
};

// dst[i] = src[i] for a row of n elements (short rows: no library call).
template <class T>
inline void copy_row(const T* src, T* dst, index_t n) {
  constexpr index_t W = simd::lanes<T>;
  index_t i = 0;
  for (; i + W <= n; i += W) simd::store(dst + i, simd::load(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// Bt, Cc and CB for group g of batch element b over tokens [t0, t0 + L).
template <class T>
void group_scores(chunk_workspace<T>& w, const inputs<T>& in, index_t b, index_t g, index_t t0, index_t L) {
  const index_t C = w.C, N = w.N;
  simd::transpose(in.B.ptr(b, t0, g), in.B.stride(1), in.B.stride(3), w.Bt.data(), C, L, N, T(1));
  for (index_t s = 0; s < L; ++s) copy_row(in.C.ptr(b, t0 + s, g), w.Cc.data() + s * N, N);
  simd::gemm<T>(tensor_view<const T, 2>(w.Cc.data(), {L, N}), tensor_view<const T, 2>(w.Bt.data(), {N, L}, {C, 1}),
                tensor_view<T, 2>(w.CB.data(), {L, L}, {C, 1}));
}

// The time steps of every head of batch element b over tokens [t0, t0 + L), vectorised over heads.
template <class T>
void chunk_steps(chunk_workspace<T>& w, const inputs<T>& in, const options& opt, index_t b, index_t t0, index_t L) {
  const index_t H = w.H, stride = w.dt.extent(1);
  const T lo = T(opt.dt_min), hi = T(opt.dt_max);
  const bool softplus = opt.dt_softplus;
  for (index_t s = 0; s < L; ++s) {
    T* row = w.dt.data() + s * stride;
    for (index_t h = 0; h < H; ++h) row[h] = in.dt(b, t0 + s, h) + (ssm::detail::present(in.dt_bias) ? in.dt_bias(h) : T(0));
    simd::transform(row, row, stride, [=](auto v) {  // whole vectors: the padding is finite, unused
      using V = decltype(v);
      return simd::min(simd::max(time_step(v, softplus), V(lo)), V(hi));
    });
  }
}

// x of heads [h0, h1) of batch element b over tokens [t0, t0 + L), head-major. One pass along the
// rows of x (the hardware prefetcher follows it), where a head's own rows are a page or more apart.
template <class T>
void chunk_inputs(chunk_workspace<T>& w, const inputs<T>& in, index_t b, index_t h0, index_t h1, index_t t0, index_t L) {
  const index_t C = w.C, P = w.P;
  for (index_t s = 0; s < L; ++s)
    for (index_t h = h0; h < h1; ++h) copy_row(in.x.ptr(b, t0 + s, h), w.X.data() + (h * C + s) * P, P);
}

// Below this, a deferred state scale is folded back into the state (1/scale stays ≤ 2^40;
// common/decay.hpp, and docs/common.md compares the deferred-decay schemes).
using common::deferred::state_scale_floor;

// One chunk [t0, t0 + L) of head h: writes y and advances the state, held as scale · hT with
// hT [N,P] contiguous: the chunk's decay e^{cs_L} only multiplies the scalar, and the new terms
// are divided by it, so hT is not rescaled every chunk.
template <class T>
void head_chunk(chunk_workspace<T>& w, const inputs<T>& in, tensor_view<T, 4> y, index_t b, index_t h, index_t t0,
                index_t L, T* hT, double& scale) {
  using V = simd::batch<T>;
  constexpr index_t W = simd::lanes<T>;
  const index_t C = w.C, N = w.N, P = w.P;
  const double A = in.A(h);
  const T skip = ssm::detail::present(in.D) ? in.D(h) : T(0);
  // Cumulative log decay cs_s (≤ 0) in double, kept as hi + lo floats.
  double acc = 0;
  for (index_t s = 0; s < L; ++s) {
    w.dth(s) = w.dt(s, h);
    acc += double(w.dth(s)) * A;
    w.hi(s) = T(acc), w.lo(s) = T(acc - double(w.hi(s)));
  }
  const T hi_end = w.hi(L - 1), lo_end = w.lo(L - 1);

  // The new state scale (see below) and, in one pass over x, its staged copy X and the state
  // update's operand Xw_s = x_s · e^{cs_L - cs_s} dt_s / scale'.
  const double next = scale * std::exp(double(hi_end) + double(lo_end));
  const bool fold = common::deferred::must_fold(next, state_scale_floor);  // then hT is rescaled to the true state below
  const T inv = fold ? T(1) : T(1 / next);
  simd::transform(w.hi.data(), w.lo.data(), w.e.data(), L,
                  [=](auto a, auto c) { return simd::exp_nonpositive((decltype(a)(hi_end) - a) + (decltype(c)(lo_end) - c)); });
  const T* X = w.X.data() + h * C * P;
  for (index_t s = 0; s < L; ++s) simd::transform(X + s * P, w.Xw.data() + s * P, P, [ws = w.e(s) * w.dth(s) * inv](auto v) {
    return v * decltype(v)(ws);
  });

  // M[t][s] = CB[t][s] · e^{cs_t - cs_s} · dt_s for s ≤ t (0 above), plus D on the diagonal. The
  // exponent (hi_t - hi_s) + (lo_t - lo_s) is accurate relative to the difference itself, not
  // to |cs|.
  for (index_t t = 0; t < L; ++t) {
    T* m = w.M.data() + t * C;
    const T* cb = w.CB.data() + t * C;
    const V ht(w.hi(t)), lt(w.lo(t));
    index_t s = 0;
    for (; s <= t && s + W <= C; s += W) {
      const V e = (ht - simd::load(w.hi.data() + s)) + (lt - simd::load(w.lo.data() + s));
      simd::store(m + s, simd::load(cb + s) * simd::exp_nonpositive(e) * simd::load(w.dth.data() + s));
    }
    for (; s <= t; ++s) m[s] = cb[s] * std::exp((w.hi(t) - w.hi(s)) + (w.lo(t) - w.lo(s))) * w.dth(s);
    std::fill(m + t + 1, m + L, T(0));
    m[t] += skip;
  }

  // y = diag(e^{cs} · scale) (C · h_0ᵀ) + M·X: both products staged (Y, Z) and combined while
  // writing y.
  simd::gemm<T>(tensor_view<const T, 2>(w.Cc.data(), {L, N}), tensor_view<const T, 2>(hT, {N, P}),
                w.Y.view().subrange(0, 0, L));
  simd::gemm<T>(tensor_view<const T, 2>(w.M.data(), {L, L}, {C, 1}), tensor_view<const T, 2>(X, {L, P}),
                w.Z.view().subrange(0, 0, L), simd::gemm_mode::overwrite, /*lower_triangular_a=*/true);
  const T sc = T(scale);
  simd::transform(w.hi.data(), w.lo.data(), w.e.data(), L, [sc](auto a, auto b) { return simd::exp_nonpositive(a) * (b + 1) * sc; });
  const bool stream = w.stream_out && simd::stream_aligned(y.ptr(b, t0, h)) &&
                      (L == 1 || simd::stream_aligned(y.ptr(b, t0 + 1, h)));
  for (index_t t = 0; t < L; ++t) {
    const T et = w.e(t), *yc = w.Y.data() + t * P, *yq = w.Z.data() + t * P;
    T* out = y.ptr(b, t0 + t, h);
    index_t i = 0;
    if (stream)
      for (; i + W <= P; i += W) simd::store_stream(out + i, simd::fma(V(et), simd::load(yc + i), simd::load(yq + i)));
    else
      for (; i + W <= P; i += W) simd::store(out + i, simd::fma(V(et), simd::load(yc + i), simd::load(yq + i)));
    for (; i < P; ++i) out[i] = et * yc[i] + yq[i];
  }

  // h = e^{cs_L} h + Xᵀ diag(w) B with w_s = e^{cs_L - cs_s} dt_s, as scale' = scale · e^{cs_L} and
  // hᵀ += Bᵀ · (w / scale' ⊙ X). A scale' that would get too small is folded into hT instead.
  if (fold) simd::scale(T(next), hT, N * P);
  scale = fold ? 1.0 : next;
  simd::gemm<T>(tensor_view<const T, 2>(w.Bt.data(), {N, L}, {C, 1}), tensor_view<const T, 2>(w.Xw.data(), {L, P}),
                tensor_view<T, 2>(hT, {N, P}), simd::gemm_mode::accumulate);
}

template <class T>
struct aligned_delete {
  void operator()(T* p) const { ::operator delete[](p, std::align_val_t(64)); }
};

// Every head over the sequence in chunks of C tokens.
template <class T>
void chunks(int threads, index_t C, const inputs<T>& in, tensor_view<T, 4> y, tensor_view<T, 4> state,
            const options& opt) {
  const dims dm = check_args(in, y, state);
  if (dm.L == 0) return;
  const index_t N = dm.N, P = dm.P, per_group = dm.H / dm.G;
  C = std::max<index_t>(1, std::min(C, dm.L));
  const bool big = dm.L * dm.H * dm.P * dm.N >= (index_t(1) << 20);
  parallel_ranges(big ? threads : 1, dm.B * dm.H, [&](index_t begin, index_t end) {
    chunk_workspace<T> w(C, N, P, dm.H);
    // Outputs beyond a few MB cannot stay cached for the next layer: stream them past the caches
    // (no read for ownership of the output lines).
    w.stream_out = y.size() * index_t(sizeof(T)) >= (index_t(8) << 20);
    // Transposed states, not zero-initialised: every element is written before it is read.
    const std::unique_ptr<T[], aligned_delete<T>> hT(new (std::align_val_t(64)) T[std::size_t((end - begin) * N * P)]);
    std::vector<double> scale(std::size_t(end - begin), 1.0);  // state = scale · hT
    auto head_state = [&](index_t bh) { return hT.get() + (bh - begin) * N * P; };
    for (index_t bh = begin; bh < end; ++bh)
      simd::transpose(state.ptr(bh / dm.H, bh % dm.H), state.stride(2), state.stride(3), head_state(bh), P, P, N, T(1));
    for (index_t t0 = 0; t0 < dm.L; t0 += C) {
      const index_t L = std::min(C, dm.L - t0);
      index_t cached = -1, cached_b = -1;  // b * G + g of the scores in w; b of the time steps
      for (index_t bh = begin; bh < end; ++bh) {
        const index_t b = bh / dm.H, h = bh % dm.H, g = h / per_group;
        if (b != cached_b) chunk_steps(w, in, opt, b, t0, L), cached_b = b;
        if (h == 0 || bh == begin)
          chunk_inputs(w, in, b, h, std::min(dm.H, end - b * dm.H), t0, L);
        if (b * dm.G + g != cached) group_scores(w, in, b, g, t0, L), cached = b * dm.G + g;
        // The next chunk's x rows of this head (and a share of its B and C rows), fetched while
        // this head computes: the next chunk then stages them from the caches instead of memory.
        if (const index_t next = std::min(C, dm.L - t0 - L); next > 0) {
          for (index_t s = 0; s < next; ++s) simd::prefetch_t2(in.x.ptr(b, t0 + L + s, h), P);
          for (index_t s = h % per_group; s < next; s += per_group)
            simd::prefetch_t2(in.B.ptr(b, t0 + L + s, g), N), simd::prefetch_t2(in.C.ptr(b, t0 + L + s, g), N);
        }
        head_chunk(w, in, y, b, h, t0, L, head_state(bh), scale[std::size_t(bh - begin)]);
      }
    }
    simd::stream_fence();
    for (index_t bh = begin; bh < end; ++bh)
      simd::transpose(head_state(bh), P, 1, state.ptr(bh / dm.H, bh % dm.H), state.stride(2), N, P,
                T(scale[std::size_t(bh - begin)]));
  });
}

}  // namespace detail

/// Mamba-2 SSD scan in chunks of C tokens (see inputs<T>). y [B,T,H,P]; state [B,H,P,N] in place.
template <index_t C, class T>
void chunk(const exec::chunkwise<C>& policy, const inputs<T>& in, tensor_view<T, 4> y, tensor_view<T, 4> state,
           options opt = {}) {
  detail::chunks<T>(policy.threads, C, in, y, state, opt);
}

/// Mamba-2 SSD scan in its quadratic dual form: the whole sequence as one chunk (a T x T score
/// matrix per head; O(T²) time and memory, for checking and short sequences).
template <class T>
void parallel(const exec::parallel& policy, const inputs<T>& in, tensor_view<T, 4> y, tensor_view<T, 4> state,
              options opt = {}) {
  detail::chunks<T>(policy.threads, in.x.extent(1), in, y, state, opt);
}

}  // namespace seqmix::kernels::ssm::ssd
