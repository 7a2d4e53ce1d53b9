// nGPT op reference: the update of spec/ngpt.md written as upstream writes it, in double, with
// norm(0) = 0 (the library's definition; upstream gives NaN). For tests only.
#pragma once

#include <cmath>
#include <vector>

#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ngpt {

/// out = justnorm(A + lr ⊙ (B − A)), A = justnorm(h), B = justnorm(h_m), lr = |alpha · alpha_scale|;
/// normalized (if given) = A. Shapes as forward().
template <class T>
report ref(tensor_view<const T, 3> h, tensor_view<const T, 3> hm, tensor_view<const T, 1> alpha, tensor_view<T, 3> out,
           options<T> opt = {}, tensor_view<T, 3>* normalized = nullptr) {
  check_args("ngpt::ref", h, hm, alpha, out, normalized);
  const index_t B = h.extent(0), L = h.extent(1), C = h.extent(2);
  report rep;
  std::vector<double> a(static_cast<std::size_t>(C)), z(a.size());
  auto inv = [](double s) { return s > 0 ? 1 / std::sqrt(s) : (s == 0 ? 0.0 : s); };
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      double sh = 0, sm = 0, sz = 0;
      for (index_t c = 0; c < C; ++c) sh += double(h(b, t, c)) * h(b, t, c), sm += double(hm(b, t, c)) * hm(b, t, c);
      const double ia = inv(sh), ib = inv(sm);
      for (index_t c = 0; c < C; ++c) {
        const double lr = std::abs(double(alpha(c)) * double(opt.alpha_scale));
        const double A = h(b, t, c) * ia, Bn = hm(b, t, c) * ib;
        a[std::size_t(c)] = A;
        z[std::size_t(c)] = A + lr * (Bn - A);
        sz += z[std::size_t(c)] * z[std::size_t(c)];
      }
      const double iz = inv(sz);
      for (index_t c = 0; c < C; ++c) {
        out(b, t, c) = static_cast<T>(z[std::size_t(c)] * iz);
        if (normalized) (*normalized)(b, t, c) = static_cast<T>(a[std::size_t(c)]);
      }
      rep.zero_rows += !(sh != 0 && sm != 0 && sz != 0);
    }
  return rep;
}

}  // namespace seqmix::kernels::ngpt
