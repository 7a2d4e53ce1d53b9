// State-space references: the plain recurrences of spec/mamba.md and spec/mamba2.md with double
// accumulation. For tests only.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/ref.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm {

namespace detail {
inline double softplus_ref(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }
inline double silu_ref(double x) { return x / (1 + std::exp(-x)); }
}  // namespace detail

namespace selective_scan {

/// Mamba-1 selective scan token by token (see inputs<T>). y [B,T,D]; state [B,D,N] holds h before
/// the sequence and h after it on return.
template <class T>
void ref(const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state, options opt = {}) {
  const auto [Bn, L, D, N, G] = check_args(in, y, state);
  std::vector<double> h(static_cast<std::size_t>(N));
  for (index_t b = 0; b < Bn; ++b)
    for (index_t d = 0; d < D; ++d) {
      const index_t g = d / (D / G);
      for (index_t n = 0; n < N; ++n) h[n] = state(b, d, n);
      for (index_t t = 0; t < L; ++t) {
        double dt = double(in.delta(b, t, d)) + (ssm::detail::present(in.delta_bias) ? double(in.delta_bias(d)) : 0.0);
        if (opt.delta_softplus) dt = ssm::detail::softplus_ref(dt);
        const double u = in.u(b, t, d);
        double acc = 0;
        for (index_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * double(in.A(d, n))) * h[n] + dt * double(in.B(b, t, g, n)) * u;
          acc += h[n] * double(in.C(b, t, g, n));
        }
        if (ssm::detail::present(in.D)) acc += double(in.D(d)) * u;
        if (ssm::detail::present(in.z)) acc *= ssm::detail::silu_ref(double(in.z(b, t, d)));
        y(b, t, d) = static_cast<T>(acc);
      }
      for (index_t n = 0; n < N; ++n) state(b, d, n) = static_cast<T>(h[n]);
    }
}

}  // namespace selective_scan

namespace ssd {

/// Mamba-2 SSD scan token by token (see inputs<T>). y [B,T,H,P]; state [B,H,P,N] holds h before
/// the sequence and h after it on return.
template <class T>
void ref(const inputs<T>& in, tensor_view<T, 4> y, tensor_view<T, 4> state, options opt = {}) {
  const auto [Bn, L, H, P, N, G] = check_args(in, y, state);
  std::vector<double> h;
  for (index_t b = 0; b < Bn; ++b)
    for (index_t hd = 0; hd < H; ++hd) {
      const index_t g = hd / (H / G);
      common::load_state(state, b, hd, h);
      for (index_t t = 0; t < L; ++t) {
        double dt = double(in.dt(b, t, hd)) + (ssm::detail::present(in.dt_bias) ? double(in.dt_bias(hd)) : 0.0);
        if (opt.dt_softplus) dt = ssm::detail::softplus_ref(dt);
        dt = std::clamp(dt, opt.dt_min, opt.dt_max);
        const double a = std::exp(dt * double(in.A(hd)));
        for (index_t p = 0; p < P; ++p) {
          const double x = in.x(b, t, hd, p);
          double acc = 0;
          for (index_t n = 0; n < N; ++n) {
            double& s = h[p * N + n];
            s = a * s + dt * x * double(in.B(b, t, g, n));
            acc += s * double(in.C(b, t, g, n));
          }
          if (ssm::detail::present(in.D)) acc += double(in.D(hd)) * x;
          y(b, t, hd, p) = static_cast<T>(acc);
        }
      }
      common::store_state(h, state, b, hd);
    }
}

}  // namespace ssd

}  // namespace seqmix::kernels::ssm
