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
struct scan_op {
  using value_type = T;
  struct case_type {
    index_t B, L, D, N, G;  // L: tokens
    double dlo, dhi;
    bool extreme = false;
    friend std::ostream& operator<<(std::ostream& os, const case_type& c) {
      return os << "B=" << c.B << " T=" << c.L << " D=" << c.D << " N=" << c.N << " G=" << c.G << " delta in [" << c.dlo
                << ", " << c.dhi << "]" << (c.extreme ? " (extreme)" : "");
    }
  };
  struct data {
    tensor<T, 3> u, delta, z;
    tensor<T, 2> A;
    tensor<T, 4> B, C;
    tensor<T, 1> D, bias;
    tensor<T, 3> state;
  };
  struct problem {
    std::shared_ptr<data> d;
    kernels::ssm::selective_scan::inputs<T> in;
    kernels::ssm::selective_scan::options opt{};
    std::shared_ptr<const void> fused;
  };
  struct result {
    tensor<T, 3> y, state;
  };
  static constexpr const char* names[] = {"y", "state"};

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
  static case_type agree_case() { return {2, 200, 80, 16, 2, -3, 1}; }
  static case_type split_case() { return {1, 90, 24, 8, 1, -3, 1}; }
  static case_type fused_case() { return {2, 45, 48, 16, 2, -3, 1}; }
  static case_type empty_case() { return {1, 0, 16, 4, 1, -1, 0}; }
  static case_type long_case(index_t tokens) { return {1, tokens, 32, 16, 1, 0, 0, true}; }
  static constexpr index_t long_tokens = 16384, parallel_tokens = 512;

  static problem make(const case_type& c, unsigned seed) {
    const double amin = c.extreme ? 1 : 0.5, amax = c.extreme ? 16 : 8;
    auto d = std::make_shared<data>(data{uniform_tensor<T, 3>({c.B, c.L, c.D}, -1, 1, seed),
                                         uniform_tensor<T, 3>({c.B, c.L, c.D}, c.dlo, c.dhi, seed + 1),
                                         uniform_tensor<T, 3>({c.B, c.L, c.D}, -2, 2, seed + 2),
                                         uniform_tensor<T, 2>({c.D, c.N}, -amax, -amin, seed + 3),
                                         uniform_tensor<T, 4>({c.B, c.L, c.G, c.N}, -1, 1, seed + 4),
                                         uniform_tensor<T, 4>({c.B, c.L, c.G, c.N}, -1, 1, seed + 5),
                                         uniform_tensor<T, 1>({c.D}, -1, 1, seed + 6),
                                         uniform_tensor<T, 1>({c.D}, -0.5, 0.5, seed + 7),
                                         uniform_tensor<T, 3>({c.B, c.D, c.N}, -1, 1, seed + 8)});
    if (c.extreme)
      for (index_t b = 0; b < c.B; ++b)
        for (index_t t = 0; t < c.L; ++t)
          for (index_t i = 0; i < c.D; ++i) d->delta(b, t, i) = i % 2 ? T(-16.1) - d->bias(i) : T(15) - d->bias(i);
    return {d, {d->u, d->delta, d->A, d->B, d->C, d->D, d->z, d->bias}, {}, {}};
  }
  static problem fused(problem p) {
    auto& in = p.in;
    std::tie(in.u, in.delta, in.z, in.B, in.C) = fuse(p.fused, in.u, in.delta, in.z, in.B, in.C);
    return p;
  }
  static index_t length(const problem& p) { return p.in.u.extent(1); }
  static index_t reduction(const problem& p) { return p.in.A.extent(1) + p.in.u.extent(1); }
  static result start(const problem& p) { return {nan_tensor<T, 3>(p.in.u.extents()), p.d->state}; }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, index_t t0, index_t n) {
    auto sub = [&](auto x) { return kernels::ssm::detail::present(x) ? x.subrange(1, t0, n) : x; };
    const kernels::ssm::selective_scan::inputs<T> in{sub(p.in.u), sub(p.in.delta), p.in.A, sub(p.in.B), sub(p.in.C),
                                                     p.in.D,      sub(p.in.z),     p.in.delta_bias};
    const tensor_view<T, 3> y = r.y.view().subrange(1, t0, n);
    if constexpr (std::is_same_v<P, reference>) kernels::ssm::selective_scan::ref<T>(in, y, r.state, p.opt);
    else kernels::ssm::selective_scan::forward(policy, in, y, r.state, p.opt);
  }
  static auto compared(const result& r) { return std::tie(r.y, r.state); }
};

/// Mamba-2: x [B,T,H,P], dt [B,T,H] (raw, uniform in [dlo, dhi]), A [H] in [-amax, -amin], B, C
/// [B,T,G,N], D, dt_bias [H], state [B,H,P,N]. `extreme`: odd heads take dt ≈ 1e-7, even ones
/// dt = 15, as in scan_op.
template <class T>
struct ssd_op {
  using value_type = T;
  struct case_type {
    index_t B, L, H, P, N, G;  // L: tokens
    double dlo, dhi;
    bool extreme = false;
    friend std::ostream& operator<<(std::ostream& os, const case_type& c) {
      return os << "B=" << c.B << " T=" << c.L << " H=" << c.H << " P=" << c.P << " N=" << c.N << " G=" << c.G
                << " dt in [" << c.dlo << ", " << c.dhi << "]" << (c.extreme ? " (extreme)" : "");
    }
  };
  struct data {
    tensor<T, 4> x;
    tensor<T, 3> dt;
    tensor<T, 1> A;
    tensor<T, 4> B, C;
    tensor<T, 1> D, dt_bias;
    tensor<T, 4> state;
  };
  struct problem {
    std::shared_ptr<data> d;
    kernels::ssm::ssd::inputs<T> in;
    kernels::ssm::ssd::options opt{};
    std::shared_ptr<const void> fused;
  };
  struct result {
    tensor<T, 4> y, state;
  };
  static constexpr const char* names[] = {"y", "state"};

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
  static case_type agree_case() { return {2, 200, 4, 32, 64, 2, -3, 1}; }
  static case_type split_case() { return {1, 90, 2, 8, 8, 1, -3, 1}; }
  static case_type fused_case() { return {2, 45, 4, 16, 16, 2, -3, 1}; }
  static case_type empty_case() { return {1, 0, 2, 8, 4, 1, -1, 0}; }
  static case_type long_case(index_t tokens) { return {1, tokens, 4, 16, 16, 2, 0, 0, true}; }
  static constexpr index_t long_tokens = 16384, parallel_tokens = 512;

  static problem make(const case_type& c, unsigned seed) {
    const double amin = c.extreme ? 1 : 0.5, amax = c.extreme ? 16 : 8;
    auto d = std::make_shared<data>(data{uniform_tensor<T, 4>({c.B, c.L, c.H, c.P}, -1, 1, seed),
                                         uniform_tensor<T, 3>({c.B, c.L, c.H}, c.dlo, c.dhi, seed + 1),
                                         uniform_tensor<T, 1>({c.H}, -amax, -amin, seed + 2),
                                         uniform_tensor<T, 4>({c.B, c.L, c.G, c.N}, -1, 1, seed + 3),
                                         uniform_tensor<T, 4>({c.B, c.L, c.G, c.N}, -1, 1, seed + 4),
                                         uniform_tensor<T, 1>({c.H}, -1, 1, seed + 5),
                                         uniform_tensor<T, 1>({c.H}, -0.5, 0.5, seed + 6),
                                         uniform_tensor<T, 4>({c.B, c.H, c.P, c.N}, -1, 1, seed + 7)});
    if (c.extreme)
      for (index_t b = 0; b < c.B; ++b)
        for (index_t t = 0; t < c.L; ++t)
          for (index_t h = 0; h < c.H; ++h) d->dt(b, t, h) = h % 2 ? T(-16.1) - d->dt_bias(h) : T(15) - d->dt_bias(h);
    return {d, {d->x, d->dt, d->A, d->B, d->C, d->D, d->dt_bias}, {}, {}};
  }
  static problem fused(problem p) {
    auto& in = p.in;
    std::tie(in.x, in.B, in.C, in.dt) = fuse(p.fused, in.x, in.B, in.C, in.dt);
    return p;
  }
  static index_t length(const problem& p) { return p.in.x.extent(1); }
  static index_t reduction(const problem& p) { return p.in.B.extent(3) + p.in.x.extent(1); }
  static result start(const problem& p) { return {nan_tensor<T, 4>(p.in.x.extents()), p.d->state}; }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, index_t t0, index_t n) {
    auto sub = [&](auto x) { return x.subrange(1, t0, n); };
    const kernels::ssm::ssd::inputs<T> in{sub(p.in.x), sub(p.in.dt), p.in.A, sub(p.in.B), sub(p.in.C), p.in.D, p.in.dt_bias};
    const tensor_view<T, 4> y = r.y.view().subrange(1, t0, n);
    if constexpr (std::is_same_v<P, reference>) kernels::ssm::ssd::ref<T>(in, y, r.state, p.opt);
    else kernels::ssm::ssd::forward(policy, in, y, r.state, p.opt);
  }
  static auto compared(const result& r) { return std::tie(r.y, r.state); }
};

}  // namespace seqmix::test
