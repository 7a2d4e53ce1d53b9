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
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/gemm.hpp"
#include "../../simd/vec.hpp"
#include "common.hpp"
#include "ssd_recurrent.hpp"

namespace seqmix::kernels::ssm::ssd {

namespace detail {

using ssm::detail::exp_decay;

// Scratch of one thread for chunks of at most C tokens.
template <class T>
struct chunk_workspace {
  index_t C, N, P;
  std::vector<T> Bt;       // [N][C]: B of the current group, transposed
  std::vector<T> CB;       // [C][C]: C·Bᵀ of the current group
  std::vector<T> M;        // [C][C]: the head's masked, decayed scores
  std::vector<T> Xw;       // [C][P]: x_s · e^{cs_L - cs_s} dt_s
  std::vector<T> dt, row;  // [C]: time steps; one row of decay exponents
  std::vector<double> cs;  // [C]: cumulative log decay from the chunk start
  chunk_workspace(index_t C_, index_t N_, index_t P_)
      : C(C_), N(N_), P(P_), Bt(std::size_t(N_ * C_)), CB(std::size_t(C_ * C_)), M(CB.size()),
        Xw(std::size_t(C_ * P_)), dt(std::size_t(C_)), row(std::size_t(C_)), cs(std::size_t(C_)) {}
};

// Bt and CB for group g of batch element b over tokens [t0, t0 + L).
template <class T>
void group_scores(chunk_workspace<T>& w, const inputs<T>& in, index_t b, index_t g, index_t t0, index_t L) {
  const index_t C = w.C, N = w.N;
  for (index_t s = 0; s < L; ++s) {
    const T* Bs = in.B.ptr(b, t0 + s, g);
    for (index_t n = 0; n < N; ++n) w.Bt[std::size_t(n * C + s)] = Bs[n];
  }
  simd::gemm<T>(tensor_view<const T, 2>(in.C.ptr(b, t0, g), {L, N}, {in.C.stride(1), 1}),
                tensor_view<const T, 2>(w.Bt.data(), {N, L}, {C, 1}), tensor_view<T, 2>(w.CB.data(), {L, L}, {C, 1}));
}

// One chunk [t0, t0 + L) of head h: writes y and advances hT [N,P] (contiguous).
template <class T>
void head_chunk(chunk_workspace<T>& w, const inputs<T>& in, const options& opt, tensor_view<T, 4> y, index_t b,
                index_t h, index_t g, index_t t0, index_t L, T* hT) {
  constexpr index_t W = simd::lanes<T>;
  const index_t C = w.C, N = w.N, P = w.P;
  const double A = in.A(h);
  const T skip = ssm::detail::present(in.D) ? in.D(h) : T(0);
  double acc = 0;
  for (index_t s = 0; s < L; ++s) {
    w.dt[std::size_t(s)] = step_size(in, opt, b, t0 + s, h);
    acc += double(w.dt[std::size_t(s)]) * A;
    w.cs[std::size_t(s)] = acc;
  }
  const double cs_end = acc;

  // M[t][s] = CB[t][s] · e^{cs_t - cs_s} · dt_s for s ≤ t (0 above), plus D on the diagonal.
  for (index_t t = 0; t < L; ++t) {
    T* m = w.M.data() + t * C;
    const T* cb = w.CB.data() + t * C;
    const double ct = w.cs[std::size_t(t)];
    for (index_t s = 0; s <= t; ++s) w.row[std::size_t(s)] = T(ct - w.cs[std::size_t(s)]);  // ≤ 0
    index_t s = 0;
    for (; s + W <= t + 1; s += W)
      simd::store(m + s, simd::load(cb + s) * exp_decay(simd::load(w.row.data() + s)) * simd::load(w.dt.data() + s));
    for (; s <= t; ++s) m[s] = cb[s] * std::exp(w.row[std::size_t(s)]) * w.dt[std::size_t(s)];
    std::fill(m + t + 1, m + L, T(0));
    m[t] += skip;
  }

  // Y = diag(e^{cs}) (C · h_0ᵀ) + M · X.
  const tensor_view<T, 2> Y(y.ptr(b, t0, h), {L, P}, {y.stride(1), 1});
  const tensor_view<const T, 2> X(in.x.ptr(b, t0, h), {L, P}, {in.x.stride(1), 1});
  simd::gemm<T>(tensor_view<const T, 2>(in.C.ptr(b, t0, g), {L, N}, {in.C.stride(1), 1}),
                tensor_view<const T, 2>(hT, {N, P}), Y);
  for (index_t t = 0; t < L; ++t) simd::scale(T(std::exp(w.cs[std::size_t(t)])), Y.ptr(t), P);
  simd::gemm<T>(tensor_view<const T, 2>(w.M.data(), {L, L}, {C, 1}), X, Y, simd::gemm_mode::accumulate,
                /*lower_triangular_a=*/true);

  // hᵀ = e^{cs_L} hᵀ + Bᵀ · (w ⊙ X), w_s = e^{cs_L - cs_s} dt_s.
  for (index_t s = 0; s < L; ++s) {
    const T ws = T(std::exp(cs_end - w.cs[std::size_t(s)])) * w.dt[std::size_t(s)];
    const T* xs = X.ptr(s);
    T* out = w.Xw.data() + s * P;
    simd::transform(xs, out, P, [ws](auto v) { return v * ws; });
  }
  simd::scale(T(std::exp(cs_end)), hT, N * P);
  simd::gemm<T>(tensor_view<const T, 2>(w.Bt.data(), {N, L}, {C, 1}), tensor_view<const T, 2>(w.Xw.data(), {L, P}),
                tensor_view<T, 2>(hT, {N, P}), simd::gemm_mode::accumulate);
}

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
    chunk_workspace<T> w(C, N, P);
    std::vector<T> hT(std::size_t((end - begin) * N * P));
    auto head_state = [&](index_t bh) { return hT.data() + (bh - begin) * N * P; };
    for (index_t bh = begin; bh < end; ++bh)
      for (index_t p = 0; p < P; ++p)
        for (index_t n = 0; n < N; ++n) head_state(bh)[n * P + p] = state(bh / dm.H, bh % dm.H, p, n);
    for (index_t t0 = 0; t0 < dm.L; t0 += C) {
      const index_t L = std::min(C, dm.L - t0);
      index_t cached = -1;  // b * G + g of the scores in w
      for (index_t bh = begin; bh < end; ++bh) {
        const index_t b = bh / dm.H, h = bh % dm.H, g = h / per_group;
        if (b * dm.G + g != cached) group_scores(w, in, b, g, t0, L), cached = b * dm.G + g;
        head_chunk(w, in, opt, y, b, h, g, t0, L, head_state(bh));
      }
    }
    for (index_t bh = begin; bh < end; ++bh)
      for (index_t p = 0; p < P; ++p)
        for (index_t n = 0; n < N; ++n) state(bh / dm.H, bh % dm.H, p, n) = head_state(bh)[n * P + p];
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
