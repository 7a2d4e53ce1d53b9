// The op-suite adapters (support/op_suite.hpp) of the Mamba-1 selective scan and the Mamba-2 SSD
// scan: random problems, a call under a policy or of the reference, and what to compare.
#pragma once

#include <seqmix/kernels/ssm/ref.hpp>
#include <seqmix/kernels/ssm/selective_scan.hpp>
#include <seqmix/kernels/ssm/ssd.hpp>

#include <array>
#include <memory>

#include "support/op_suite.hpp"

namespace seqmix::test {

/// Mamba-1: u, delta, z [B,T,D], A [D,N] in [-amax, -amin], B, C [B,T,G,N], D, bias [D], state
/// [B,D,N]. delta (raw) is uniform in [dlo, dhi], so dt = softplus(delta + bias) spans roughly
/// e^dlo .. dhi. `extreme`: delta set so that odd channels take dt ≈ 1e-7 (A·dt ≈ -1e-7: the state
/// barely decays over the whole sequence) and even ones dt = 15 (A·dt down to -240: it resets
/// every step).
template <class T>
struct scan_data {
  tensor<T, 3> u, delta, z;
  tensor<T, 2> A;
  tensor<T, 4> B, C;
  tensor<T, 1> D, bias;
  tensor<T, 3> state;
};

template <class T>
struct scan_op : op_base<T, scan_data<T>, kernels::ssm::selective_scan::inputs<T>, 3, tensor<T, 3>,
                         kernels::ssm::selective_scan::options> {
  using typename scan_op::op_base::problem, typename scan_op::op_base::result;
  struct case_type {
    index_t B, L, D, N, G;  // L: tokens
    double dlo, dhi;
    bool extreme = false;
    SEQMIX_TEST_PRINTABLE(case_type, B, L, D, N, G, dlo, dhi, extreme)
  };

  static std::vector<case_type> cases() {
    std::vector<case_type> all;
    for (const auto& [dlo, dhi] : {std::pair{-4.0, -1.0}, std::pair{-2.0, 2.0}, std::pair{1.0, 6.0}})
      for (const auto& [B, L, D, N, G] :
           {std::array<index_t, 5>{1, 1, 16, 16, 1}, {2, 37, 48, 16, 1}, {1, 29, 64, 16, 2}, {2, 41, 96, 12, 3},
            {1, 2, 40, 8, 1}, {1, 100, 33, 5, 1}, {2, 3, 64, 32, 4}, {2, 2, 40, 32, 2}, {1, 1, 70, 16, 7},
            {2, 2, 300, 16, 3}})  // last: decode over several block groups
        all.push_back({B, L, D, N, G, dlo, dhi});
    return all;
  }
  static constexpr special_cases<case_type> special{.agree = {2, 200, 80, 16, 2, -3, 1},
                                                    .split = {1, 90, 24, 8, 1, -3, 1},
                                                    .fused = {2, 45, 48, 16, 2, -3, 1},
                                                    .empty = {1, 0, 16, 4, 1, -1, 0}};
  static case_type long_case(index_t tokens) { return {1, tokens, 32, 16, 1, 0, 0, true}; }
  static constexpr index_t long_tokens = 16384, parallel_tokens = 512;

  static problem make(const case_type& c, unsigned seed) {
    const double amin = c.extreme ? 1 : 0.5, amax = c.extreme ? 16 : 8;
    const std::array<index_t, 3> channels{c.B, c.L, c.D};
    const std::array<index_t, 4> groups{c.B, c.L, c.G, c.N};
    auto d = std::make_shared<scan_data<T>>(scan_data<T>{
        uniform_tensor<T, 3>(channels, -1, 1, seed), uniform_tensor<T, 3>(channels, c.dlo, c.dhi, seed + 1),
        uniform_tensor<T, 3>(channels, -2, 2, seed + 2), uniform_tensor<T, 2>({c.D, c.N}, -amax, -amin, seed + 3),
        uniform_tensor<T, 4>(groups, -1, 1, seed + 4), uniform_tensor<T, 4>(groups, -1, 1, seed + 5),
        uniform_tensor<T, 1>({c.D}, -1, 1, seed + 6), uniform_tensor<T, 1>({c.D}, -0.5, 0.5, seed + 7),
        uniform_tensor<T, 3>({c.B, c.D, c.N}, -1, 1, seed + 8)});
    if (c.extreme)
      for (index_t b = 0; b < c.B; ++b)
        for (index_t t = 0; t < c.L; ++t)
          for (index_t i = 0; i < c.D; ++i) d->delta(b, t, i) = i % 2 ? T(-16.1) - d->bias(i) : T(15) - d->bias(i);
    return {d, {d->u, d->delta, d->A, d->B, d->C, d->D, d->z, d->bias}};
  }
  static problem fused(problem p) {
    return test::fused(p, [](auto& in) { return std::tie(in.u, in.delta, in.z, in.B, in.C); });
  }
  static index_t reduction(const problem& p) { return p.in.A.extent(1) + p.in.u.extent(1); }
  static result start(const problem& p) { return {nan_tensor<T, 3>(p.in.u.extents()), p.d->state}; }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, const tokens& t) {
    namespace ss = kernels::ssm::selective_scan;
    const auto& [u, delta, A, B, C, D, z, bias] = p.in;
    const ss::inputs<T> in{t(u), t(delta), A, t(B), t(C), D, t(z), bias};
    if constexpr (std::is_same_v<P, reference>) ss::ref<T>(in, t(r.o), r.state, p.extra);
    else ss::forward(policy, in, t(r.o), r.state, p.extra);
  }
};

/// Mamba-2: x [B,T,H,P], dt [B,T,H] (raw, uniform in [dlo, dhi]), A [H] in [-amax, -amin], B, C
/// [B,T,G,N], D, dt_bias [H], state [B,H,P,N]. `extreme`: odd heads take dt ≈ 1e-7, even ones
/// dt = 15, as in scan_op.
template <class T>
struct ssd_data {
  tensor<T, 4> x;
  tensor<T, 3> dt;
  tensor<T, 1> A;
  tensor<T, 4> B, C;
  tensor<T, 1> D, dt_bias;
  tensor<T, 4> state;
};

template <class T>
struct ssd_op : op_base<T, ssd_data<T>, kernels::ssm::ssd::inputs<T>, 4, tensor<T, 4>, kernels::ssm::ssd::options> {
  using typename ssd_op::op_base::problem, typename ssd_op::op_base::result;
  struct case_type {
    index_t B, L, H, P, N, G;  // L: tokens
    double dlo, dhi;
    bool extreme = false;
    SEQMIX_TEST_PRINTABLE(case_type, B, L, H, P, N, G, dlo, dhi, extreme)
  };

  static std::vector<case_type> cases() {
    std::vector<case_type> all;
    for (const auto& [dlo, dhi] : {std::pair{-4.0, -1.0}, std::pair{-2.0, 2.0}, std::pair{1.0, 6.0}})
      for (const auto& [B, L, H, P, N, G] :
           {std::array<index_t, 6>{1, 1, 2, 16, 16, 1}, {2, 37, 4, 16, 16, 2}, {1, 70, 4, 32, 32, 1},
            {1, 97, 6, 24, 20, 3}, {2, 5, 3, 7, 9, 1}, {1, 131, 2, 64, 128, 1}, {1, 41, 3, 48, 16, 3},
            {1, 33, 2, 20, 64, 1}})  // N = 64: rows of 4 or 8 vectors
        all.push_back({B, L, H, P, N, G, dlo, dhi});
    return all;
  }
  static constexpr special_cases<case_type> special{
      .agree = {2, 200, 4, 32, 64, 2, -3, 1}, .split = {1, 90, 2, 8, 8, 1, -3, 1},
      .fused = {2, 45, 4, 16, 16, 2, -3, 1}, .empty = {1, 0, 2, 8, 4, 1, -1, 0}};
  static case_type long_case(index_t tokens) { return {1, tokens, 4, 16, 16, 2, 0, 0, true}; }
  static constexpr index_t long_tokens = 16384, parallel_tokens = 512;

  static problem make(const case_type& c, unsigned seed) {
    const double amin = c.extreme ? 1 : 0.5, amax = c.extreme ? 16 : 8;
    const std::array<index_t, 4> groups{c.B, c.L, c.G, c.N};
    auto d = std::make_shared<ssd_data<T>>(ssd_data<T>{
        uniform_tensor<T, 4>({c.B, c.L, c.H, c.P}, -1, 1, seed),
        uniform_tensor<T, 3>({c.B, c.L, c.H}, c.dlo, c.dhi, seed + 1),
        uniform_tensor<T, 1>({c.H}, -amax, -amin, seed + 2), uniform_tensor<T, 4>(groups, -1, 1, seed + 3),
        uniform_tensor<T, 4>(groups, -1, 1, seed + 4), uniform_tensor<T, 1>({c.H}, -1, 1, seed + 5),
        uniform_tensor<T, 1>({c.H}, -0.5, 0.5, seed + 6), uniform_tensor<T, 4>({c.B, c.H, c.P, c.N}, -1, 1, seed + 7)});
    if (c.extreme)
      for (index_t b = 0; b < c.B; ++b)
        for (index_t t = 0; t < c.L; ++t)
          for (index_t h = 0; h < c.H; ++h) d->dt(b, t, h) = h % 2 ? T(-16.1) - d->dt_bias(h) : T(15) - d->dt_bias(h);
    return {d, {d->x, d->dt, d->A, d->B, d->C, d->D, d->dt_bias}};
  }
  static problem fused(problem p) { return test::fused(p, [](auto& in) { return std::tie(in.x, in.B, in.C, in.dt); }); }
  static index_t reduction(const problem& p) { return p.in.B.extent(3) + p.in.x.extent(1); }
  static result start(const problem& p) { return {nan_tensor<T, 4>(p.in.x.extents()), p.d->state}; }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, const tokens& t) {
    const kernels::ssm::ssd::inputs<T> in{t(p.in.x), t(p.in.dt), p.in.A, t(p.in.B), t(p.in.C), p.in.D, p.in.dt_bias};
    if constexpr (std::is_same_v<P, reference>) kernels::ssm::ssd::ref<T>(in, t(r.o), r.state, p.extra);
    else kernels::ssm::ssd::forward(policy, in, t(r.o), r.state, p.extra);
  }
};

}  // namespace seqmix::test
