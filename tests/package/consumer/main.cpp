// A minimal user of the seqmix package: one GLA step against the reference recurrence.
#include <seqmix/kernels/gla/ref.hpp>
#include <seqmix/seqmix.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace seqmix;
  tensor<float, 4> q({1, 3, 1, 4}, 0.5f), k({1, 3, 1, 4}, 0.25f), v({1, 3, 1, 4}, 1.0f), g({1, 3, 1, 4}, -0.1f);
  tensor<float, 4> o({1, 3, 1, 4}), o_ref({1, 3, 1, 4}), s({1, 1, 4, 4}), s_ref({1, 1, 4, 4});
  kernels::gla::forward(exec::chunkwise<64>{}, q, k, v, g, o, s);
  kernels::gla::ref<float>(q, k, v, g, o_ref, s_ref);
  for (index_t i = 0; i < o.size(); ++i)
    if (std::abs(o.data()[i] - o_ref.data()[i]) > 1e-6f) return 1;
  std::printf("consumer ok (%s)\n", simd::arch_name());
  return 0;
}
