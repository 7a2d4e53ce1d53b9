// Mamba-1 selective scan and Mamba-2 SSD ops: every policy against the double-accumulating
// reference and against each other, sequence splits, long sequences with extreme time steps,
// strided inputs, optional inputs and argument errors.
#include <seqmix/kernels/ssm/ref.hpp>
#include <seqmix/kernels/ssm/selective_scan.hpp>
#include <seqmix/kernels/ssm/ssd.hpp>

#include "problems.hpp"

using namespace seqmix;
using test::scan_problem;
using test::scan_shape;
using test::ssd_problem;
using test::ssd_shape;
namespace ss = seqmix::kernels::ssm::selective_scan;
namespace ssd = seqmix::kernels::ssm::ssd;

namespace {

// Output and final state of one policy (P = int: the reference); y starts as NaN.
template <class T, class P>
std::pair<tensor<T, 3>, tensor<T, 3>> run_scan(const P& policy, const scan_problem<T>& p) {
  auto y = test::nan_tensor<T, 3>(p.u.extents());
  tensor<T, 3> s = p.state;
  if constexpr (std::is_same_v<P, int>) ss::ref<T>(p.inputs(), y, s);
  else ss::forward(policy, p.inputs(), y, s);
  return {std::move(y), std::move(s)};
}

template <class T, class P>
std::pair<tensor<T, 4>, tensor<T, 4>> run_ssd(const P& policy, const ssd_problem<T>& p) {
  auto y = test::nan_tensor<T, 4>(p.x.extents());
  tensor<T, 4> s = p.state;
  if constexpr (std::is_same_v<P, int>) ssd::ref<T>(p.inputs(), y, s);
  else ssd::forward(policy, p.inputs(), y, s);
  return {std::move(y), std::move(s)};
}

// float: the decay exponential (~2e-7 relative) and O(N) / O(T·N) accumulations; 2e-5 of the
// RMS leaves a 10x margin. double: the algorithms agree to ~1e-14.
template <class T>
constexpr double ratio = std::is_same_v<T, float> ? 2e-5 : 1e-11;
template <class T>
constexpr double atol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

const scan_shape scan_shapes[] = {{1, 1, 16, 16, 1}, {2, 37, 48, 16, 1},  {1, 29, 64, 16, 2}, {2, 41, 96, 12, 3},
                                  {1, 2, 40, 8, 1},  {1, 100, 33, 5, 1}, {2, 3, 64, 32, 4},  {2, 2, 40, 32, 2},
                                  {1, 1, 70, 16, 7}, {2, 2, 300, 16, 3}};  // last: decode over several block groups
const ssd_shape ssd_shapes[] = {{1, 1, 2, 16, 16, 1},  {2, 37, 4, 16, 16, 2}, {1, 70, 4, 32, 32, 1},
                                {1, 97, 6, 24, 20, 3}, {2, 5, 3, 7, 9, 1},     {1, 131, 2, 64, 128, 1},
                                {1, 41, 3, 48, 16, 3},  {1, 33, 2, 20, 64, 1}};  // N = 64: rows of 4 or 8 vectors

template <class T, class P>
void scan_vs_ref(const P& policy, scan_shape s, double dlo, double dhi) {
  INFO("policy " << exec::name_of<P>() << " threads " << policy.threads);
  const scan_problem<T> p(s, dlo, dhi, 7);
  const auto [y_ref, s_ref] = run_scan<T>(0, p);
  const auto [y, st] = run_scan<T>(policy, p);
  SEQMIX_CHECK_CLOSE(y, y_ref, atol<T>, ratio<T>);
  SEQMIX_CHECK_CLOSE(st, s_ref, atol<T>, ratio<T>);
}

template <class T, class P>
void ssd_vs_ref(const P& policy, ssd_shape s, double dlo, double dhi) {
  INFO("policy " << exec::name_of<P>() << " threads " << policy.threads);
  const ssd_problem<T> p(s, dlo, dhi, 9);
  const auto [y_ref, s_ref] = run_ssd<T>(0, p);
  const auto [y, st] = run_ssd<T>(policy, p);
  SEQMIX_CHECK_CLOSE(y, y_ref, atol<T>, ratio<T>);
  SEQMIX_CHECK_CLOSE(st, s_ref, atol<T>, ratio<T>);
}

}  // namespace

TEMPLATE_TEST_CASE("selective_scan policies match the reference", "[ssm][mamba][op]", float, double) {
  for (const auto& [dlo, dhi] : {std::pair{-4.0, -1.0}, std::pair{-2.0, 2.0}, std::pair{1.0, 6.0}}) {
    for (const scan_shape& s : scan_shapes) {
      INFO("B=" << s.B << " T=" << s.T << " D=" << s.D << " N=" << s.N << " G=" << s.G << " delta in [" << dlo << ", "
                << dhi << "]");
      scan_vs_ref<TestType>(exec::recurrent{}, s, dlo, dhi);
      scan_vs_ref<TestType>(exec::chunkwise<16>{}, s, dlo, dhi);
      scan_vs_ref<TestType>(exec::chunkwise<64>{}, s, dlo, dhi);
      scan_vs_ref<TestType>(exec::parallel{}, s, dlo, dhi);
      scan_vs_ref<TestType>(exec::recurrent{2}, s, dlo, dhi);
      scan_vs_ref<TestType>(exec::chunkwise<32>{2}, s, dlo, dhi);
      scan_vs_ref<TestType>(exec::automatic{}, s, dlo, dhi);
    }
  }
}

TEMPLATE_TEST_CASE("ssd policies match the reference", "[ssm][mamba2][op]", float, double) {
  for (const auto& [dlo, dhi] : {std::pair{-4.0, -1.0}, std::pair{-2.0, 2.0}, std::pair{1.0, 6.0}}) {
    for (const ssd_shape& s : ssd_shapes) {
      INFO("B=" << s.B << " T=" << s.T << " H=" << s.H << " P=" << s.P << " N=" << s.N << " G=" << s.G
                << " dt in [" << dlo << ", " << dhi << "]");
      ssd_vs_ref<TestType>(exec::recurrent{}, s, dlo, dhi);
      ssd_vs_ref<TestType>(exec::chunkwise<16>{}, s, dlo, dhi);
      ssd_vs_ref<TestType>(exec::chunkwise<64>{}, s, dlo, dhi);
      ssd_vs_ref<TestType>(exec::parallel{}, s, dlo, dhi);
      ssd_vs_ref<TestType>(exec::recurrent{2}, s, dlo, dhi);
      ssd_vs_ref<TestType>(exec::chunkwise<32>{2}, s, dlo, dhi);
      ssd_vs_ref<TestType>(exec::automatic{}, s, dlo, dhi);
    }
  }
}

TEST_CASE("selective_scan and ssd: policies agree with each other", "[ssm][op]") {
  const scan_problem<float> p({2, 200, 80, 16, 2}, -3, 1, 11);
  const auto [y_r, s_r] = run_scan<float>(exec::recurrent{}, p);
  const auto [y_c, s_c] = run_scan<float>(exec::chunkwise<64>{}, p);
  const auto [y_p, s_p] = run_scan<float>(exec::parallel{}, p);
  SEQMIX_CHECK_CLOSE(y_c, y_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(y_p, y_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(s_c, s_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(s_p, s_r, 1e-5, 2e-5);

  const ssd_problem<float> q({2, 200, 4, 32, 64, 2}, -3, 1, 12);
  const auto [x_r, h_r] = run_ssd<float>(exec::recurrent{}, q);
  const auto [x_c, h_c] = run_ssd<float>(exec::chunkwise<64>{}, q);
  const auto [x_p, h_p] = run_ssd<float>(exec::parallel{}, q);
  SEQMIX_CHECK_CLOSE(x_c, x_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(x_p, x_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(h_c, h_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(h_p, h_r, 1e-5, 2e-5);
}

TEST_CASE("selective_scan and ssd: splitting a sequence anywhere gives the same outputs and state", "[ssm][op]") {
  const scan_problem<double> p({1, 90, 24, 8, 1}, -3, 1, 3);
  const auto [y_full, s_full] = run_scan<double>(exec::chunkwise<32>{}, p);
  const ssd_problem<double> q({1, 90, 2, 8, 8, 1}, -3, 1, 4);
  const auto [x_full, h_full] = run_ssd<double>(exec::chunkwise<32>{}, q);
  for (const index_t cut : {1, 2, 31, 32, 33, 89}) {
    INFO("cut at " << cut);
    auto y = test::nan_tensor<double, 3>(y_full.extents());
    tensor<double, 3> s = p.state;
    auto part = [&](auto policy, index_t t0, index_t n) {
      const auto in = p.inputs();
      auto r = [&](auto v) { return v.subrange(1, t0, n); };
      const ss::inputs<double> sub{r(in.u), r(in.delta), in.A, r(in.B), r(in.C), in.D, r(in.z), in.delta_bias};
      ss::forward(policy, sub, y.view().subrange(1, t0, n), s);
    };
    part(exec::recurrent{}, 0, cut);
    part(exec::parallel{}, cut, 90 - cut);
    SEQMIX_CHECK_CLOSE(y, y_full, 1e-12, 1e-12);
    SEQMIX_CHECK_CLOSE(s, s_full, 1e-12, 1e-12);

    auto x = test::nan_tensor<double, 4>(x_full.extents());
    tensor<double, 4> h = q.state;
    auto part2 = [&](auto policy, index_t t0, index_t n) {
      const auto in = q.inputs();
      auto r = [&](auto v) { return v.subrange(1, t0, n); };
      const ssd::inputs<double> sub{r(in.x), r(in.dt), in.A, r(in.B), r(in.C), in.D, in.dt_bias};
      ssd::forward(policy, sub, x.view().subrange(1, t0, n), h);
    };
    part2(exec::parallel{}, 0, cut);
    part2(exec::recurrent{}, cut, 90 - cut);
    SEQMIX_CHECK_CLOSE(x, x_full, 1e-12, 1e-12);
    SEQMIX_CHECK_CLOSE(h, h_full, 1e-12, 1e-12);
  }
}

TEST_CASE("selective_scan: T = 16384 with tiny and huge time steps stays finite and agrees", "[ssm][mamba][op][long]") {
  // Half the channels take per-step decays A·dt ≈ -1e-7 (the state barely decays over the whole
  // sequence), the other half -15 .. -240 (it resets every step). dt = softplus(delta + bias).
  const index_t T = 16384, D = 32, N = 16;
  scan_problem<float> p({1, T, D, N, 1}, 0, 0, 5, 1, 16);
  for (index_t t = 0; t < T; ++t)
    for (index_t d = 0; d < D; ++d) p.delta(0, t, d) = d % 2 ? -16.1f - p.bias(d) : 15.f - p.bias(d);
  const auto [y_ref, s_ref] = run_scan<float>(0, p);
  REQUIRE(test::all_finite(y_ref));
  const auto [y_r, s_r] = run_scan<float>(exec::recurrent{}, p);
  const auto [y_c, s_c] = run_scan<float>(exec::chunkwise<64>{}, p);
  CHECK(test::all_finite(y_r));
  CHECK(test::all_finite(y_c));
  SEQMIX_CHECK_CLOSE(y_r, y_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(y_c, y_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_r, s_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_c, s_ref, 1e-4, 1e-4);
  // The parallel form is O(T²); it is checked on the first 512 tokens.
  scan_problem<float> head = p;
  auto r = [](auto& t) { return tensor<float, 3>(t.view().subrange(1, 0, 512)); };
  head.u = r(p.u), head.delta = r(p.delta), head.z = r(p.z);
  head.B = tensor<float, 4>(p.B.view().subrange(1, 0, 512)), head.C = tensor<float, 4>(p.C.view().subrange(1, 0, 512));
  const auto [yh_ref, sh_ref] = run_scan<float>(0, head);
  const auto [yh_p, sh_p] = run_scan<float>(exec::parallel{}, head);
  SEQMIX_CHECK_CLOSE(yh_p, yh_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(sh_p, sh_ref, 1e-4, 1e-4);
}

TEST_CASE("ssd: T = 16384 with tiny and huge time steps stays finite and agrees", "[ssm][mamba2][op][long]") {
  const index_t T = 16384, H = 4;
  ssd_problem<float> p({1, T, H, 16, 16, 2}, 0, 0, 6, 1, 16);
  for (index_t t = 0; t < T; ++t)
    for (index_t h = 0; h < H; ++h) p.dt(0, t, h) = h % 2 ? -16.1f - p.dt_bias(h) : 15.f - p.dt_bias(h);
  const auto [y_ref, s_ref] = run_ssd<float>(0, p);
  REQUIRE(test::all_finite(y_ref));
  const auto [y_r, s_r] = run_ssd<float>(exec::recurrent{}, p);
  const auto [y_c, s_c] = run_ssd<float>(exec::chunkwise<64>{}, p);
  const auto [y_c2, s_c2] = run_ssd<float>(exec::chunkwise<256>{}, p);
  CHECK(test::all_finite(y_r));
  CHECK(test::all_finite(y_c));
  SEQMIX_CHECK_CLOSE(y_r, y_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(y_c, y_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(y_c2, y_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_r, s_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_c, s_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_c2, s_ref, 1e-4, 1e-4);
}

TEST_CASE("selective_scan: strided inputs, absent z / D / bias and no softplus", "[ssm][mamba][op]") {
  // u, delta, z interleaved in one buffer [B,T,3D] and B, C in [B,T,G,2N + 3], as the Mamba
  // layer's projections leave them.
  const index_t Bn = 2, T = 45, D = 48, N = 16, G = 2;
  const scan_problem<float> p({Bn, T, D, N, G}, -3, 1, 21);
  tensor<float, 3> fused({Bn, T, 3 * D});
  tensor<float, 4> bc({Bn, T, G, 2 * N + 3});
  for (index_t b = 0; b < Bn; ++b)
    for (index_t t = 0; t < T; ++t) {
      for (index_t d = 0; d < D; ++d)
        fused(b, t, d) = p.u(b, t, d), fused(b, t, D + d) = p.delta(b, t, d), fused(b, t, 2 * D + d) = p.z(b, t, d);
      for (index_t g = 0; g < G; ++g)
        for (index_t n = 0; n < N; ++n) bc(b, t, g, n) = p.B(b, t, g, n), bc(b, t, g, N + 3 + n) = p.C(b, t, g, n);
    }
  auto part = [&](index_t i) { return tensor_view<const float, 3>(fused.view().subrange(2, i * D, D)); };
  const ss::inputs<float> strided{part(0), part(1), p.A, bc.view().subrange(3, 0, N), bc.view().subrange(3, N + 3, N),
                                  p.D, part(2), p.bias};
  const auto [y_ref, s_ref] = run_scan<float>(exec::recurrent{}, p);
  auto check = [&](auto policy) {
    auto y = test::nan_tensor<float, 3>({Bn, T, D});
    tensor<float, 3> s = p.state;
    ss::forward(policy, strided, y, s);
    SEQMIX_CHECK_CLOSE(y, y_ref, 1e-6, 1e-6);
    SEQMIX_CHECK_CLOSE(s, s_ref, 1e-6, 1e-6);
  };
  check(exec::recurrent{}), check(exec::chunkwise<16>{}), check(exec::parallel{});

  // No gate, no skip, no bias, dt = delta (positive here): against the reference.
  scan_problem<double> q({1, 20, 24, 8, 1}, 0.01, 0.5, 22);
  ss::inputs<double> bare = q.inputs();
  bare.z = {}, bare.D = {}, bare.delta_bias = {};
  auto y_want = test::nan_tensor<double, 3>(q.u.extents());
  tensor<double, 3> s_want = q.state;
  ss::ref<double>(bare, y_want, s_want, {false});
  auto check_bare = [&](auto policy) {
    auto y = test::nan_tensor<double, 3>(q.u.extents());
    tensor<double, 3> s = q.state;
    ss::forward(policy, bare, y, s, {false});
    SEQMIX_CHECK_CLOSE(y, y_want, 1e-12, 1e-12);
    SEQMIX_CHECK_CLOSE(s, s_want, 1e-12, 1e-12);
  };
  check_bare(exec::recurrent{}), check_bare(exec::chunkwise<8>{}), check_bare(exec::parallel{});
  // One token, state-vectorised decode path.
  auto y1 = test::nan_tensor<double, 3>({1, 1, 24});
  tensor<double, 3> s1 = q.state, s1_want = q.state;
  auto y1_want = test::nan_tensor<double, 3>({1, 1, 24});
  auto first = [&](auto v) { return v.subrange(1, 0, 1); };
  const ss::inputs<double> one{first(bare.u), first(bare.delta), bare.A, first(bare.B), first(bare.C), {}, {}, {}};
  ss::ref<double>(one, y1_want, s1_want, {false});
  ss::forward(exec::recurrent{}, one, y1, s1, {false});
  SEQMIX_CHECK_CLOSE(y1, y1_want, 1e-12, 1e-12);
  SEQMIX_CHECK_CLOSE(s1, s1_want, 1e-12, 1e-12);
}

TEST_CASE("ssd: strided inputs, absent D / dt_bias, no softplus and a dt clamp", "[ssm][mamba2][op]") {
  // x, B, C in one conv output [B,T,H·P + 2·G·N] and dt inside a wider projection, as in Mamba2.
  const index_t Bn = 2, T = 45, H = 4, P = 16, N = 16, G = 2, width = H * P + 2 * G * N;
  const ssd_problem<float> p({Bn, T, H, P, N, G}, -3, 1, 31);
  tensor<float, 3> xbc({Bn, T, width}), proj({Bn, T, H + 5});
  for (index_t b = 0; b < Bn; ++b)
    for (index_t t = 0; t < T; ++t) {
      for (index_t h = 0; h < H; ++h) {
        proj(b, t, 5 + h) = p.dt(b, t, h);
        for (index_t i = 0; i < P; ++i) xbc(b, t, h * P + i) = p.x(b, t, h, i);
      }
      for (index_t g = 0; g < G; ++g)
        for (index_t n = 0; n < N; ++n)
          xbc(b, t, H * P + g * N + n) = p.B(b, t, g, n), xbc(b, t, H * P + G * N + g * N + n) = p.C(b, t, g, n);
    }
  const index_t st = T * width;
  const ssd::inputs<float> strided{tensor_view<const float, 4>(xbc.data(), {Bn, T, H, P}, {st, width, P, 1}),
                                   proj.view().subrange(2, 5, H),
                                   p.A,
                                   tensor_view<const float, 4>(xbc.data() + H * P, {Bn, T, G, N}, {st, width, N, 1}),
                                   tensor_view<const float, 4>(xbc.data() + H * P + G * N, {Bn, T, G, N}, {st, width, N, 1}),
                                   p.D,
                                   p.dt_bias};
  const auto [y_ref, s_ref] = run_ssd<float>(exec::recurrent{}, p);
  auto check = [&](auto policy) {
    auto y = test::nan_tensor<float, 4>({Bn, T, H, P});
    tensor<float, 4> s = p.state;
    ssd::forward(policy, strided, y, s);
    SEQMIX_CHECK_CLOSE(y, y_ref, 1e-6, 1e-6);
    SEQMIX_CHECK_CLOSE(s, s_ref, 1e-6, 1e-6);
  };
  check(exec::recurrent{}), check(exec::chunkwise<16>{}), check(exec::parallel{});

  ssd_problem<double> q({1, 20, 2, 8, 8, 1}, 0.01, 0.5, 32);
  ssd::inputs<double> bare = q.inputs();
  bare.D = {}, bare.dt_bias = {};
  const ssd::options opt{false, 0.05, 0.3};
  auto y_want = test::nan_tensor<double, 4>(q.x.extents());
  tensor<double, 4> s_want = q.state;
  ssd::ref<double>(bare, y_want, s_want, opt);
  auto check_bare = [&](auto policy) {
    auto y = test::nan_tensor<double, 4>(q.x.extents());
    tensor<double, 4> s = q.state;
    ssd::forward(policy, bare, y, s, opt);
    SEQMIX_CHECK_CLOSE(y, y_want, 1e-12, 1e-12);
    SEQMIX_CHECK_CLOSE(s, s_want, 1e-12, 1e-12);
  };
  check_bare(exec::recurrent{}), check_bare(exec::chunkwise<8>{}), check_bare(exec::parallel{});
}

TEST_CASE("selective_scan and ssd: bad arguments raise seqmix::error naming the tensor and both shapes",
          "[ssm][op][errors]") {
  const scan_problem<float> p({1, 8, 16, 4, 2}, -1, 0, 1);
  tensor<float, 3> y({1, 8, 16}), s({1, 16, 4}), bad_s({1, 16, 5});
  ss::inputs<float> in = p.inputs();
  tensor<float, 4> bad_B({1, 8, 2, 5});
  in.B = bad_B;
  REQUIRE_THROWS_WITH((ss::forward(exec::recurrent{}, in, y, s)),
                      Catch::Contains("selective_scan") && Catch::Contains("B has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((ss::forward(exec::chunkwise<16>{}, p.inputs(), y, bad_s)),
                      Catch::Contains("state has shape [1, 16, 5], expected [1, 16, 4]"));
  const scan_problem<float> odd({1, 8, 15, 4, 2}, -1, 0, 1);  // 15 channels in 2 groups
  tensor<float, 3> y15({1, 8, 15}), s15({1, 15, 4});
  REQUIRE_THROWS_WITH((ss::forward(exec::parallel{}, odd.inputs(), y15, s15)),
                      Catch::Contains("multiple of the groups"));
  const tensor_view<const float, 3> strided_u(p.u.data(), {1, 4, 16}, {128, 32, 2});
  in = p.inputs();
  in.u = strided_u, in.delta = strided_u, in.z = strided_u;
  tensor<float, 3> y4({1, 4, 16});
  tensor<float, 4> b4({1, 4, 2, 4});
  in.B = b4, in.C = b4;
  REQUIRE_THROWS_WITH((ss::forward(exec::recurrent{}, in, y4, s)), Catch::Contains("unit stride"));

  const ssd_problem<float> q({1, 8, 4, 8, 4, 2}, -1, 0, 2);
  tensor<float, 4> x_out({1, 8, 4, 8}), h({1, 4, 8, 4}), bad_h({1, 4, 4, 8});
  REQUIRE_THROWS_WITH((ssd::forward(exec::chunkwise<64>{}, q.inputs(), x_out, bad_h)),
                      Catch::Contains("ssd") && Catch::Contains("state has shape [1, 4, 4, 8], expected [1, 4, 8, 4]"));
  ssd::inputs<float> qi = q.inputs();
  tensor<float, 3> bad_dt({1, 8, 3});
  qi.dt = bad_dt;
  REQUIRE_THROWS_WITH((ssd::forward(exec::recurrent{}, qi, x_out, h)),
                      Catch::Contains("dt has shape [1, 8, 3], expected [1, 8, 4]"));
  const ssd_problem<float> q3({1, 8, 3, 8, 4, 2}, -1, 0, 2);  // 3 heads in 2 groups
  tensor<float, 4> x3({1, 8, 3, 8}), h3({1, 3, 8, 4});
  REQUIRE_THROWS_WITH((ssd::forward(exec::parallel{}, q3.inputs(), x3, h3)), Catch::Contains("multiple of the groups"));
}

TEST_CASE("selective_scan and ssd: an empty sequence leaves the state unchanged", "[ssm][op]") {
  const scan_problem<float> p({1, 0, 16, 4, 1}, -1, 0, 1);
  tensor<float, 3> y({1, 0, 16}), s = p.state;
  ss::forward(exec::recurrent{}, p.inputs(), y, s);
  ss::forward(exec::chunkwise<16>{}, p.inputs(), y, s);
  ss::forward(exec::parallel{}, p.inputs(), y, s);
  SEQMIX_CHECK_CLOSE(s, p.state, 0.0, 0.0);
  const ssd_problem<float> q({1, 0, 2, 8, 4, 1}, -1, 0, 2);
  tensor<float, 4> x({1, 0, 2, 8}), h = q.state;
  ssd::forward(exec::recurrent{}, q.inputs(), x, h);
  ssd::forward(exec::chunkwise<16>{}, q.inputs(), x, h);
  ssd::forward(exec::parallel{}, q.inputs(), x, h);
  SEQMIX_CHECK_CLOSE(h, q.state, 0.0, 0.0);
}
