// nGPT op (kernels::ngpt): every policy and thread count against the double reference, float and
// double, widths that are and are not multiples of the SIMD lanes; the same bits under every policy,
// with 1 and 2 threads and with streaming stores; strided rows and an output aliasing h; the
// zero-row definition (norm(0) = 0, counted) and NaN propagation; the position table of the block
// against model.py's formulas; argument errors.
#include <cmath>
#include <limits>
#include <vector>

#include <seqmix/kernels/ngpt/ngpt.hpp>
#include <seqmix/kernels/ngpt/ref.hpp>
#include <seqmix/tensor/random.hpp>

#include "support/compare.hpp"

using namespace seqmix;
namespace ng = kernels::ngpt;

namespace {

template <class T>
struct ngpt_problem {
  tensor<T, 3> h, hm;
  tensor<T, 1> alpha;
  ng::options<T> opt;
};

// h, h_m uniform in ±1 (h with unit rows when `unit`, as nGPT hidden states are), alpha in ±0.2
// (negative values: upstream's abs()) scaled by 0.05 / base_scale.
template <class T>
ngpt_problem<T> make_problem(index_t B, index_t L, index_t C, unsigned seed) {
  ngpt_problem<T> p{uniform_tensor<T, 3>({B, L, C}, -1, 1, seed), uniform_tensor<T, 3>({B, L, C}, -1, 1, seed + 1),
                    uniform_tensor<T, 1>({C}, -0.2, 0.2, seed + 2), {}};
  p.opt.alpha_scale = T(0.05 * std::sqrt(double(C)));
  return p;
}

template <class T, class P>
tensor<T, 3> run(const P& policy, const ngpt_problem<T>& p, std::type_identity_t<tensor<T, 3>>* normalized = nullptr,
                 ng::report* rep = nullptr) {
  auto out = test::nan_tensor<T, 3>(p.h.extents());
  tensor_view<T, 3> nv = normalized ? normalized->view() : tensor_view<T, 3>();
  const auto r = ng::forward(policy, p.h, p.hm, p.alpha, out, p.opt, normalized ? &nv : nullptr);
  if (rep) *rep = r;
  return out;
}

template <class T>
tensor<T, 3> run_ref(const ngpt_problem<T>& p, std::type_identity_t<tensor<T, 3>>* normalized = nullptr, ng::report* rep = nullptr) {
  auto out = test::nan_tensor<T, 3>(p.h.extents());
  tensor_view<T, 3> nv = normalized ? normalized->view() : tensor_view<T, 3>();
  const auto r = ng::ref<T>(p.h, p.hm, p.alpha, out, p.opt, normalized ? &nv : nullptr);
  if (rep) *rep = r;
  return out;
}

template <class T>
void check_against_reference() {
  for (index_t C : {1, 3, 7, 16, 33, 64, 96, 1000, 1024}) {
    INFO("C=" << C);
    const auto p = make_problem<T>(2, 5, C, unsigned(C));
    auto n_ref = test::nan_tensor<T, 3>(p.h.extents());
    const auto want = run_ref(p, &n_ref);
    // Each output element: two sums of C squares, one of C terms, a few roundings per element.
    const double tol = test::tolerance<T>(3.0 * double(C));
    const auto base = [&] {
      auto n = test::nan_tensor<T, 3>(p.h.extents());
      auto o = run(exec::recurrent{}, p, &n);
      SEQMIX_CHECK_WITHIN(n, n_ref, tol);
      return o;
    }();
    SEQMIX_CHECK_WITHIN(base, want, tol);
    SEQMIX_CHECK_IDENTICAL(run(exec::chunkwise<64>{}, p), base);
    SEQMIX_CHECK_IDENTICAL(run(exec::chunkwise<16>{2}, p), base);
    SEQMIX_CHECK_IDENTICAL(run(exec::parallel{2}, p), base);
    SEQMIX_CHECK_IDENTICAL(run(exec::automatic{2}, p), base);
    // Every output row on the unit sphere.
    for (index_t b = 0; b < 2; ++b)
      for (index_t t = 0; t < 5; ++t) {
        double s = 0;
        for (index_t c = 0; c < C; ++c) s += double(base(b, t, c)) * base(b, t, c);
        CHECK(std::abs(std::sqrt(s) - 1) <= tol);
      }
  }
}

}  // namespace

TEST_CASE("ngpt op: every policy and thread count matches the reference (float)", "[ngpt][op]") {
  check_against_reference<float>();
}

TEST_CASE("ngpt op: every policy and thread count matches the reference (double)", "[ngpt][op]") {
  check_against_reference<double>();
}

TEST_CASE("ngpt op: streaming stores, strided rows and an output aliasing h give the same bits", "[ngpt][op]") {
  const index_t B = 3, L = 7, C = 128;
  const auto p = make_problem<float>(B, L, C, 7);
  const auto base = run(exec::recurrent{}, p);

  auto streamed = test::nan_tensor<float, 3>(p.h.extents());
  auto opt = p.opt;
  opt.stream_min_bytes = 0;
  ng::forward(exec::parallel{2}, p.h, p.hm, p.alpha, streamed, opt);
  SEQMIX_CHECK_IDENTICAL(streamed, base);

  // h and h_m as the two halves of one [B, L, 2C] buffer, out strided in a [B, L, C + 5] one.
  tensor<float, 3> fused({B, L, 2 * C}), wide({B, L, C + 5}, std::numeric_limits<float>::quiet_NaN());
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t c = 0; c < C; ++c) fused(b, t, c) = p.h(b, t, c), fused(b, t, C + c) = p.hm(b, t, c);
  const auto fv = fused.view();
  const tensor_view<const float, 3> hv = fv.subrange(2, 0, C), mv = fv.subrange(2, C, C);
  ng::forward(exec::chunkwise<64>{}, hv, mv, p.alpha, wide.view().subrange(2, 0, C), p.opt);
  const tensor<float, 3> got(wide.view().subrange(2, 0, C));
  SEQMIX_CHECK_IDENTICAL(got, base);

  tensor<float, 3> in_place(p.h);
  ng::forward(exec::recurrent{}, in_place, p.hm, p.alpha, in_place, p.opt);
  SEQMIX_CHECK_IDENTICAL(in_place, base);
}

TEST_CASE("ngpt op: zero rows normalize to zero, are counted, and stay finite; NaN propagates", "[ngpt][op][zero]") {
  const index_t C = 40;
  auto p = make_problem<float>(1, 5, C, 11);
  for (index_t c = 0; c < C; ++c) {
    p.h(0, 1, c) = 0;                   // row 1: h = 0 → out = norm(lr ⊙ norm(h_m))
    p.hm(0, 2, c) = 0;                  // row 2: h_m = 0 → out = norm((1 − lr) ⊙ norm(h))
    p.h(0, 3, c) = 0, p.hm(0, 3, c) = 0;  // row 3: both zero → out = 0
  }
  ng::report rep, rep_ref;
  const auto out = run(exec::chunkwise<64>{}, p, nullptr, &rep);
  const auto want = run_ref(p, nullptr, &rep_ref);
  CHECK(rep.zero_rows == 3);
  CHECK(rep_ref.zero_rows == 3);
  CHECK(test::all_finite(out));
  SEQMIX_CHECK_WITHIN(out, want, test::tolerance<float>(3.0 * C));
  const auto lr = ng::learning_rate<float>(p.alpha, p.opt.alpha_scale);
  double s1 = 0, s2 = 0;
  for (index_t c = 0; c < C; ++c) {
    CHECK(out(0, 3, c) == 0.f);
    s1 += double(lr[std::size_t(c)] * p.hm(0, 1, c)) * (lr[std::size_t(c)] * p.hm(0, 1, c));
    s2 += double((1 - lr[std::size_t(c)]) * p.h(0, 2, c)) * ((1 - lr[std::size_t(c)]) * p.h(0, 2, c));
  }
  for (index_t c = 0; c < C; ++c) {
    CHECK(std::abs(out(0, 1, c) - lr[std::size_t(c)] * p.hm(0, 1, c) / std::sqrt(s1)) <= 1e-6);
    CHECK(std::abs(out(0, 2, c) - (1 - lr[std::size_t(c)]) * p.h(0, 2, c) / std::sqrt(s2)) <= 1e-6);
  }

  // lr = 1 and h_m = 0: the sum before the last norm is zero → zero row, counted.
  auto q = make_problem<float>(1, 1, C, 12);
  q.opt.alpha_scale = 1;
  for (index_t c = 0; c < C; ++c) q.alpha(c) = -1, q.hm(0, 0, c) = 0;
  run(exec::recurrent{}, q, nullptr, &rep);
  CHECK(rep.zero_rows == 1);

  // A NaN in h is never turned into a finite row.
  auto r = make_problem<float>(1, 2, C, 13);
  r.h(0, 1, 5) = std::numeric_limits<float>::quiet_NaN();
  const auto nan_out = run(exec::recurrent{}, r);
  for (index_t c = 0; c < C; ++c) CHECK(std::isnan(nan_out(0, 1, c)));
  for (index_t c = 0; c < C; ++c) CHECK(std::isfinite(nan_out(0, 0, c)));

  // normalize(): the same definition.
  tensor<float, 3> n({1, 5, C});
  ng::normalize(exec::recurrent{}, p.h, n);
  for (index_t c = 0; c < C; ++c) CHECK(n(0, 1, c) == 0.f);
}

TEST_CASE("ngpt op: empty inputs do nothing", "[ngpt][op]") {
  const auto p = make_problem<float>(2, 0, 16, 3);
  tensor<float, 3> out({2, 0, 16});
  CHECK(ng::forward(exec::parallel{2}, p.h, p.hm, p.alpha, out, p.opt).zero_rows == 0);
}

TEST_CASE("ngpt op: bad shapes, strides and thread counts raise seqmix::error", "[ngpt][op][errors]") {
  const auto p = make_problem<float>(2, 3, 16, 5);
  tensor<float, 3> out({2, 3, 16}), bad({2, 4, 16});
  REQUIRE_THROWS_WITH(ng::forward(exec::recurrent{}, p.h, bad, p.alpha, out),
                      Catch::Contains("ngpt: h_m has shape [2, 4, 16], expected [2, 3, 16]"));
  REQUIRE_THROWS_WITH(ng::forward(exec::recurrent{}, p.h, p.hm, p.alpha, bad),
                      Catch::Contains("ngpt: out has shape [2, 4, 16], expected [2, 3, 16]"));
  tensor<float, 1> a8({8});
  REQUIRE_THROWS_WITH(ng::forward(exec::recurrent{}, p.h, p.hm, a8, out),
                      Catch::Contains("ngpt: alpha has shape [8], expected [16]"));
  tensor<float, 3> wide({2, 3, 32});
  const tensor_view<const float, 3> strided(wide.data(), {2, 3, 16}, {96, 32, 2});
  REQUIRE_THROWS_WITH(ng::forward(exec::recurrent{}, strided, p.hm, p.alpha, out), Catch::Contains("unit stride"));
  REQUIRE_THROWS_WITH(ng::forward(exec::chunkwise<64>{0}, p.h, p.hm, p.alpha, out), Catch::Contains("threads"));
}

TEST_CASE("ngpt op: the block's position table is model.py's", "[ngpt][rope]") {
  // model.py: div_term = exp(arange(0, hd, 2) · −ln(10000)/hd); emb[:, 0::2] = sin(p·div),
  // emb[:, 1::2] = cos(p·div); sin, cos = emb.chunk(2); x_rot = stack(−x[1::2], x[::2]) · stack(cos, sin).
  const index_t hd = 12, P = 5, n = 4;
  const auto mult = ng::rope_table<double>(P, n, hd);
  std::vector<double> x(hd), scale(hd, 1.0);
  for (index_t d = 0; d < hd; ++d) x[std::size_t(d)] = 0.1 * double(d + 1) * (d % 3 == 0 ? -1 : 1);
  for (index_t t = 0; t < n; ++t) {
    std::vector<double> emb(hd), want(hd);
    for (index_t i = 0; i < hd / 2; ++i) {
      const double div = std::exp(double(2 * i) * -(std::log(10000.0) / double(hd)));
      emb[std::size_t(2 * i)] = std::sin(double(P + t) * div), emb[std::size_t(2 * i + 1)] = std::cos(double(P + t) * div);
    }
    double s = 0;
    for (index_t i = 0; i < hd / 2; ++i) {
      const double sn = emb[std::size_t(i)], cs = emb[std::size_t(hd / 2 + i)];
      want[std::size_t(2 * i)] = -x[std::size_t(2 * i + 1)] * cs;
      want[std::size_t(2 * i + 1)] = x[std::size_t(2 * i)] * sn;
      s += want[std::size_t(2 * i)] * want[std::size_t(2 * i)] + want[std::size_t(2 * i + 1)] * want[std::size_t(2 * i + 1)];
    }
    std::vector<double> got = x;
    CHECK_FALSE(ng::rope_norm_head(got.data(), mult.data() + t * hd, scale.data(), hd));
    for (index_t d = 0; d < hd; ++d) CHECK(std::abs(got[std::size_t(d)] - want[std::size_t(d)] / std::sqrt(s)) <= 1e-14);
  }
}
