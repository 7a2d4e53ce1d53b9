// Tests for simd/math.hpp, simd/vec.hpp and simd/gemm.hpp against scalar references computed in
// higher precision (double for float, long double for double).
#include <catch2/catch.hpp>

#include <seqmix/simd/gemm.hpp>
#include <seqmix/simd/gemm_nt.hpp>
#include <seqmix/simd/math.hpp>
#include <seqmix/simd/reduce.hpp>
#include <seqmix/simd/transpose.hpp>
#include <seqmix/simd/vec.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <iomanip>
#include <limits>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

using seqmix::index_t;
using seqmix::tensor_view;
namespace simd = seqmix::simd;
using Catch::Contains;

namespace {

template <class T>
using ref_t = std::conditional_t<std::is_same_v<T, float>, double, long double>;

template <class T>
std::vector<T> random_vector(index_t n, unsigned seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

/// Math inputs: extremes and NaN first (so short lengths see them too), then [-30, 30] in a scrambled
/// order; rotated by `offset` so that different values land in the SIMD body and the scalar tail.
template <class T>
std::vector<T> math_inputs(index_t n, index_t offset) {
  const T big = sizeof(T) == 4 ? T(87) : T(700);  // about the largest |x| with a normal-range exp(x)
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<T> pool = {T(-80), T(80), -big, big, T(0), T(-0.0), T(1e-6), T(-1e-6), T(-30), T(30),
                         T(-100), T(100), T(-1000), T(1000), -inf, inf, T(0.5), T(-0.5),
                         std::numeric_limits<T>::quiet_NaN()};
  for (int i = 0; i < 1000; ++i) pool.push_back(static_cast<T>(-30 + 60.0 * ((i * 379) % 1000) / 999));
  std::vector<T> x(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = pool[(i + static_cast<std::size_t>(offset)) % pool.size()];
  return x;
}

template <class T>
bool same_value(T a, T b) { return a == b || (std::isnan(a) && std::isnan(b)); }

/// Runs f through simd::transform on every test length (out of place and in place) and checks
/// |got - ref| <= budget * eps * |ref| + min_normal (the floor admits a flushed subnormal result);
/// a reference outside T's range (inf) or NaN (silu(-inf) = -inf * 0) must be matched exactly.
template <class T, class F, class R>
void check_math(const char* name, F f, R ref, double budget) {
  constexpr index_t L = simd::lanes<T>;
  constexpr auto eps = std::numeric_limits<T>::epsilon(), tiny = std::numeric_limits<T>::min();
  for (index_t n : {index_t(0), index_t(1), L - 1, L, L + 1, 3 * L + 5, index_t(1000)})
    for (index_t offset : {0, 7}) {
      const auto x = math_inputs<T>(n, offset);
      const std::size_t un = x.size();
      std::vector<T> y(un + 1, T(-123)), z = x;  // y[n]: sentinel
      simd::transform(x.data(), y.data(), n, f);
      simd::transform(z.data(), z.data(), n, f);
      index_t bad = 0;
      std::string first;
      for (std::size_t i = 0; i < un; ++i) {
        const ref_t<T> r = ref(static_cast<ref_t<T>>(x[i]));
        const T rt = static_cast<T>(r);
        const bool ok =
            std::isfinite(rt) ? std::abs(y[i] - r) <= budget * eps * std::abs(r) + tiny : same_value(y[i], rt);
        if ((!ok || !same_value(y[i], z[i])) && bad++ == 0) {
          std::ostringstream s;
          s << std::setprecision(std::numeric_limits<T>::max_digits10) << "x=" << x[i] << " got " << y[i] << " ref "
            << static_cast<double>(r) << (same_value(y[i], z[i]) ? "" : " (in-place differs)");
          first = s.str();
        }
      }
      INFO(name << " n=" << n << " offset=" << offset << " lanes=" << L << " first failure: " << first);
      CHECK(bad == 0);
      CHECK(y[un] == T(-123));
    }
}

}  // namespace

TEST_CASE("simd::arch_name and lanes", "[simd]") {
  CHECK(std::string(simd::arch_name()).size() > 0);
  CHECK(simd::lanes<double> >= 1);
  CHECK(simd::lanes<float> == 2 * simd::lanes<double>);
}

// Error budgets, relative to the reference: xsimd's and libm's exp/log1p are within ~1 ulp (measured
// <= 1.1 eps); allowing 2 eps for each and 0.5 eps per further IEEE operation gives exp 2, sigmoid
// 3, silu 3.5, softplus/logsigmoid 4.5 eps. Budgets: 4 eps (exp, sigmoid, silu, a * sigmoid(b))
// and 6 eps (softplus, logsigmoid). Measured worst cases (avx512, avx2, sse2): <= 1.6 eps, except
// the float-batch sigmoid, silu, softplus and logsigmoid (own e^-|x|, reciprocal and log1p on
// [0, 1], see simd/math.hpp): 2.4, 2.7, 3.0 and 3.1 eps over 2e7 random arguments in [-104, 104]
// (silu's results near the subnormal range aside).
TEMPLATE_TEST_CASE("simd math functions match std:: references", "[simd]", float, double) {
  using T = TestType;
  using R = ref_t<T>;
  check_math<T>("exp", [](const auto& v) { return simd::exp(v); }, [](R x) { return std::exp(x); }, 4);
  check_math<T>("sigmoid", [](const auto& v) { return simd::sigmoid(v); },
                [](R x) { return 1 / (1 + std::exp(-x)); }, 4);
  check_math<T>("silu", [](const auto& v) { return simd::silu(v); },
                [](R x) { return x / (1 + std::exp(-x)); }, 4);
  // Past |x| = 700 (exp overflows a double at 709.8) log1p(exp(x)) = x + O(e^-700), which rounds to x.
  check_math<T>("softplus", [](const auto& v) { return simd::softplus(v); },
                [](R x) { return x > 700 ? x : std::log1p(std::exp(x)); }, 6);
  check_math<T>("logsigmoid", [](const auto& v) { return simd::logsigmoid(v); },
                [](R x) { return x < -700 ? x : -std::log1p(std::exp(-x)); }, 6);

  // The binary transform: out = a * sigmoid(b), a gating product.
  const index_t n = 3 * simd::lanes<T> + 5;
  const auto a = random_vector<T>(n, 1, -30, 30), b = random_vector<T>(n, 2, -30, 30);
  std::vector<T> out(static_cast<std::size_t>(n));
  simd::transform(a.data(), b.data(), out.data(), n,
                  [](const auto& p, const auto& q) { return p * simd::sigmoid(q); });
  index_t bad = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const R r = R(a[i]) / (1 + std::exp(-R(b[i])));
    bad += !(std::abs(out[i] - r) <= 4 * std::numeric_limits<T>::epsilon() * std::abs(r) +
                                         std::numeric_limits<T>::min());
  }
  CHECK(bad == 0);
}

// Tolerances: sums and dots of n terms: |err| <= n * eps * sum|terms| (the classic gamma_n bound is
// n * eps/2); elementwise ops: one rounding (eps/2) each, budget eps * |exact|, or eps * (|y| + |a x|)
// for axpy (an fma in the body, two roundings in the tail). max/min must be exact.
TEMPLATE_TEST_CASE("simd vector kernels match scalar loops", "[simd]", float, double) {
  using T = TestType;
  using R = ref_t<T>;
  constexpr index_t L = simd::lanes<T>;
  constexpr R eps = std::numeric_limits<T>::epsilon();
  for (index_t n : {index_t(0), index_t(1), index_t(3), L - 1, L + 1, 2 * L - 1, 2 * L + 1, 2 * L + 3, 4 * L + 3,
                    index_t(101), index_t(1001)}) {
    INFO("n=" << n << " lanes=" << L);
    const auto seed = static_cast<unsigned>(n);
    const auto x = random_vector<T>(n, 10 + seed), y = random_vector<T>(n, 20 + seed);
    const std::size_t un = static_cast<std::size_t>(n);
    const T a = T(-0.7);
    R dot = 0, dot_abs = 0, sum = 0, sum_abs = 0;
    for (std::size_t i = 0; i < un; ++i) {
      dot += R(x[i]) * R(y[i]), dot_abs += std::abs(R(x[i]) * R(y[i]));
      sum += R(x[i]), sum_abs += std::abs(R(x[i]));
    }
    CHECK(std::abs(simd::dot(x.data(), y.data(), n) - dot) <= R(n) * eps * dot_abs);
    CHECK(std::abs(simd::sum(x.data(), n) - sum) <= R(n) * eps * sum_abs);

    std::vector<T> ax = y, sc = x, mu(un + 1, T(9)), al = x;
    simd::axpy(a, x.data(), ax.data(), n);
    simd::scale(a, sc.data(), n);
    simd::mul(x.data(), y.data(), mu.data(), n);
    simd::mul(al.data(), y.data(), al.data(), n);  // z aliasing x
    index_t bad = 0;
    for (std::size_t i = 0; i < un; ++i) {
      const R ex = R(a) * R(x[i]), pr = R(x[i]) * R(y[i]);
      bad += !(std::abs(ax[i] - (R(y[i]) + ex)) <= eps * (std::abs(R(y[i])) + std::abs(ex)));
      bad += !(std::abs(sc[i] - ex) <= eps * std::abs(ex));
      bad += !(std::abs(mu[i] - pr) <= eps * std::abs(pr)) + (al[i] != mu[i]);
    }
    CHECK(bad == 0);
    CHECK(mu[un] == T(9));
    if (n == 0) continue;

    CHECK(simd::max_element(x.data(), n) == *std::max_element(x.begin(), x.end()));
    CHECK(simd::min_element(x.data(), n) == *std::min_element(x.begin(), x.end()));
    // The extreme at every position (SIMD body and tail), and all-negative data.
    index_t wrong = 0;
    for (std::size_t p = 0; p < un; ++p) {
      auto v = x;
      v[p] = T(5);
      wrong += simd::max_element(v.data(), n) != T(5);
      v[p] = T(-5);
      wrong += simd::min_element(v.data(), n) != T(-5);
      wrong += !simd::any_below(v.data(), n, T(-4)) || simd::any_below(v.data(), n, T(-5));
      v.assign(un, T(-3));
      v[p] = T(-2);
      wrong += simd::max_element(v.data(), n) != T(-2);
    }
    CHECK(wrong == 0);
  }
}

namespace {

/// Prepares an output C [m, n] with rows ldc apart in `buf` for a product check: the padding
/// columns hold `sentinel`, and without `accumulate` the outputs are NaN (an overwrite must not
/// read them). Returns the prepared buffer's copy, the C0 an accumulation adds to.
template <class T>
std::vector<T> prepare_output(std::vector<T>& buf, index_t m, index_t n, index_t ldc, bool accumulate, T sentinel) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < ldc; ++j)
      if (j >= n) buf[static_cast<std::size_t>(i * ldc + j)] = sentinel;
      else if (!accumulate) buf[static_cast<std::size_t>(i * ldc + j)] = std::numeric_limits<T>::quiet_NaN();
  return buf;
}

/// Outputs of C [m, n] (rows ldc apart in `buf`) farther from (C0 if accumulating) + Σ_p
/// term(i, j, p) than (k + 2) · eps · (|C0| + Σ_p |term|) (gamma_{k+1} with 2x margin), plus
/// padding columns that lost the sentinel.
template <class T, class Term>
index_t product_failures(const std::vector<T>& buf, const std::vector<T>& c0, index_t m, index_t n, index_t k,
                         index_t ldc, bool accumulate, T sentinel, Term term) {
  using R = ref_t<T>;
  index_t bad = 0;
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      R s = accumulate ? R(c0[static_cast<std::size_t>(i * ldc + j)]) : R(0), s_abs = std::abs(s);
      for (index_t p = 0; p < k; ++p) {
        const R t = term(i, j, p);
        s += t, s_abs += std::abs(t);
      }
      bad += !(std::abs(R(buf[static_cast<std::size_t>(i * ldc + j)]) - s) <= R(k + 2) * std::numeric_limits<T>::epsilon() * s_abs);
    }
    for (index_t j = n; j < ldc; ++j) bad += buf[static_cast<std::size_t>(i * ldc + j)] != sentinel;
  }
  return bad;
}

/// C (+)= A · B for one shape against a triple loop. A is row-major with leading dimension k + pad,
/// or (trans_a) the transpose of a [k, m] buffer: strides {1, m + pad}. B and C have leading
/// dimensions n + pad + 1 and n + pad + 2, their padding holds a sentinel that must survive.
/// Budget: |C - ref| <= (k + 2) * eps * (|C0| + sum_p |A_ip B_pj|) (gamma_{k+1} with 2x margin).
/// Returns the number of failing elements.
template <class T>
index_t gemm_failures(index_t m, index_t n, index_t k, simd::gemm_mode mode, bool trans_a, index_t pad, bool tri) {
  using R = ref_t<T>;
  const bool acc = mode == simd::gemm_mode::accumulate;
  const index_t lda = (trans_a ? m : k) + pad, ldb = n + pad + 1, ldc = n + pad + 2;
  const T sentinel = T(777);
  auto abuf = random_vector<T>((trans_a ? k : m) * lda, 31), bbuf = random_vector<T>(k * ldb, 32);
  auto cbuf = random_vector<T>(m * ldc, 33);
  const tensor_view<T, 2> A = trans_a ? seqmix::transposed(tensor_view<T, 2>(abuf.data(), {k, m}, {lda, 1}))
                                      : tensor_view<T, 2>(abuf.data(), {m, k}, {lda, 1});
  const tensor_view<T, 2> B(bbuf.data(), {k, n}, {ldb, 1}), C(cbuf.data(), {m, n}, {ldc, 1});
  for (index_t i = 0; i < m; ++i)
    for (index_t p = i + 1; tri && p < k; ++p) A(i, p) = T(0);
  for (index_t p = 0; p < k; ++p)
    for (index_t j = n; j < ldb; ++j) bbuf[static_cast<std::size_t>(p * ldb + j)] = sentinel;
  const auto c0 = prepare_output(cbuf, m, n, ldc, acc, sentinel);
  simd::gemm<T>(A, B, C, mode, tri);
  return product_failures(cbuf, c0, m, n, k, ldc, acc, sentinel, [&](index_t i, index_t j, index_t p) { return R(A(i, p)) * R(B(p, j)); });
}

}  // namespace

TEMPLATE_TEST_CASE("simd::gemm matches a triple loop", "[simd]", float, double) {
  using T = TestType;
  using simd::gemm_mode;
  for (index_t m : {1, 3, 4, 5, 6, 10, 11, 17, 65})  // row blocks of 6 (AVX-512), 4 and 1
    for (index_t n : {1, 3, 4, 5, 16, 17, 33, 64, 65})
      for (index_t k : {1, 5, 16, 65}) {
        INFO("m=" << m << " n=" << n << " k=" << k << " lanes=" << simd::lanes<T>);
        CHECK(gemm_failures<T>(m, n, k, gemm_mode::overwrite, false, 0, false) == 0);
        CHECK(gemm_failures<T>(m, n, k, gemm_mode::accumulate, true, 3, false) == 0);
        CHECK(gemm_failures<T>(m, n, k, gemm_mode::overwrite, true, 0, true) == 0);
        CHECK(gemm_failures<T>(m, n, k, gemm_mode::accumulate, false, 2, true) == 0);
      }
  // k = 0: overwrite zeroes C, accumulate leaves it alone.
  for (index_t n : {1, 5, 33, 65}) {
    CHECK(gemm_failures<T>(5, n, 0, gemm_mode::overwrite, false, 1, false) == 0);
    CHECK(gemm_failures<T>(5, n, 0, gemm_mode::accumulate, true, 1, true) == 0);
  }
}

namespace {

/// Y (+)= X · Wᵀ (simd::gemm_nt) for one shape against a triple loop, with rows padded by `pad`
/// (Y's padding holds a sentinel that must survive). Budget as gemm_failures. Returns the number
/// of failing elements.
template <class T>
index_t gemm_nt_failures(index_t m, index_t n, index_t k, bool accumulate, index_t pad) {
  using R = ref_t<T>;
  const index_t ldx = k + pad, ldw = k + pad + 1, ldy = n + pad + 2;
  const T sentinel = T(777);
  auto xbuf = random_vector<T>(m * ldx, 41), wbuf = random_vector<T>(n * ldw, 42), ybuf = random_vector<T>(m * ldy, 43);
  const tensor_view<T, 2> X(xbuf.data(), {m, k}, {ldx, 1}), W(wbuf.data(), {n, k}, {ldw, 1}), Y(ybuf.data(), {m, n}, {ldy, 1});
  const auto y0 = prepare_output(ybuf, m, n, ldy, accumulate, sentinel);
  simd::gemm_nt<T>(X, W, Y, accumulate);
  return product_failures(ybuf, y0, m, n, k, ldy, accumulate, sentinel, [&](index_t i, index_t j, index_t p) { return R(X(i, p)) * R(W(j, p)); });
}

}  // namespace

TEMPLATE_TEST_CASE("simd::gemm_nt matches a triple loop", "[simd]", float, double) {
  using T = TestType;
  // Edges of every block: row panels (12 or 6 rows), the row block (8 panels), column panels
  // (2 vectors), the column slice (512) and the depth block (256).
  for (index_t m : {1, 5, 12, 13, 97, 200})
    for (index_t n : {1, 7, 32, 33, 513})
      for (index_t k : {1, 3, 256, 300}) {
        if (m * n * k > 4000000) continue;
        INFO("m=" << m << " n=" << n << " k=" << k << " lanes=" << simd::lanes<T>);
        CHECK(gemm_nt_failures<T>(m, n, k, false, 0) == 0);
        CHECK(gemm_nt_failures<T>(m, n, k, true, 3) == 0);
      }
  CHECK(gemm_nt_failures<T>(4, 9, 0, false, 1) == 0);  // k = 0: Y = 0
  CHECK(gemm_nt_failures<T>(4, 9, 0, true, 1) == 0);   // Y unchanged
  std::vector<T> buf(64, T(1));
  const tensor_view<T, 2> x23(buf.data(), {2, 3}), w43(buf.data(), {4, 3}), w42(buf.data(), {4, 2}), y24(buf.data(), {2, 4});
  REQUIRE_THROWS_WITH(simd::gemm_nt<T>(x23, w42, y24), Contains("gemm_nt") && Contains("[4, 2]") && Contains("[4, 3]"));
  REQUIRE_THROWS_AS(simd::gemm_nt<T>(x23, w43, tensor_view<T, 2>(buf.data(), {2, 4}, {8, 2})), seqmix::error);
}

TEMPLATE_TEST_CASE("simd::transpose matches an index loop", "[simd]", float, double) {
  using T = TestType;
  std::mt19937 gen(5);
  std::uniform_real_distribution<double> u(-1, 1);
  // Whole 16 x 16 tiles (registers with AVX-512 floats), ragged edges, strided columns.
  for (const auto& [rows, cols, cs] : {std::array<index_t, 3>{32, 48, 1}, {37, 19, 1}, {16, 16, 2}, {5, 70, 3}, {1, 1, 1}}) {
    const index_t rs = cols * cs + 3, lds = rows + 5;
    std::vector<T> src(std::size_t(rows * rs)), dst(std::size_t(cols * lds), T(-7));
    for (auto& x : src) x = T(u(gen));
    simd::transpose(src.data(), rs, cs, dst.data(), lds, rows, cols, T(0.5));
    index_t bad = 0;
    for (index_t j = 0; j < cols; ++j)
      for (index_t i = 0; i < lds; ++i) {
        const T want = i < rows ? T(0.5) * src[std::size_t(i * rs + j * cs)] : T(-7);  // padding untouched
        bad += dst[std::size_t(j * lds + i)] != want;
      }
    INFO("rows " << rows << " cols " << cols << " cs " << cs);
    CHECK(bad == 0);
  }
}

TEST_CASE("simd::gemm shape and stride errors", "[simd]") {
  std::vector<float> buf(64, 1.0f);
  const tensor_view<float, 2> a23(buf.data(), {2, 3}), b45(buf.data(), {4, 5}), c25(buf.data(), {2, 5}),
      b35(buf.data(), {3, 5}), c35(buf.data(), {3, 5}), c24(buf.data(), {2, 4});
  REQUIRE_THROWS_AS(simd::gemm<float>(a23, b45, c25), seqmix::error);
  REQUIRE_THROWS_WITH(simd::gemm<float>(a23, b45, c25),
                      Contains("simd::gemm") && Contains("[2, 3]") && Contains("[4, 5]"));
  REQUIRE_THROWS_AS(simd::gemm<float>(a23, b35, c35), seqmix::error);
  REQUIRE_THROWS_AS(simd::gemm<float>(a23, b35, c24), seqmix::error);
  const tensor_view<float, 2> b35t(buf.data(), {3, 5}, {1, 3});  // non-unit column stride
  REQUIRE_THROWS_WITH(simd::gemm<float>(a23, b35t, c25), Contains("unit column stride"));
  REQUIRE_THROWS_AS(simd::gemm<float>(a23, b35, tensor_view<float, 2>(buf.data(), {2, 5}, {1, 2})), seqmix::error);
  // A single output column may have any column stride.
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {1, 0, 10, 0, 100, 0}, c(4, 0.0f);
  simd::gemm<float>(tensor_view<float, 2>(a.data(), {2, 3}), tensor_view<float, 2>(b.data(), {3, 1}, {2, 7}),
                    tensor_view<float, 2>(c.data(), {2, 1}, {2, 5}));
  CHECK(c == std::vector<float>{321, 0, 654, 0});
}

// The names simd/ gives to code written once for scalars and batches.
TEMPLATE_TEST_CASE("simd vload, vstore, fma, select and any over scalars and batches", "[simd]", float, double) {
  using T = TestType;
  using B = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>;
  static_assert(simd::width<T> == 1 && simd::width<B> == L);
  static_assert(simd::is_batch_v<B> && !simd::is_batch_v<T>);
  static_assert(simd::vector_registers == (sizeof(simd::batch<float>) >= 64 ? 32 : 16));
  const auto a = random_vector<T>(L, 31), b = random_vector<T>(L, 32), c = random_vector<T>(L, 33);
  std::vector<T> got(std::size_t(L) + 1, T(-5));  // got[L]: sentinel
  simd::vstore(got.data(), simd::fma(simd::vload<B>(a.data()), simd::vload<B>(b.data()), simd::vload<B>(c.data())));
  CHECK(got[std::size_t(L)] == T(-5));
  // Fused (one rounding) where the target has FMA; SSE2 and scalars round the product and the sum
  // once each: |err| <= eps/2 · (|a·b| + |exact|) in every case, checked with eps.
  constexpr double eps = std::numeric_limits<T>::epsilon();
  for (std::size_t i = 0; i < std::size_t(L); ++i) {
    const long double exact = (long double)a[i] * b[i] + c[i];
    CHECK(std::abs((long double)got[i] - exact) <= eps * (std::abs((long double)a[i] * b[i]) + std::abs(exact)));
    const T s = simd::fma(simd::vload<T>(a.data() + i), b[i], c[i]);
    CHECK(std::abs((long double)s - exact) <= eps * (std::abs((long double)a[i] * b[i]) + std::abs(exact)));
    T one = T(0);
    simd::vstore(&one, s);
    CHECK(one == s);
  }
  const B x = simd::load(a.data()), y = simd::load(b.data());
  simd::store(got.data(), simd::select(x < y, x, y));
  for (std::size_t i = 0; i < std::size_t(L); ++i) CHECK(got[i] == std::min(a[i], b[i]));
  CHECK(simd::any(x < x + B(T(1))));
  CHECK_FALSE(simd::any(x < x));
  std::vector<T> one_low(std::size_t(L), T(1));
  one_low[std::size_t(L) - 1] = T(-1);
  CHECK(simd::any(simd::load(one_low.data()) < B(T(0))));
  B p = x;
  simd::pin(p);
  simd::store(got.data(), p);
  for (std::size_t i = 0; i < std::size_t(L); ++i) CHECK(got[i] == a[i]);
}

// The constant that pre-scales decays and scores: std::numbers, the same value as the literals it
// replaced (1.44269504088896341f in float kernels, 1.4426950408889634 in double).
static_assert(std::numbers::log2e_v<float> == 1.44269504088896341f);
static_assert(std::numbers::log2e == 1.4426950408889634);
static_assert(float(std::numbers::log2e) == std::numbers::log2e_v<float>);

// Error budget, relative: float batches compute 2^(x·log2 e) (exp) with exp2_bounded (1.6e-7 = 1.35
// eps); the rounded product x·log2 e carries a relative error eps/2 into an exponent of size |x|·log2 e,
// i.e. |x|·eps/2 relatively in the result. Budget (2 + |x|)·eps, plus the smallest normal number as an
// absolute floor (AVX2 / SSE2 flush results below it to 0). 2^x directly: 2 eps. Library exp / exp2
// (doubles, scalars): within the same budgets.
TEMPLATE_TEST_CASE("simd::exp_nonpositive and exp2_nonpositive match std::exp and std::exp2", "[simd]", float,
                   double) {
  using T = TestType;
  using R = ref_t<T>;
  constexpr R eps = std::numeric_limits<T>::epsilon(), tiny = std::numeric_limits<T>::min();
  std::vector<T> x = {T(0), T(-0.0), T(-1e-30), T(-1e-6), T(-0.5), T(-1), T(-87), T(-88), T(-103), T(-149), T(-200),
                      T(-1000), T(-1e30)};  // x·log2 e must stay finite (x - round(x) of -inf is NaN)
  for (int i = 0; i < 997; ++i) x.push_back(static_cast<T>(-120.0 * ((i * 379) % 997) / 996));
  const index_t n = index_t(x.size());
  std::vector<T> e(x.size()), e2(x.size());
  simd::transform(x.data(), e.data(), n, [](const auto& v) { return simd::exp_nonpositive(v); });
  simd::transform(x.data(), e2.data(), n, [](const auto& v) { return simd::exp2_nonpositive(v); });
  index_t bad = 0, bad2 = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const R r = std::exp(R(x[i])), r2 = std::exp2(R(x[i]));
    bad += !(std::abs(e[i] - r) <= (2 + std::abs(R(x[i]))) * eps * r + tiny);
    bad2 += !(std::abs(e2[i] - r2) <= 2 * eps * r2 + tiny);
    if (i < 3) CHECK(e[i] == T(1));  // e^0 and e^-0 exactly, e^-1e-30 rounds to 1
  }
  CHECK(bad == 0);
  CHECK(bad2 == 0);
  // NaN stays NaN; a positive argument (outside the contract) saturates in batches instead of
  // wrapping the exponent.
  using B = simd::batch<T>;
  alignas(64) T out[simd::lanes<T>];
  simd::store(out, simd::exp_nonpositive(B(std::numeric_limits<T>::quiet_NaN())));
  CHECK(std::isnan(out[0]));
  simd::store(out, simd::exp2_nonpositive(B(T(1000))));
  CHECK((out[0] >= T(1e38) && !std::isnan(out[0])));
  CHECK(std::isnan(simd::exp_nonpositive(std::numeric_limits<T>::quiet_NaN())));
}

// Tolerance: each lane sum adds `lanes` terms in some tree order, |err| <= lanes · eps · Σ|terms|.
TEMPLATE_TEST_CASE("simd::row_sums and sum_lanes match scalar sums", "[simd]", float, double) {
  using T = TestType;
  using R = ref_t<T>;
  using B = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>;
  constexpr R eps = std::numeric_limits<T>::epsilon();
  const auto data = random_vector<T>(4 * L * L, 41, -2, 2);
  auto check_row = [&](T got, index_t row) {
    R sum = 0, sum_abs = 0;
    for (index_t l = 0; l < L; ++l) {
      const R t = data[std::size_t(row * L + l)];
      sum += t, sum_abs += std::abs(t);
    }
    return std::abs(R(got) - sum) <= R(L) * eps * sum_abs;
  };
  // row_sums: vectors put in reverse order, lane r holds the sum of the vector put at r.
  simd::row_sums<T> rs;
  for (index_t r = L - 1; r >= 0; --r) rs.put(r, simd::load(data.data() + r * L));
  alignas(64) T out[4 * L];
  simd::store(out, rs.sums());
  for (index_t r = 0; r < L; ++r) CHECK(check_row(out[r], r));
  // sum_lanes over a multiple of the lanes (the tree with AVX-512 float) and over other counts.
  B v[4 * L];
  for (index_t p = 0; p < 4 * L; ++p) v[p] = simd::load(data.data() + p * L);
  auto check_all = [&](index_t N) {
    index_t bad = 0;
    for (index_t p = 0; p < N; ++p) bad += !check_row(out[p], p);
    INFO("N=" << N << " lanes=" << L);
    CHECK(bad == 0);
  };
  simd::sum_lanes<4 * L>(v, out), check_all(4 * L);
  simd::sum_lanes<L>(v, out), check_all(L);
  simd::sum_lanes<3>(v, out), check_all(3);
  simd::sum_lanes<2 * L + 1>(v, out), check_all(2 * L + 1);
}
