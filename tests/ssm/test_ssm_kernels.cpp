// Mamba-1 selective scan and Mamba-2 SSD ops: the op suite (support/op_suite.hpp) on both
// adapters (problems.hpp), a 256-token chunk on the long SSD problem, optional inputs absent, no
// softplus, a dt clamp, and argument errors.
#include "problems.hpp"

using namespace seqmix;
using test::scan_op;
using test::ssd_op;
namespace ss = seqmix::kernels::ssm::selective_scan;
namespace ssd = seqmix::kernels::ssm::ssd;

SEQMIX_OP_SUITE(scan_op, "selective_scan", "[ssm][mamba]")
SEQMIX_OP_SUITE(ssd_op, "ssd", "[ssm][mamba2]")

TEST_CASE("ssd: chunkwise<256> on the long problem stays finite and matches the reference", "[ssm][mamba2][op][long]") {
  using suite = test::op_suite<ssd_op<float>>;
  const auto p = ssd_op<float>::make(ssd_op<float>::long_case(ssd_op<float>::long_tokens), 5);
  suite::check_long(exec::chunkwise<256>{}, p, suite::run(test::reference{}, p));
}

TEST_CASE("selective_scan: absent z / D / bias and no softplus", "[ssm][mamba][op]") {
  // dt = delta (positive here); T = 1 takes the state-vectorised decode path.
  using suite = test::op_suite<scan_op<double>>;
  for (const index_t L : {20, 1}) {
    auto p = scan_op<double>::make({1, L, 24, 8, 1, 0.01, 0.5}, 22);
    p.in.z = {}, p.in.D = {}, p.in.delta_bias = {};
    p.extra.delta_softplus = false;
    INFO("T=" << L);
    suite::check_against_reference(exec::recurrent{}, p);
    suite::check_against_reference(exec::chunkwise<8>{}, p);
    suite::check_against_reference(exec::parallel{}, p);
  }
}

TEST_CASE("ssd: absent D / dt_bias, no softplus and a dt clamp", "[ssm][mamba2][op]") {
  using suite = test::op_suite<ssd_op<double>>;
  auto p = ssd_op<double>::make({1, 20, 2, 8, 8, 1, 0.01, 0.5}, 32);
  p.in.D = {}, p.in.dt_bias = {};
  p.extra = {false, 0.05, 0.3};
  suite::check_against_reference(exec::recurrent{}, p);
  suite::check_against_reference(exec::chunkwise<8>{}, p);
  suite::check_against_reference(exec::parallel{}, p);
}

TEST_CASE("selective_scan and ssd: bad arguments raise seqmix::error naming the tensor and both shapes",
          "[ssm][op][errors]") {
  const auto p = scan_op<float>::make({1, 8, 16, 4, 2, -1, 0}, 1);
  tensor<float, 3> y({1, 8, 16}), s({1, 16, 4}), bad_s({1, 16, 5});
  ss::inputs<float> in = p.in;
  tensor<float, 4> bad_B({1, 8, 2, 5});
  in.B = bad_B;
  REQUIRE_THROWS_WITH((ss::forward(exec::recurrent{}, in, y, s)),
                      Catch::Contains("selective_scan") && Catch::Contains("B has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((ss::forward(exec::chunkwise<16>{}, p.in, y, bad_s)),
                      Catch::Contains("state has shape [1, 16, 5], expected [1, 16, 4]"));
  const auto odd = scan_op<float>::make({1, 8, 15, 4, 2, -1, 0}, 1);  // 15 channels in 2 groups
  tensor<float, 3> y15({1, 8, 15}), s15({1, 15, 4});
  REQUIRE_THROWS_WITH((ss::forward(exec::parallel{}, odd.in, y15, s15)),
                      Catch::Contains("multiple of the groups"));
  const tensor_view<const float, 3> strided_u(p.in.u.data(), {1, 4, 16}, {128, 32, 2});
  in = p.in;
  in.u = strided_u, in.delta = strided_u, in.z = strided_u;
  tensor<float, 3> y4({1, 4, 16});
  tensor<float, 4> b4({1, 4, 2, 4});
  in.B = b4, in.C = b4;
  REQUIRE_THROWS_WITH((ss::forward(exec::recurrent{}, in, y4, s)), Catch::Contains("unit stride"));

  const auto q = ssd_op<float>::make({1, 8, 4, 8, 4, 2, -1, 0}, 2);
  tensor<float, 4> x_out({1, 8, 4, 8}), h({1, 4, 8, 4}), bad_h({1, 4, 4, 8});
  REQUIRE_THROWS_WITH((ssd::forward(exec::chunkwise<64>{}, q.in, x_out, bad_h)),
                      Catch::Contains("ssd") && Catch::Contains("state has shape [1, 4, 4, 8], expected [1, 4, 8, 4]"));
  ssd::inputs<float> qi = q.in;
  tensor<float, 3> bad_dt({1, 8, 3});
  qi.dt = bad_dt;
  REQUIRE_THROWS_WITH((ssd::forward(exec::recurrent{}, qi, x_out, h)),
                      Catch::Contains("dt has shape [1, 8, 3], expected [1, 8, 4]"));
  const auto q3 = ssd_op<float>::make({1, 8, 3, 8, 4, 2, -1, 0}, 2);  // 3 heads in 2 groups
  tensor<float, 4> x3({1, 8, 3, 8}), h3({1, 3, 8, 4});
  REQUIRE_THROWS_WITH((ssd::forward(exec::parallel{}, q3.in, x3, h3)), Catch::Contains("multiple of the groups"));
}
