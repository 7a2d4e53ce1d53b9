// Arguments of the UltraMem retrieval (spec/ultramem.md, "TDQKR" and "op"): the score activation,
// the shape checks, and the rank-1 factors of the Tucker core (its first singular vectors, with
// the spec's sign convention).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../config.hpp"
#include "../../error.hpp"
#include "../../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ultramem {

/// What the selected scores become before they weight the values: w = act(score). The paper drops
/// the softmax of PKM; `relu` keeps only the positive scores.
enum class activation { identity, relu };

/// "identity" or "relu" (the spec's `score_activation`); anything else is a seqmix::error naming `who`.
inline activation activation_from(std::string_view s, std::string_view who) {
  if (s == "identity") return activation::identity;
  if (s == "relu") return activation::relu;
  throw error(std::string(who) + ": score_activation must be 'identity' or 'relu', got '" + std::string(s) + "'");
}

/// act(s); relu keeps a NaN a NaN.
template <class T>
inline T activate(activation a, T s) {
  return a == activation::relu && s < T(0) ? T(0) : s;
}

/// Options of the op.
struct options {
  activation act = activation::identity;
};

/// The retrieval's sizes: n keys per axis (n² virtual values), key width dk, core rank r, h cores
/// (heads), top-m.
struct dims {
  index_t n = 0, dk = 0, r = 0, h = 0, m = 0;
  index_t virtual_values() const { return n * n; }
};

/// The first singular triple of the r×r core C (row-major, double): u (left, sign fixed so that
/// Σu > 0, or its first non-zero element > 0 when Σu = 0) and t = Cᵀu / σ₁ (0 when C = 0). From
/// the eigenvector of C·Cᵀ for its largest eigenvalue, by cyclic Jacobi rotations (exact to
/// rounding for the small ranks of the paper).
inline void rank1_factors(const double* C, index_t r, double* u, double* t) {
  const auto R = static_cast<std::size_t>(r);
  std::vector<double> M(R * R), V(R * R, 0.0);
  for (std::size_t a = 0; a < R; ++a) {
    V[a * R + a] = 1;
    for (std::size_t b = 0; b < R; ++b) {
      double s = 0;
      for (std::size_t k = 0; k < R; ++k) s += C[a * R + k] * C[b * R + k];
      M[a * R + b] = s;
    }
  }
  for (int sweep = 0; sweep < 64; ++sweep) {
    double off = 0, diag = 0;
    for (std::size_t a = 0; a < R; ++a)
      for (std::size_t b = 0; b < R; ++b) (a == b ? diag : off) += M[a * R + b] * M[a * R + b];
    if (!(off > 1e-30 * diag)) break;
    for (std::size_t p = 0; p < R; ++p)
      for (std::size_t q = p + 1; q < R; ++q) {
        const double apq = M[p * R + q];
        if (apq == 0) continue;
        const double theta = (M[q * R + q] - M[p * R + p]) / (2 * apq);
        const double tn = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(tn * tn + 1), s = tn * c;
        for (std::size_t k = 0; k < R; ++k) {  // M ← Jᵀ M J
          const double mkp = M[k * R + p], mkq = M[k * R + q];
          M[k * R + p] = c * mkp - s * mkq, M[k * R + q] = s * mkp + c * mkq;
        }
        for (std::size_t k = 0; k < R; ++k) {
          const double mpk = M[p * R + k], mqk = M[q * R + k];
          M[p * R + k] = c * mpk - s * mqk, M[q * R + k] = s * mpk + c * mqk;
        }
        for (std::size_t k = 0; k < R; ++k) {
          const double vkp = V[k * R + p], vkq = V[k * R + q];
          V[k * R + p] = c * vkp - s * vkq, V[k * R + q] = s * vkp + c * vkq;
        }
      }
  }
  std::size_t best = 0;
  for (std::size_t a = 1; a < R; ++a)
    if (M[a * R + a] > M[best * R + best]) best = a;
  double sum = 0, first = 0, norm = 0;
  for (std::size_t a = 0; a < R; ++a) {
    u[a] = V[a * R + best];
    sum += u[a], norm += u[a] * u[a];
    if (first == 0) first = u[a];
  }
  const double sign = (sum > 0 || (sum == 0 && first >= 0)) ? 1.0 : -1.0;
  norm = norm > 0 ? 1 / std::sqrt(norm) : 0;
  for (std::size_t a = 0; a < R; ++a) u[a] *= sign * norm;
  double sigma2 = 0;
  for (std::size_t b = 0; b < R; ++b) {
    double s = 0;
    for (std::size_t a = 0; a < R; ++a) s += C[a * R + b] * u[a];
    t[b] = s, sigma2 += s * s;
  }
  const double inv = sigma2 > 0 ? 1 / std::sqrt(sigma2) : 0;
  for (std::size_t b = 0; b < R; ++b) t[b] *= inv;
}

/// u, t [h, r] (row-major) of every head's core [h, r, r].
template <class T>
void core_factors(tensor_view<const T, 3> core, std::vector<double>& u, std::vector<double>& t) {
  const index_t h = core.extent(0), r = core.extent(1);
  u.assign(static_cast<std::size_t>(h * r), 0.0), t.assign(u.size(), 0.0);
  std::vector<double> C(static_cast<std::size_t>(r * r));
  for (index_t i = 0; i < h; ++i) {
    for (index_t a = 0; a < r; ++a)
      for (index_t b = 0; b < r; ++b) C[static_cast<std::size_t>(a * r + b)] = double(core(i, a, b));
    rank1_factors(C.data(), r, u.data() + i * r, t.data() + i * r);
  }
}

/// Checks the retrieval's tensors against each other: q_row, q_col [B,T,dk], keys [2,r,n,dk],
/// core [h,r,r], indices and scores [B,T,h,m] with 1 <= m <= n; unit stride along dk. Returns the
/// sizes.
template <class T>
dims check_retrieval(const char* who, const tensor_view<const T, 3>& q_row, const tensor_view<const T, 3>& q_col,
                     const tensor_view<const T, 4>& keys, const tensor_view<const T, 3>& core,
                     const tensor_view<std::int64_t, 4>& indices, const tensor_view<T, 4>& scores) {
  const index_t B = q_row.extent(0), L = q_row.extent(1);
  dims d;
  d.dk = q_row.extent(2), d.r = keys.extent(1), d.n = keys.extent(2), d.h = core.extent(0), d.m = indices.extent(3);
  check_shape(who, "q_col", q_col.extents(), q_row.extents());
  check_shape(who, "keys", keys.extents(), {2, d.r, d.n, d.dk});
  check_shape(who, "core", core.extents(), {d.h, d.r, d.r});
  check_shape(who, "indices", indices.extents(), {B, L, d.h, d.m});
  check_shape(who, "scores", scores.extents(), {B, L, d.h, d.m});
  require(d.r >= 1 && d.h >= 1 && d.dk >= 1, who, "core rank, heads and dim_qk must be at least 1");
  require(d.m >= 1 && d.m <= d.n, who,
          "top-m (" + std::to_string(d.m) + ") must be in [1, num_keys = " + std::to_string(d.n) + "]");
  (void)checked_mul(d.n, d.n, who);
  require(q_row.stride(2) == 1 && q_col.stride(2) == 1, who, "q_row and q_col need unit stride along dk");
  (void)checked_mul(checked_mul(B, L, who), checked_mul(d.h, d.m, who), who);
  return d;
}

}  // namespace seqmix::kernels::ultramem
