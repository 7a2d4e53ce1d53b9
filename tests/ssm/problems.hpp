// Random Mamba-1 / Mamba-2 op problems shared by the kernel tests.
#pragma once

#include <seqmix/kernels/ssm/args.hpp>

#include "support/compare.hpp"

namespace seqmix::test {

/// Mamba-1 shapes: batch, tokens, channels D, states N, groups G.
struct scan_shape {
  index_t B, T, D, N, G;
};

/// A Mamba-1 problem. delta (raw) is uniform in [dlo, dhi], so dt = softplus(delta + bias) spans
/// roughly e^dlo .. dhi; A in [-amax, -amin].
template <class T>
struct scan_problem {
  tensor<T, 3> u, delta, z;
  tensor<T, 2> A;
  tensor<T, 4> B, C;
  tensor<T, 1> D, bias;
  tensor<T, 3> state;
  scan_problem(scan_shape s, double dlo, double dhi, unsigned seed, double amin = 0.5, double amax = 8)
      : u(uniform_tensor<T, 3>({s.B, s.T, s.D}, -1, 1, seed)),
        delta(uniform_tensor<T, 3>({s.B, s.T, s.D}, dlo, dhi, seed + 1)),
        z(uniform_tensor<T, 3>({s.B, s.T, s.D}, -2, 2, seed + 2)),
        A(uniform_tensor<T, 2>({s.D, s.N}, -amax, -amin, seed + 3)),
        B(uniform_tensor<T, 4>({s.B, s.T, s.G, s.N}, -1, 1, seed + 4)),
        C(uniform_tensor<T, 4>({s.B, s.T, s.G, s.N}, -1, 1, seed + 5)),
        D(uniform_tensor<T, 1>({s.D}, -1, 1, seed + 6)),
        bias(uniform_tensor<T, 1>({s.D}, -0.5, 0.5, seed + 7)),
        state(uniform_tensor<T, 3>({s.B, s.D, s.N}, -1, 1, seed + 8)) {}
  kernels::ssm::selective_scan::inputs<T> inputs() const { return {u, delta, A, B, C, D, z, bias}; }
};

/// Mamba-2 shapes: batch, tokens, heads H, head dim P, states N, groups G.
struct ssd_shape {
  index_t B, T, H, P, N, G;
};

template <class T>
struct ssd_problem {
  tensor<T, 4> x;
  tensor<T, 3> dt;
  tensor<T, 1> A;
  tensor<T, 4> B, C;
  tensor<T, 1> D, dt_bias;
  tensor<T, 4> state;
  ssd_problem(ssd_shape s, double dlo, double dhi, unsigned seed, double amin = 0.5, double amax = 8)
      : x(uniform_tensor<T, 4>({s.B, s.T, s.H, s.P}, -1, 1, seed)),
        dt(uniform_tensor<T, 3>({s.B, s.T, s.H}, dlo, dhi, seed + 1)),
        A(uniform_tensor<T, 1>({s.H}, -amax, -amin, seed + 2)),
        B(uniform_tensor<T, 4>({s.B, s.T, s.G, s.N}, -1, 1, seed + 3)),
        C(uniform_tensor<T, 4>({s.B, s.T, s.G, s.N}, -1, 1, seed + 4)),
        D(uniform_tensor<T, 1>({s.H}, -1, 1, seed + 5)),
        dt_bias(uniform_tensor<T, 1>({s.H}, -0.5, 0.5, seed + 6)),
        state(uniform_tensor<T, 4>({s.B, s.H, s.P, s.N}, -1, 1, seed + 7)) {}
  kernels::ssm::ssd::inputs<T> inputs() const { return {x, dt, A, B, C, D, dt_bias}; }
};

template <class T, std::size_t R>
bool all_finite(const tensor<T, R>& t) {
  return std::all_of(t.data(), t.data() + t.size(), [](T x) { return std::isfinite(x); });
}

}  // namespace seqmix::test
