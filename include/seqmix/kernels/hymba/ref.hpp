// Hymba op reference: the head combination of spec/hymba.md written as the formula, in double.
// For tests only.
#pragma once

#include <cmath>
#include <vector>

#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::hymba {

/// y = (attn·rsqrt(mean(attn²)+eps)·w₁ + ssm·rsqrt(mean(ssm²)+eps)·w₂) / 2 [B,T,I];
/// o = y W_outᵀ + b [B,T,C]. Either output may be null.
template <class T>
void ref(const inputs<T>& in, tensor_view<T, 3>* y, tensor_view<T, 3>* o, options<T> opt = {}) {
  check_args("hymba::ref", in, y, o);
  const index_t B = in.attn.extent(0), L = in.attn.extent(1), I = in.attn.extent(2), C = in.w_out.extent(0);
  std::vector<double> row(static_cast<std::size_t>(I));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      double s1 = 0, s2 = 0;
      for (index_t i = 0; i < I; ++i) {
        s1 += double(in.attn(b, t, i)) * in.attn(b, t, i);
        s2 += double(in.ssm(b, t, i)) * in.ssm(b, t, i);
      }
      const double r1 = 1 / std::sqrt(s1 / double(I) + double(opt.eps)), r2 = 1 / std::sqrt(s2 / double(I) + double(opt.eps));
      for (index_t i = 0; i < I; ++i) {
        row[std::size_t(i)] = (in.attn(b, t, i) * r1 * in.norm1(i) + in.ssm(b, t, i) * r2 * in.norm2(i)) / 2;
        if (y) (*y)(b, t, i) = static_cast<T>(row[std::size_t(i)]);
      }
      if (o)
        for (index_t c = 0; c < C; ++c) {
          double acc = in.bias.data() ? double(in.bias(c)) : 0.0;
          for (index_t i = 0; i < I; ++i) acc += double(in.w_out(c, i)) * row[std::size_t(i)];
          (*o)(b, t, c) = static_cast<T>(acc);
        }
    }
}

}  // namespace seqmix::kernels::hymba
