// Tests for tensor_view, tensor, the tensor_view_of concept, Eigen interop and check_shape.
#include <catch2/catch.hpp>

#include <seqmix/error.hpp>
#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/tensor/concepts.hpp>
#include <seqmix/tensor/eigen.hpp>
#include <seqmix/tensor/tensor.hpp>
#include <seqmix/tensor/view.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <new>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

using seqmix::index_t;
using seqmix::tensor;
using seqmix::tensor_view;
using Catch::Contains;
using Catch::StartsWith;

namespace {

using shape2 = std::array<index_t, 2>;
using shape3 = std::array<index_t, 3>;

/// 0, 1, 2, ... n-1 as floats.
std::vector<float> iota_buffer(index_t n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0.0f);
  return v;
}

/// A user-defined rank-2 view: what a caller's own buffer type might look like.
struct user_view {
  float* p;
  index_t e[2], s[2];
  float* data() const { return p; }
  index_t extent(std::size_t d) const { return e[d]; }
  index_t stride(std::size_t d) const { return s[d]; }
  static constexpr std::size_t rank() { return 2; }
};
/// Same, but read-only elements.
struct user_const_view {
  const float* p;
  const float* data() const { return p; }
  index_t extent(std::size_t) const { return 1; }
  index_t stride(std::size_t) const { return 1; }
  static constexpr std::size_t rank() { return 2; }
};

}  // namespace

TEST_CASE("tensor_view: strides, contiguity, indexing and pointers", "[tensor]") {
  auto buf = iota_buffer(24);
  tensor_view v(buf.data(), shape3{2, 3, 4});
  static_assert(std::is_same_v<decltype(v), tensor_view<float, 3>>);
  static_assert(decltype(v)::rank() == 3);
  CHECK(v.strides() == shape3{12, 4, 1});
  CHECK(v.size() == 24);
  CHECK_FALSE(v.empty());
  CHECK(v.is_contiguous());
  CHECK(v(1, 2, 3) == 23.0f);
  CHECK(v(0, 1, 2) == 6.0f);
  CHECK(&v(1, 0, 2) == buf.data() + 14);
  CHECK(v.ptr() == buf.data());
  CHECK(v.ptr(1) == buf.data() + 12);
  CHECK(v.ptr(1, 2) == buf.data() + 20);
  CHECK(v.ptr(1, 2, 3) == &v(1, 2, 3));

  // Axes of extent 1 may carry any stride and still count as contiguous.
  CHECK(tensor_view(buf.data(), shape2{1, 4}, shape2{999, 1}).is_contiguous());
  CHECK_FALSE(tensor_view(buf.data(), shape2{2, 4}, shape2{5, 1}).is_contiguous());
  CHECK(tensor_view<float, 2>(buf.data(), {0, 5}).empty());
  CHECK(tensor_view<float, 2>().data() == nullptr);
}

TEST_CASE("tensor_view: slice, subrange, transposed", "[tensor]") {
  auto buf = iota_buffer(24);
  const tensor_view v(buf.data(), shape3{2, 3, 4});

  const auto s1 = v.slice(1, 2);  // v[:, 2, :]
  CHECK(s1.extents() == shape2{2, 4});
  CHECK(s1.strides() == shape2{12, 1});
  CHECK(s1(1, 3) == v(1, 2, 3));
  CHECK_FALSE(s1.is_contiguous());
  const auto s0 = v.slice(0, 1);  // v[1]
  CHECK(s0.is_contiguous());
  CHECK(s0(2, 1) == v(1, 2, 1));
  CHECK(v.slice(2, 3)(1, 1) == v(1, 1, 3));

  const auto r0 = v.subrange(0, 1, 1);
  CHECK(r0.extents() == shape3{1, 3, 4});
  CHECK(r0.is_contiguous());
  CHECK(r0(0, 2, 3) == v(1, 2, 3));
  const auto r2 = v.subrange(2, 1, 2);  // v[:, :, 1:3]
  CHECK(r2.extents() == shape3{2, 3, 2});
  CHECK_FALSE(r2.is_contiguous());
  CHECK(r2(1, 2, 1) == v(1, 2, 2));

  const auto m = v.slice(0, 0);  // [3, 4]
  const auto t = seqmix::transposed(m);
  CHECK(t.extents() == shape2{4, 3});
  CHECK(t.strides() == shape2{1, 4});
  CHECK_FALSE(t.is_contiguous());
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j) CHECK(t(j, i) == m(i, j));
  t(3, 2) = -1.0f;  // writes go through to the buffer
  CHECK(buf[11] == -1.0f);
}

TEST_CASE("tensor_view: reshape and const conversion", "[tensor]") {
  auto buf = iota_buffer(24);
  const tensor_view v(buf.data(), shape3{2, 3, 4});
  const auto r = v.reshape(shape2{6, 4});
  CHECK(r.strides() == shape2{4, 1});
  CHECK(r(4, 1) == v(1, 1, 1));
  CHECK(v.reshape(std::array<index_t, 1>{24})(17) == 17.0f);
  CHECK(v.subrange(0, 1, 1).reshape(shape2{3, 4})(2, 3) == 23.0f);

  REQUIRE_THROWS_AS(v.reshape(shape2{5, 5}), seqmix::error);
  REQUIRE_THROWS_WITH(v.reshape(shape2{5, 5}), Contains("reshape") && Contains("[2, 3, 4]") && Contains("[5, 5]"));
  REQUIRE_THROWS_AS(seqmix::transposed(v.slice(0, 0)).reshape(shape2{3, 4}), seqmix::error);
  REQUIRE_THROWS_AS(v.subrange(2, 0, 2).reshape(shape2{6, 2}), seqmix::error);

  tensor_view<const float, 3> c = v;  // implicit mutable -> const
  CHECK(c.data() == v.data());
  CHECK(c.strides() == v.strides());
  CHECK(c(1, 2, 3) == 23.0f);
  static_assert(std::is_convertible_v<tensor_view<float, 2>, tensor_view<const float, 2>>);
  static_assert(!std::is_convertible_v<tensor_view<const float, 2>, tensor_view<float, 2>>);
  static_assert(!std::is_constructible_v<tensor_view<float, 2>, tensor_view<const float, 2>>);
  static_assert(!std::is_convertible_v<tensor_view<float, 2>, tensor_view<const double, 2>>);
}

TEST_CASE("tensor: alignment, zero init, fill, deep copies", "[tensor]") {
  for (index_t n : {0, 1, 3, 17, 1000}) {
    tensor<float, 1> t({n});
    REQUIRE(t.data() != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
    CHECK(t.size() == n);
    for (index_t i = 0; i < n; ++i) REQUIRE(t(i) == 0.0f);
  }
  tensor<double, 3> z({2, 3, 5});
  CHECK(reinterpret_cast<std::uintptr_t>(z.data()) % 64 == 0);
  for (index_t i = 0; i < z.size(); ++i) REQUIRE(z.data()[i] == 0.0);
  CHECK(tensor<float, 2>().size() == 0);
  REQUIRE_THROWS_AS((tensor<float, 2>({2, -1})), seqmix::error);

  tensor<float, 2> a({3, 4}, 2.5f);
  for (index_t i = 0; i < a.size(); ++i) REQUIRE(a.data()[i] == 2.5f);
  a(1, 2) = 7.0f;
  tensor<float, 2> b(a);
  CHECK(b.data() != a.data());
  CHECK(b(1, 2) == 7.0f);
  a(1, 2) = 0.0f;
  CHECK(b(1, 2) == 7.0f);
  tensor<float, 2> c({1, 1});
  c = b;
  CHECK(c.extents() == shape2{3, 4});
  b.fill(-1.0f);
  CHECK(c(1, 2) == 7.0f);
  CHECK(c(0, 0) == 2.5f);
  CHECK(reinterpret_cast<std::uintptr_t>(c.data()) % 64 == 0);

  tensor_view<float, 2> mv = c;
  tensor_view<const float, 2> cv = std::as_const(c);
  CHECK(mv.data() == c.data());
  CHECK(cv.strides() == shape2{4, 1});
}

TEST_CASE("tensor: large tensors (huge pages, coloured) are aligned, zeroed, copied and moved", "[tensor]") {
  // From 2 MiB on a tensor starts at a colour offset inside a huge-page aligned block.
  const index_t n = (index_t(3) << 20) / index_t(sizeof(float)) + 5;  // 3 MiB + 20 bytes
  std::vector<tensor<float, 1>> ts;
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back(tensor<float, 1>({n}));
    const auto a = reinterpret_cast<std::uintptr_t>(ts.back().data());
    REQUIRE(a % 64 == 0);
    const std::uintptr_t colour = a % seqmix::detail::huge_page;
    CHECK(colour % seqmix::detail::colour_step == 0);
    CHECK(colour < seqmix::detail::colours * seqmix::detail::colour_step);
    for (index_t j = 0; j < n; j += 997) REQUIRE(ts.back()(j) == 0.0f);
    REQUIRE(ts.back()(n - 1) == 0.0f);
    ts.back()(n - 1) = float(i);  // the last element is inside the allocation
  }
  tensor<float, 1> copy(ts[3]);
  CHECK(copy(n - 1) == 3.0f);
  tensor<float, 1> moved(std::move(ts[5]));
  CHECK(moved(n - 1) == 5.0f);
  ts.clear();  // every block goes back with its own alignment and offset
  CHECK(copy(n - 1) == 3.0f);
}

TEST_CASE("tensor: a moved-from tensor is empty and can be copied and assigned again", "[tensor]") {
  tensor<float, 2> a({3, 4}, 2.f);
  tensor<float, 2> b(std::move(a));
  CHECK(b.size() == 12);
  CHECK(b(2, 3) == 2.f);
  CHECK(a.size() == 0);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  CHECK(a.extents() == std::array<index_t, 2>{0, 0});
  const tensor<float, 2> copy(a);  // copying the moved-from tensor reads nothing
  CHECK(copy.size() == 0);
  tensor<float, 2> c({1, 1});
  c = std::move(b);
  CHECK(c.size() == 12);
  CHECK(b.size() == 0);  // NOLINT(bugprone-use-after-move)
  a = c;                 // a moved-from tensor takes a new value
  CHECK(a(1, 2) == 2.f);
  auto& same = c;
  c = std::move(same);  // self-move keeps the value
  CHECK(c.size() == 12);
  CHECK(c(0, 0) == 2.f);
}

TEST_CASE("tensor: copy from strided views", "[tensor]") {
  tensor<float, 2> src({3, 4});
  for (index_t i = 0; i < 12; ++i) src.data()[i] = static_cast<float>(i);
  const tensor<float, 2> t(seqmix::transposed(src.view()));
  CHECK(t.extents() == shape2{4, 3});
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j) REQUIRE(t(j, i) == src(i, j));

  const tensor<double, 2> sub(tensor_view<const float, 2>(src.view().subrange(1, 1, 2)));  // src[:, 1:3]
  CHECK(sub.extents() == shape2{3, 2});
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 2; ++j) REQUIRE(sub(i, j) == static_cast<double>(src(i, j + 1)));

  // Negative stride (a reversed axis) and a rank-3 view with a stride gap.
  const tensor<float, 1> rev(tensor_view<const float, 1>(src.data() + 11, {12}, {-1}));
  CHECK(rev(0) == 11.0f);
  CHECK(rev(11) == 0.0f);
  auto buf = iota_buffer(60);
  const tensor<float, 3> g(tensor_view(buf.data(), shape3{2, 2, 3}, shape3{30, 10, 2}));
  CHECK(g(1, 1, 2) == 44.0f);
  CHECK(g(0, 1, 1) == 12.0f);
}

TEST_CASE("tensor_view_of concept and as_view of user views", "[tensor]") {
  using seqmix::tensor_view_of;
  static_assert(tensor_view_of<user_view, float, 2>);
  static_assert(tensor_view_of<user_view, const float, 2>);
  static_assert(!tensor_view_of<user_view, float, 3>);
  static_assert(!tensor_view_of<user_view, double, 2>);
  static_assert(tensor_view_of<user_const_view, const float, 2>);
  static_assert(!tensor_view_of<user_const_view, float, 2>);
  static_assert(!tensor_view_of<int, float, 2>);
  static_assert(tensor_view_of<tensor_view<float, 3>, float, 3>);
  static_assert(tensor_view_of<tensor_view<float, 3>, const float, 3>);
  static_assert(!tensor_view_of<tensor_view<const float, 3>, float, 3>);

  auto buf = iota_buffer(24);
  const user_view u{buf.data(), {3, 4}, {1, 3}};  // column-major 3 x 4
  const auto v = seqmix::as_view<float, 2>(u);
  static_assert(std::is_same_v<decltype(v), const tensor_view<float, 2>>);
  CHECK(v.data() == buf.data());
  CHECK(v.strides() == shape2{1, 3});
  CHECK(v(2, 3) == 11.0f);
  const auto cv = seqmix::as_view<const float, 2>(u);
  CHECK(cv(1, 2) == 7.0f);
}

TEST_CASE("Eigen interop: as_matrix of strided views, as_view of matrices", "[tensor]") {
  auto buf = iota_buffer(24);
  const tensor_view full(buf.data(), shape2{4, 6});
  const tensor_view<float, 2> every2nd(buf.data() + 1, {4, 3}, {6, 2});  // columns 1, 3, 5
  auto m = seqmix::as_matrix(every2nd);
  CHECK(m.rows() == 4);
  CHECK(m.cols() == 3);
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 3; ++j) REQUIRE(m(i, j) == full(i, 2 * j + 1));
  m(2, 1) = -5.0f;
  CHECK(buf[2 * 6 + 3] == -5.0f);
  m.setZero();
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 6; ++j) REQUIRE(full(i, j) == (j % 2 == 1 ? 0.0f : static_cast<float>(6 * i + j)));
  const Eigen::MatrixXf sum_cols = seqmix::as_matrix(tensor_view<const float, 2>(full)).colwise().sum();
  CHECK(sum_cols(0, 0) == 0.0f + 6 + 12 + 18);
  const auto mt = seqmix::as_matrix(seqmix::transposed(full));
  CHECK(mt(4, 2) == full(2, 4));

  Eigen::Matrix<double, 3, 5, Eigen::RowMajor> rm;
  Eigen::MatrixXd cm(3, 5);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) rm(i, j) = cm(i, j) = 10.0 * i + j;
  const auto rv = seqmix::as_view(rm);
  const auto cv = seqmix::as_view(cm);
  static_assert(std::is_same_v<decltype(rv), const tensor_view<double, 2>>);
  CHECK(rv.strides() == shape2{5, 1});
  CHECK(cv.strides() == shape2{1, 3});
  CHECK(rv.is_contiguous());
  CHECK_FALSE(cv.is_contiguous());
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 5; ++j) REQUIRE((rv(i, j) == 10.0 * i + j && cv(i, j) == 10.0 * i + j));
  cv(2, 4) = -1.0;
  CHECK(cm(2, 4) == -1.0);
  const auto ccv = seqmix::as_view(std::as_const(cm));
  static_assert(std::is_same_v<decltype(ccv), const tensor_view<const double, 2>>);
  CHECK(ccv(1, 3) == 13.0);
}

TEST_CASE("check_shape and require messages", "[tensor]") {
  const tensor<float, 3> q({2, 37, 4});
  CHECK_NOTHROW(seqmix::check_shape("gla", "q", q.extents(), {2, 37, 4}));
  REQUIRE_THROWS_AS(seqmix::check_shape("gla", "q", q.extents(), {2, 37, 5}), seqmix::error);
  REQUIRE_THROWS_WITH(seqmix::check_shape("gla", "q", q.extents(), {2, 37, 5}),
                      "gla: q has shape [2, 37, 4], expected [2, 37, 5]");
  REQUIRE_THROWS_WITH(seqmix::check_shape("linear", "weight", std::vector<int>{3, 4}, shape3{3, 4, 1}),
                      Contains("linear") && Contains("weight") && Contains("[3, 4]") && Contains("[3, 4, 1]"));
  CHECK_NOTHROW(seqmix::check_shape("x", "y", std::vector<long>{}, std::vector<int>{}));
  CHECK(seqmix::shape_string({}) == "[]");
  // require throws exactly when the condition is false, with "<where>: <message>".
  for (const bool cond : {true, false}) {
    bool threw = false;
    try {
      seqmix::require(cond, "rmsnorm", "eps must be positive");
    } catch (const seqmix::error& e) {
      threw = true;
      CHECK(std::string(e.what()) == "rmsnorm: eps must be positive");
    }
    CHECK(threw == !cond);
  }
}

// ---- hardening: sizes that overflow or are merely absurd are seqmix::error ----

TEST_CASE("checked_mul and checked_size", "[tensor][hardening]") {
  constexpr index_t big = index_t(1) << 62, max = std::numeric_limits<index_t>::max();
  CHECK(seqmix::checked_mul(3, 4, "x") == 12);
  CHECK(seqmix::checked_mul(0, max, "x") == 0);
  CHECK(seqmix::checked_mul(max, 1, "x") == max);
  REQUIRE_THROWS_WITH(seqmix::checked_mul(big, 2, "kv_cache"), "kv_cache: size 4611686018427387904 x 2 overflows");
  REQUIRE_THROWS_WITH(seqmix::checked_mul(-1, 2, "w"), "w: negative size -1");
  CHECK(seqmix::checked_size(shape3{2, 3, 4}, "t") == 24);
  CHECK(seqmix::checked_size(std::array<index_t, 0>{}, "t") == 1);
  CHECK(seqmix::checked_size(shape3{big, big, 0}, "t") == 0);  // zero elements: no overflow
  CHECK(seqmix::checked_size(shape3{0, big, big}, "t") == 0);
  REQUIRE_THROWS_WITH(seqmix::checked_size(shape3{big, 2, 1}, "t"), "t: element count of shape [4611686018427387904, 2, 1] overflows");
  REQUIRE_THROWS_WITH(seqmix::checked_size(shape3{2, -3, 0}, "t"), "t: negative extent in shape [2, -3, 0]");
  REQUIRE_THROWS_AS(seqmix::checked_size({index_t(1) << 32, index_t(1) << 32}, "t"), seqmix::error);
}

TEST_CASE("tensor: overflowing, absurd and negative sizes", "[tensor][hardening]") {
  // 2^62 floats: the byte size overflows (this used to allocate a wrapped size and write past it).
  REQUIRE_THROWS_AS((tensor<float, 1>({index_t(1) << 62})), seqmix::error);
  REQUIRE_THROWS_WITH((tensor<float, 1>({index_t(1) << 62})), Contains("overflow"));
  REQUIRE_THROWS_AS((tensor<double, 1>({std::numeric_limits<index_t>::max()})), seqmix::error);
  REQUIRE_THROWS_WITH((tensor<float, 2>({index_t(1) << 40, index_t(1) << 40})), Contains("element count of shape") && Contains("overflows"));
  REQUIRE_THROWS_AS((tensor<float, 4>({index_t(1) << 53, 1, 1, 1 << 12})), seqmix::error);
  // Representable but absurd (4 PiB): the allocation fails, as seqmix::error, not std::bad_alloc.
  try {
    tensor<float, 1> t({index_t(1) << 50});
    FAIL("a 4 PiB tensor was allocated");
  } catch (const seqmix::error& e) {
    CHECK_THAT(e.what(), Contains("tensor: cannot allocate"));
  } catch (const std::bad_alloc&) {
    FAIL("std::bad_alloc instead of seqmix::error");
  }
  REQUIRE_THROWS_WITH((tensor<float, 2>({2, -1})), "tensor: negative extent in shape [2, -1]");
  REQUIRE_THROWS_AS((tensor<float, 3>({-4, 0, 2})), seqmix::error);
  // Zero elements with huge extents: nothing to allocate.
  const tensor<float, 3> empty({index_t(1) << 53, 0, index_t(1) << 40});
  CHECK(empty.size() == 0);
  CHECK(empty.data() != nullptr);
  CHECK(empty.view().empty());
  CHECK(empty.view().is_contiguous());
}

TEST_CASE("tensor_view: sizes are checked too", "[tensor][hardening]") {
  float x = 0;
  REQUIRE_THROWS_AS((tensor_view<float, 2>(&x, {index_t(1) << 40, index_t(1) << 40})), seqmix::error);
  REQUIRE_THROWS_AS((tensor_view<float, 2>(&x, {-1, 2})), seqmix::error);
  const tensor_view<float, 3> z(&x, {0, index_t(1) << 62, index_t(1) << 62});
  CHECK(z.size() == 0);
  CHECK(z.is_contiguous());
  const tensor_view<float, 2> strided(&x, {index_t(1) << 40, index_t(1) << 40}, {0, 0});  // a broadcast
  REQUIRE_THROWS_AS(strided.size(), seqmix::error);
  const std::array<index_t, 2> huge{index_t(1) << 40, index_t(1) << 40};
  REQUIRE_THROWS_AS((tensor_view<float, 1>(&x, {1}).reshape(huge)), seqmix::error);
}

TEST_CASE("kv_cache: sizes from a huge batch or capacity are errors", "[tensor][hardening]") {
  namespace att = seqmix::kernels::attention;
  using shape = att::kv_cache<float>::shape;
  // 2^53 sequences: the product overflows (this used to wrap into a small allocation).
  REQUIRE_THROWS_WITH(att::kv_cache<float>(shape{.batch = index_t(1) << 53, .key_heads = 8, .key_dim = 64, .value_heads = 8, .value_dim = 64}, 4096),
                      StartsWith("kv_cache: size") && Contains("overflows"));
  // Representable, absurd: an allocation failure, as seqmix::error.
  REQUIRE_THROWS_AS(att::kv_cache<float>(shape{.batch = index_t(1) << 30, .key_heads = 1, .key_dim = 64, .value_heads = 1, .value_dim = 64}, 4096),
                    seqmix::error);
  REQUIRE_THROWS_AS(att::kv_cache<float>(shape{.batch = 1, .key_heads = 1, .key_dim = 1, .value_heads = 1, .value_dim = 1},
                                         std::numeric_limits<index_t>::max()),
                    seqmix::error);
  REQUIRE_THROWS_AS(att::kv_cache<float>(shape{.batch = 1, .key_heads = 1, .key_dim = 1, .value_heads = 1, .value_dim = 1}, 64,
                                         att::mask{.window = std::numeric_limits<index_t>::max(), .sink = 0}),
                    seqmix::error);
  att::kv_cache<float> c(shape{.batch = 1, .key_heads = 1, .key_dim = 4, .value_heads = 1, .value_dim = 4}, 64);
  REQUIRE_THROWS_WITH(c.check_room("attention", std::numeric_limits<index_t>::max()), Contains("capacity 64 exceeded"));
}

TEMPLATE_TEST_CASE("attention op: B = 0 with T > 1 and T = 0 with any B do nothing", "[tensor][hardening]", seqmix::exec::recurrent,
                   seqmix::exec::chunkwise<16>, seqmix::exec::parallel, seqmix::exec::automatic) {
  namespace att = seqmix::kernels::attention;
  using shape = att::kv_cache<float>::shape;
  for (const int threads : {1, 2, 5}) {
    INFO("threads " << threads);
    TestType policy{};
    policy.threads = threads;
    // B = 0, T = 5 (divided by zero before).
    att::kv_cache<float> empty_batch(shape{.batch = 0, .key_heads = 2, .key_dim = 8, .value_heads = 2, .value_dim = 8}, 128);
    tensor<float, 4> q({0, 5, 4, 8}), k({0, 5, 2, 8}), v({0, 5, 2, 8}), o({0, 5, 4, 8});
    att::forward<TestType, float>(policy, q, k, v, o, empty_batch);
    CHECK(empty_batch.length() == 5);
    att::attend<TestType, float>(policy, q, o, empty_batch);
    CHECK(empty_batch.length() == 5);

    // T = 0 with B = 3: nothing appended, nothing attended, the output untouched.
    att::kv_cache<float> cache(shape{.batch = 3, .key_heads = 2, .key_dim = 8, .value_heads = 2, .value_dim = 8}, 128);
    tensor<float, 4> q0({3, 0, 4, 8}), k0({3, 0, 2, 8}), v0({3, 0, 2, 8}), o0({3, 0, 4, 8});
    att::forward<TestType, float>(policy, q0, k0, v0, o0, cache);
    att::attend<TestType, float>(policy, q0, o0, cache);
    CHECK(cache.length() == 0);

    // And the cache still works after both.
    tensor<float, 4> q1({3, 2, 4, 8}, 0.5f), k1({3, 2, 2, 8}, 0.25f), v1({3, 2, 2, 8}, 2.0f), o1({3, 2, 4, 8});
    att::forward<TestType, float>(policy, q1, k1, v1, o1, cache);
    CHECK(cache.length() == 2);
    for (index_t i = 0; i < o1.size(); ++i) REQUIRE(o1.data()[i] == Approx(2.0f));
  }
}
