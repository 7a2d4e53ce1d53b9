// Hymba op (kernels::hymba): the head combination and the output projection under every policy
// and thread count against the double reference, float and double, widths that are and are not
// multiples of the SIMD lanes; the same bits under every policy; NaN-filled outputs, strided
// inputs, y aliasing a branch, long rows of extreme magnitudes; argument errors.
#include <cmath>
#include <limits>
#include <string>

#include <seqmix/kernels/hymba/hymba.hpp>
#include <seqmix/kernels/hymba/ref.hpp>
#include <seqmix/tensor/random.hpp>

#include "support/compare.hpp"

using namespace seqmix;
namespace hy = kernels::hymba;

namespace {

template <class T>
struct problem {
  tensor<T, 3> attn, ssm;
  tensor<T, 1> n1, n2, bias;
  tensor<T, 2> w;
  hy::inputs<T> in(bool with_bias = true) const {
    return {attn, ssm, n1, n2, w, with_bias ? tensor_view<const T, 1>(bias) : tensor_view<const T, 1>()};
  }
};

template <class T>
problem<T> make_problem(index_t B, index_t L, index_t I, index_t C, unsigned seed, double scale = 1) {
  const double wb = 1 / std::sqrt(double(I));
  return {uniform_tensor<T, 3>({B, L, I}, -scale, scale, seed), uniform_tensor<T, 3>({B, L, I}, -3 * scale, scale, seed + 1),
          uniform_tensor<T, 1>({I}, 0.5, 1.5, seed + 2), uniform_tensor<T, 1>({I}, -1, 1, seed + 3),
          uniform_tensor<T, 1>({C}, -wb, wb, seed + 4), uniform_tensor<T, 2>({C, I}, -wb, wb, seed + 5)};
}

template <class T, class P>
std::pair<tensor<T, 3>, tensor<T, 3>> run(const P& policy, const problem<T>& p, bool with_bias = true) {
  auto y = test::nan_tensor<T, 3>(p.attn.extents());
  auto o = test::nan_tensor<T, 3>({p.attn.extent(0), p.attn.extent(1), p.w.extent(0)});
  hy::forward(policy, p.in(with_bias), y.view(), o.view());
  return {std::move(y), std::move(o)};
}

template <class T>
std::pair<tensor<T, 3>, tensor<T, 3>> run_ref(const problem<T>& p, bool with_bias = true) {
  auto y = test::nan_tensor<T, 3>(p.attn.extents());
  auto o = test::nan_tensor<T, 3>({p.attn.extent(0), p.attn.extent(1), p.w.extent(0)});
  auto yv = y.view(), ov = o.view();
  hy::ref(p.in(with_bias), &yv, &ov);
  return {std::move(y), std::move(o)};
}

// Tolerances: y is two norms over I plus one product per element (n = I); o adds a dot product
// over I (n = 2I).
template <class T>
void check_against_reference() {
  for (index_t I : {1, 3, 7, 16, 33, 96, 128, 1000}) {
    for (index_t L : {1, 5, 70, 130}) {
      INFO("I=" << I << " L=" << L);
      const auto p = make_problem<T>(2, L, I, 40 + I % 9, unsigned(I + L));
      const auto want = run_ref(p);
      const double ty = test::tolerance<T>(double(I)), to = test::tolerance<T>(2.0 * double(I));
      for (const bool bias : {true, false}) {
        const auto ref = bias ? want : run_ref(p, false);
        const auto r = run(exec::recurrent{}, p, bias);
        SEQMIX_CHECK_WITHIN(r.first, ref.first, ty);
        SEQMIX_CHECK_WITHIN(r.second, ref.second, to);
        // Every policy and thread count: the same bits (rows are independent; each row is computed
        // the same way whichever thread takes it).
        for (const auto& q : {run(exec::chunkwise<64>{2}, p, bias), run(exec::parallel{2}, p, bias),
                              run(exec::automatic{}, p, bias), run(exec::recurrent{2}, p, bias)}) {
          SEQMIX_CHECK_IDENTICAL(q.first, r.first);
          SEQMIX_CHECK_WITHIN(q.second, r.second, to);  // the product's row split may differ
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("hymba op: every policy against the reference, float", "[hymba][kernels]") { check_against_reference<float>(); }
TEST_CASE("hymba op: every policy against the reference, double", "[hymba][kernels]") { check_against_reference<double>(); }

TEST_CASE("hymba op: the combination alone, y aliasing a branch, strided inputs", "[hymba][kernels]") {
  const index_t B = 3, L = 9, I = 37, C = 20;
  const auto p = make_problem<float>(B, L, I, C, 5);
  const auto want = run_ref(p);
  auto y = test::nan_tensor<float, 3>(p.attn.extents());
  hy::combine(exec::parallel{2}, p.in(), y.view());
  SEQMIX_CHECK_WITHIN(y, want.first, test::tolerance<float>(I));
  // y written over the attention branch's buffer (the layer does this).
  tensor<float, 3> a2(p.attn);
  hy::inputs<float> in = p.in();
  in.attn = a2.view();
  hy::combine(exec::recurrent{}, in, a2.view());
  SEQMIX_CHECK_IDENTICAL(a2, y);
  // Branches as column slices of one wide buffer (the layer's in_proj rows): strided rows.
  tensor<float, 3> wide({B, L, 3 * I});
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t i = 0; i < I; ++i) wide(b, t, i) = p.attn(b, t, i), wide(b, t, 2 * I + i) = p.ssm(b, t, i);
  in = p.in();
  in.attn = tensor_view<const float, 3>(wide.data(), {B, L, I}, {L * 3 * I, 3 * I, 1});
  in.ssm = tensor_view<const float, 3>(wide.data() + 2 * I, {B, L, I}, {L * 3 * I, 3 * I, 1});
  auto y2 = test::nan_tensor<float, 3>(p.attn.extents());
  auto o2 = test::nan_tensor<float, 3>({B, L, C});
  hy::forward(exec::chunkwise<16>{}, in, y2.view(), o2.view());
  SEQMIX_CHECK_IDENTICAL(y2, y);
  SEQMIX_CHECK_WITHIN(o2, want.second, test::tolerance<float>(2 * I));
}

TEST_CASE("hymba op: long rows of extreme magnitudes and zero rows stay finite", "[hymba][kernels]") {
  const index_t I = 2048, C = 64;
  for (const double scale : {1e-30, 1e-3, 1e3, 1e15}) {
    INFO("scale " << scale);
    auto p = make_problem<float>(1, 70, I, C, 11, scale);
    for (index_t i = 0; i < I; ++i) p.attn(0, 3, i) = 0, p.ssm(0, 4, i) = 0;  // zero rows: eps keeps them finite
    const auto want = run_ref(p);
    const auto got = run(exec::parallel{2}, p);
    CHECK(test::all_finite(got.first));
    CHECK(test::all_finite(got.second));
    SEQMIX_CHECK_WITHIN(got.first, want.first, test::tolerance<float>(I));
    SEQMIX_CHECK_WITHIN(got.second, want.second, test::tolerance<float>(2 * I));
  }
}

TEST_CASE("hymba op: NaN inputs stay in their row", "[hymba][kernels]") {
  auto p = make_problem<float>(1, 4, 40, 8, 3);
  p.ssm(0, 2, 7) = std::numeric_limits<float>::quiet_NaN();
  const auto got = run(exec::recurrent{}, p);
  for (index_t t = 0; t < 4; ++t) {
    INFO("row " << t);
    CHECK(std::isnan(got.first(0, t, 0)) == (t == 2));
    CHECK(std::isnan(got.second(0, t, 0)) == (t == 2));
  }
}

TEST_CASE("hymba op: empty calls and bad arguments", "[hymba][kernels][errors]") {
  const auto p = make_problem<float>(2, 3, 16, 8, 1);
  tensor<float, 3> y({2, 3, 16}), o({2, 3, 8});
  const hy::inputs<float> ok = p.in();
  {  // zero tokens: nothing is read or written
    tensor<float, 3> a0({2, 0, 16}), y0({2, 0, 16}), o0({2, 0, 8});
    hy::inputs<float> in = ok;
    in.attn = a0.view(), in.ssm = a0.view();
    hy::forward(exec::recurrent{}, in, y0.view(), o0.view());
  }
  // One input of the wrong shape at a time, named with both shapes.
  const tensor<float, 3> s15({2, 3, 15});
  const tensor<float, 1> n15({15}), b9({9});
  const tensor<float, 2> w15({8, 15});
  auto rejects = [&](auto change, const std::string& message) {
    hy::inputs<float> bad = ok;
    change(bad);
    REQUIRE_THROWS_WITH(hy::forward(exec::recurrent{}, bad, y.view(), o.view()), Catch::Contains(message));
  };
  rejects([&](auto& in) { in.ssm = s15.view(); }, "hymba: ssm_out has shape [2, 3, 15], expected [2, 3, 16]");
  rejects([&](auto& in) { in.norm1 = n15.view(); }, "hymba: pre_avg_layernorm1.weight has shape [15], expected [16]");
  rejects([&](auto& in) { in.w_out = w15.view(); }, "hymba: out_proj.weight has shape [8, 15], expected [8, 16]");
  rejects([&](auto& in) { in.bias = b9.view(); }, "hymba: out_proj.bias has shape [9], expected [8]");
  tensor<float, 3> o9({2, 3, 9});
  REQUIRE_THROWS_WITH(hy::forward(exec::recurrent{}, ok, y.view(), o9.view()),
                      Catch::Contains("hymba: o has shape [2, 3, 9], expected [2, 3, 8]"));
  REQUIRE_THROWS_WITH(hy::forward(exec::parallel{0}, ok, y.view(), o.view()), Catch::Contains("threads must be at least 1"));
  const tensor_view<float, 3> ys(y.data(), {2, 3, 8}, {48, 16, 2});
  tensor<float, 3> a8({2, 3, 8});
  hy::inputs<float> in8 = ok;
  in8.attn = a8.view(), in8.ssm = a8.view();
  tensor<float, 1> n8({8});
  in8.norm1 = n8.view(), in8.norm2 = n8.view();
  REQUIRE_THROWS_WITH(hy::combine(exec::recurrent{}, in8, ys), Catch::Contains("need unit stride"));
}
