// UltraMem op (kernels::ultramem): the top-m selection against std::partial_sort on random and
// adversarial inputs (ties, equal rows, NaN, m = n, m = 1); the core's rank-1 factors and their
// sign convention; the op under every policy and thread count against the double reference (float
// and double, ranks 1-3, n not a multiple of the lanes, m = 1 and m = n, both activations);
// argument errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <seqmix/kernels/ultramem/ref.hpp>
#include <seqmix/kernels/ultramem/ultramem.hpp>
#include <seqmix/tensor/random.hpp>

#include "support/compare.hpp"

using namespace seqmix;
namespace um = kernels::ultramem;

namespace {

template <class T>
void check_top_m(const std::vector<T>& x, index_t m) {
  const index_t n = index_t(x.size());
  std::vector<um::candidate<T>> all(x.size()), got(static_cast<std::size_t>(m));
  for (index_t i = 0; i < n; ++i) all[std::size_t(i)] = {x[std::size_t(i)], i};
  std::partial_sort(all.begin(), all.begin() + m, all.end(),
                    [](const auto& a, const auto& b) { return um::better(a, b); });
  um::top_m(x.data(), n, m, got.data());
  for (index_t k = 0; k < m; ++k) {
    INFO("n=" << n << " m=" << m << " k=" << k);
    REQUIRE(got[std::size_t(k)].index == all[std::size_t(k)].index);
  }
  // The same set in increasing index order (the form the grid takes its rows and columns in).
  std::vector<index_t> want(static_cast<std::size_t>(m)), ordered(want.size());
  for (index_t k = 0; k < m; ++k) want[std::size_t(k)] = all[std::size_t(k)].index;
  std::sort(want.begin(), want.end());
  um::top_m_scratch<T> scratch;
  um::top_m(x.data(), n, m, got.data(), scratch, ordered.data());
  REQUIRE(ordered == want);
}

template <class T>
void top_m_cases() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  for (index_t n : {1, 2, 3, 7, 8, 16, 17, 31, 64, 100, 512, 1024, 2000, 4099}) {
    std::vector<index_t> ms{1, n, std::max<index_t>(1, n / 2), std::min<index_t>(n, 8), std::min<index_t>(n, 32)};
    for (index_t m : ms) {
      std::vector<T> x(static_cast<std::size_t>(n));
      for (auto& v : x) v = T(u(rng));
      check_top_m(x, m);  // random
      for (index_t i = 0; i < n; i += 5) x[std::size_t(i)] = std::numeric_limits<T>::infinity();
      check_top_m(x, m);  // +inf among finite values (threshold may be +inf)
      for (index_t i = 0; i < n; ++i) x[std::size_t(i)] = T(std::floor(u(rng) * 4) + (i % 64 < 8 ? 8 : 0));
      check_top_m(x, m);  // clustered high blocks with ties: many survivors of the threshold
      for (auto& v : x) v = T(u(rng));
      std::sort(x.begin(), x.end());
      check_top_m(x, m);  // ascending: every candidate enters
      std::reverse(x.begin(), x.end());
      check_top_m(x, m);  // descending: none after the first m
      for (auto& v : x) v = T(std::floor(u(rng) * 3));
      check_top_m(x, m);  // many ties
      std::fill(x.begin(), x.end(), T(0.25));
      check_top_m(x, m);  // all equal: the first m
      for (index_t i = 0; i < n; i += 3) x[std::size_t(i)] = std::numeric_limits<T>::quiet_NaN();
      check_top_m(x, m);  // NaN ranks as -inf
      for (index_t i = 0; i < n; i += 2) x[std::size_t(i)] = -std::numeric_limits<T>::infinity();
      check_top_m(x, m);
    }
  }
}

template <class T>
struct problem {
  tensor<T, 3> q_row, q_col, core, values;
  tensor<T, 4> keys;
  index_t m;
};

template <class T>
problem<T> make(index_t B, index_t L, index_t dk, index_t r, index_t n, index_t h, index_t m, index_t dv, unsigned seed) {
  return {uniform_tensor<T, 3>({B, L, dk}, -1, 1, seed), uniform_tensor<T, 3>({B, L, dk}, -1, 1, seed + 1),
          uniform_tensor<T, 3>({h, r, r}, -1, 1, seed + 2), uniform_tensor<T, 3>({h, n * n, dv}, -1, 1, seed + 3),
          uniform_tensor<T, 4>({2, r, n, dk}, -1, 1, seed + 4), m};
}

template <class T>
struct outputs {
  tensor<T, 4> o, scores;
  tensor<std::int64_t, 4> indices;
};

template <class T, class P>
outputs<T> run(const P& policy, const problem<T>& p, um::options opt) {
  const index_t B = p.q_row.extent(0), L = p.q_row.extent(1), h = p.core.extent(0), dv = p.values.extent(2);
  outputs<T> out{test::nan_tensor<T, 4>({B, L, h, dv}), test::nan_tensor<T, 4>({B, L, h, p.m}),
                 tensor<std::int64_t, 4>({B, L, h, p.m}, -1)};
  um::forward(policy, p.q_row, p.q_col, p.keys, p.core, p.values, out.o, out.indices.view(), out.scores, opt);
  return out;
}
template <class T>
outputs<T> run_ref(const problem<T>& p, um::options opt) {
  const index_t B = p.q_row.extent(0), L = p.q_row.extent(1), h = p.core.extent(0), dv = p.values.extent(2);
  outputs<T> out{test::nan_tensor<T, 4>({B, L, h, dv}), test::nan_tensor<T, 4>({B, L, h, p.m}),
                 tensor<std::int64_t, 4>({B, L, h, p.m}, -1)};
  um::ref<T>(p.q_row, p.q_col, p.keys, p.core, p.values, out.o, out.indices.view(), out.scores, opt);
  return out;
}

/// Against the reference: double selects exactly the reference's list; float may differ where two
/// scores are within its rounding (counted, at most 2% of the selections), and agrees elsewhere.
template <class T>
void check_against_reference(const problem<T>& p, um::options opt) {
  const auto want = run_ref(p, opt);
  const auto got = run(exec::recurrent{}, p, opt);
  const index_t B = p.q_row.extent(0), L = p.q_row.extent(1), h = p.core.extent(0), m = p.m, dv = p.values.extent(2);
  const index_t dk = p.q_row.extent(2), r = p.core.extent(1);
  // A score: r² products of dot products over dk; o: m weighted rows.
  const double scale = double(dk) * double(r * r);
  index_t differ = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t hh = 0; hh < h; ++hh) {
        bool same = true;
        for (index_t k = 0; k < m; ++k) same &= got.indices(b, t, hh, k) == want.indices(b, t, hh, k);
        if (!same) {
          ++differ;
          continue;
        }
        for (index_t k = 0; k < m; ++k)
          CHECK(std::abs(double(got.scores(b, t, hh, k)) - double(want.scores(b, t, hh, k))) <=
                test::tolerance<T>(double(dk) * r * r) * scale);
        for (index_t c = 0; c < dv; ++c)
          CHECK(std::abs(double(got.o(b, t, hh, c)) - double(want.o(b, t, hh, c))) <=
                test::tolerance<T>(double(dk * r * r + m)) * scale * double(m));
      }
  if constexpr (std::is_same_v<T, double>) CHECK(differ == 0);
  else CHECK(differ * 50 <= B * L * h);
  // Every policy and thread count gives the same bits.
  for (const auto& other : {run(exec::chunkwise<64>{}, p, opt), run(exec::parallel{2}, p, opt),
                            run(exec::automatic{2}, p, opt), run(exec::chunkwise<16>{2}, p, opt)}) {
    SEQMIX_CHECK_IDENTICAL(other.o, got.o);
    SEQMIX_CHECK_IDENTICAL(other.scores, got.scores);
    CHECK(std::equal(other.indices.data(), other.indices.data() + other.indices.size(), got.indices.data()));
  }
}

}  // namespace

TEST_CASE("ultramem top_m: the same list as std::partial_sort (random, sorted, ties, equal, NaN, m = 1, m = n)",
          "[ultramem][kernels]") {
  top_m_cases<float>();
  top_m_cases<double>();
}

TEST_CASE("ultramem rank-1 factors: first singular vectors of the core with Σu > 0", "[ultramem][kernels]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  for (index_t r : {1, 2, 3, 4, 6}) {
    for (int trial = 0; trial < 20; ++trial) {
      const auto R = static_cast<std::size_t>(r);
      std::vector<double> C(R * R), U(R), Tt(R);
      for (auto& c : C) c = u(rng);
      um::rank1_factors(C.data(), r, U.data(), Tt.data());
      // C t = σ u and Cᵀ u = σ t, ‖u‖ = ‖t‖ = 1, σ the largest singular value (power iteration).
      double su = 0, nu = 0, nt = 0;
      for (index_t a = 0; a < r; ++a) su += U[std::size_t(a)], nu += U[std::size_t(a)] * U[std::size_t(a)], nt += Tt[std::size_t(a)] * Tt[std::size_t(a)];
      CHECK(su > 0);
      CHECK(std::abs(nu - 1) < 1e-12);
      CHECK(std::abs(nt - 1) < 1e-12);
      std::vector<double> v(R, 1.0), w(R);
      double sigma = 0;
      for (int it = 0; it < 2000; ++it) {  // power iteration on CᵀC
        std::vector<double> cv(R, 0.0);
        for (index_t a = 0; a < r; ++a)
          for (index_t b = 0; b < r; ++b) cv[std::size_t(a)] += C[std::size_t(a * r + b)] * v[std::size_t(b)];
        std::fill(w.begin(), w.end(), 0.0);
        for (index_t a = 0; a < r; ++a)
          for (index_t b = 0; b < r; ++b) w[std::size_t(b)] += C[std::size_t(a * r + b)] * cv[std::size_t(a)];
        double nw = 0;
        for (double x : w) nw += x * x;
        nw = std::sqrt(nw);
        for (index_t b = 0; b < r; ++b) v[std::size_t(b)] = w[std::size_t(b)] / nw;
        sigma = std::sqrt(nw);
      }
      double ct_dot_u = 0;  // uᵀ C t = σ
      for (index_t a = 0; a < r; ++a)
        for (index_t b = 0; b < r; ++b) ct_dot_u += U[std::size_t(a)] * C[std::size_t(a * r + b)] * Tt[std::size_t(b)];
      CHECK(std::abs(ct_dot_u - sigma) < 1e-6 * std::max(1.0, sigma));
    }
  }
  // Diagonal core: u, t the unit vector of the largest |entry|, sign from Σu.
  const double C[4] = {0.5, 0, 0, -2};
  double U[2], Tt[2];
  um::rank1_factors(C, 2, U, Tt);
  CHECK(U[0] == 0);
  CHECK(U[1] == 1);
  CHECK(Tt[1] == -1);
  const double Z[4] = {0, 0, 0, 0};
  um::rank1_factors(Z, 2, U, Tt);
  CHECK(Tt[0] == 0);
  CHECK(Tt[1] == 0);
}

TEST_CASE("ultramem op: every policy and thread count against the double reference", "[ultramem][kernels]") {
  struct shape {
    index_t B, L, dk, r, n, h, m, dv;
  };
  for (const shape s : {shape{2, 37, 16, 2, 16, 2, 8, 16}, shape{1, 70, 8, 1, 13, 3, 1, 5},
                        shape{1, 5, 12, 3, 9, 2, 9, 7}, shape{2, 3, 32, 4, 40, 1, 16, 33}}) {
    for (auto act : {um::activation::identity, um::activation::relu}) {
      INFO("B=" << s.B << " L=" << s.L << " dk=" << s.dk << " r=" << s.r << " n=" << s.n << " h=" << s.h
                << " m=" << s.m << " dv=" << s.dv << " relu=" << (act == um::activation::relu));
      check_against_reference(make<double>(s.B, s.L, s.dk, s.r, s.n, s.h, s.m, s.dv, unsigned(s.n)), {act});
      check_against_reference(make<float>(s.B, s.L, s.dk, s.r, s.n, s.h, s.m, s.dv, unsigned(s.n)), {act});
    }
  }
}

TEST_CASE("ultramem op: strided queries and outputs read and write the right elements", "[ultramem][kernels]") {
  const auto p = make<float>(2, 9, 8, 2, 10, 2, 4, 6, 11);
  const auto want = run(exec::recurrent{}, p, {});
  // q_row and q_col as two halves of one [B, L, 2dk] buffer; o inside a wider buffer.
  tensor<float, 3> fused({2, 9, 16});
  for (index_t b = 0; b < 2; ++b)
    for (index_t t = 0; t < 9; ++t)
      for (index_t j = 0; j < 8; ++j) fused(b, t, j) = p.q_row(b, t, j), fused(b, t, 8 + j) = p.q_col(b, t, j);
  const tensor_view<const float, 3> qr(fused.data(), {2, 9, 8}, {9 * 16, 16, 1}), qc(fused.data() + 8, {2, 9, 8}, {9 * 16, 16, 1});
  tensor<float, 4> wide({2, 9, 2, 10}, std::nanf(""));
  const tensor_view<float, 4> o(wide.data(), {2, 9, 2, 6}, {180, 20, 10, 1});
  auto sc = test::nan_tensor<float, 4>({2, 9, 2, 4});
  tensor<std::int64_t, 4> idx({2, 9, 2, 4}, -1);
  um::forward(exec::parallel{2}, qr, qc, p.keys, p.core, p.values, o, idx.view(), sc);
  const tensor<float, 4> got(o);
  SEQMIX_CHECK_IDENTICAL(got, want.o);
  CHECK(std::equal(idx.data(), idx.data() + idx.size(), want.indices.data()));
  for (index_t i = 0; i < wide.size(); ++i)
    if (i % 10 >= 6) CHECK(std::isnan(wide.data()[i]));
}

TEST_CASE("ultramem op: bad shapes, top-m and activation raise seqmix::error", "[ultramem][kernels][errors]") {
  const auto p = make<float>(1, 3, 8, 2, 6, 2, 4, 5, 1);
  auto o = test::nan_tensor<float, 4>({1, 3, 2, 5});
  auto run_with = [&](index_t m, const tensor<float, 4>& keys, const tensor<float, 3>& values) {
    auto sc = test::nan_tensor<float, 4>({1, 3, 2, m});
    tensor<std::int64_t, 4> idx({1, 3, 2, m});
    um::forward(exec::recurrent{}, p.q_row, p.q_col, keys, p.core, values, o, idx.view(), sc);
  };
  CHECK_NOTHROW(run_with(4, p.keys, p.values));
  CHECK_THROWS_AS(run_with(0, p.keys, p.values), error);
  CHECK_THROWS_AS(run_with(7, p.keys, p.values), error);  // m > n
  CHECK_THROWS_AS(run_with(4, tensor<float, 4>({2, 2, 6, 9}), p.values), error);
  CHECK_THROWS_AS(run_with(4, p.keys, tensor<float, 3>({2, 35, 5})), error);
  CHECK_THROWS_AS(um::activation_from("softmax", "ultramem"), error);
  CHECK(um::activation_from("relu", "x") == um::activation::relu);
}
