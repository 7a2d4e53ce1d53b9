// nGPT op (spec/ngpt.md): the normalized residual update
//   h ← norm(A + lr ⊙ (B − A)),  A = norm(h), B = norm(h_m), lr = |alpha · alpha_scale|,
// norm(x) = x / ‖x‖₂ over the channels (no epsilon, as upstream; norm(0) = 0, see args.hpp), and
// the row pieces of the nGPT block: its position table (model.py's RoPE, which is not a rotation)
// and the per-head "rope, normalize, scale" of queries and keys.
//
// The update reads each row of h and h_m once from memory: the first sweep sums both squares
// (the two reductions fused), the second sums the squares of the unnormalized result and the third
// writes it; the second and third read the row again from L1 (a row of 1024 floats is 4 KiB), so
// memory sees one read of h and h_m and one write of out. The same for every policy.
#pragma once

#include <atomic>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "../common/args.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ngpt {

namespace detail {

/// One row: out = norm(A + lr ⊙ (B − A)) of h, m (C channels), lr ≥ 0 per channel; hn (if not
/// null) = A. `stream`: out is written with streaming stores (out must be stream_aligned).
/// Returns true when one of the three norms met a zero vector.
template <class T>
bool update_row(const T* h, const T* m, const T* lr, T* out, T* hn, index_t C, bool stream) {
  using V = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>;
  V sh0(T(0)), sh1(T(0)), sm0(T(0)), sm1(T(0));
  index_t i = 0;
  for (; i + 2 * L <= C; i += 2 * L) {
    const V a0 = simd::load(h + i), a1 = simd::load(h + i + L), b0 = simd::load(m + i), b1 = simd::load(m + i + L);
    sh0 = simd::fma(a0, a0, sh0), sh1 = simd::fma(a1, a1, sh1);
    sm0 = simd::fma(b0, b0, sm0), sm1 = simd::fma(b1, b1, sm1);
  }
  for (; i + L <= C; i += L) {
    const V a = simd::load(h + i), b = simd::load(m + i);
    sh0 = simd::fma(a, a, sh0), sm0 = simd::fma(b, b, sm0);
  }
  T sh = simd::reduce_add(V(sh0 + sh1)), sm = simd::reduce_add(V(sm0 + sm1));
  for (; i < C; ++i) sh += h[i] * h[i], sm += m[i] * m[i];
  const T ia = inverse_norm(sh), ib = inverse_norm(sm);

  // z = A + lr ⊙ (B − A), the same expression for vectors and the scalar tail.
  const V via(ia), vib(ib);
  auto zv = [&](index_t j) {
    const V A = simd::load(h + j) * via;
    return simd::fma(simd::load(lr + j), V(simd::load(m + j) * vib - A), A);
  };
  auto zs = [&](index_t j) {
    const T A = h[j] * ia;
    return simd::fma(lr[j], T(m[j] * ib - A), A);
  };
  V sz0(T(0)), sz1(T(0));
  i = 0;
  for (; i + 2 * L <= C; i += 2 * L) {
    const V z0 = zv(i), z1 = zv(i + L);
    sz0 = simd::fma(z0, z0, sz0), sz1 = simd::fma(z1, z1, sz1);
  }
  for (; i + L <= C; i += L) {
    const V z = zv(i);
    sz0 = simd::fma(z, z, sz0);
  }
  T sz = simd::reduce_add(V(sz0 + sz1));
  for (; i < C; ++i) {
    const T z = zs(i);
    sz += z * z;
  }
  const T iz = inverse_norm(sz);
  const V viz(iz);

  i = 0;
  if (stream)
    for (; i + L <= C; i += L) simd::store_stream(out + i, V(zv(i) * viz));
  else
    for (; i + L <= C; i += L) simd::store(out + i, V(zv(i) * viz));
  for (; i < C; ++i) out[i] = zs(i) * iz;
  if (hn) simd::transform(h, hn, C, [ia](auto x) { return x * decltype(x)(ia); });
  return !(sh != T(0) && sm != T(0) && sz != T(0));
}

}  // namespace detail

/// lr[i] = |alpha[i] · alpha_scale|, computed once per call (C values).
template <class T>
std::vector<T> learning_rate(tensor_view<const T, 1> alpha, T alpha_scale) {
  std::vector<T> lr(static_cast<std::size_t>(alpha.extent(0)));
  for (index_t i = 0; i < alpha.extent(0); ++i) lr[std::size_t(i)] = std::abs(alpha(i) * alpha_scale);
  return lr;
}

/// The update over rows with lr ≥ 0 already formed (the layer's folded learning rates); `threads`
/// splits the rows. See forward().
template <class T>
report update(int threads, tensor_view<const T, 3> h, tensor_view<const T, 3> hm, const T* lr, tensor_view<T, 3> out,
              tensor_view<T, 3>* normalized, index_t stream_min_bytes, const char* who = "ngpt") {
  const index_t L = h.extent(1), C = h.extent(2), N = checked_mul(h.extent(0), L, who);
  if (N == 0 || C == 0) return {};
  const index_t bytes = N > (index_t(1) << 62) / C / index_t(sizeof(T)) ? index_t(1) << 62 : N * C * index_t(sizeof(T));
  const bool stream_size = bytes >= stream_min_bytes;
  std::atomic<index_t> zeros{0};
  parallel_ranges(threads, N, [&](index_t begin, index_t end) {
    index_t z = 0;
    bool streamed = false;
    for (index_t n = begin; n < end; ++n) {
      const index_t b = n / L, t = n % L;
      T* o = out.ptr(b, t);
      const bool stream = stream_size && simd::stream_aligned(o);
      streamed = streamed || stream;
      z += detail::update_row(h.ptr(b, t), hm.ptr(b, t), lr, o, normalized ? normalized->ptr(b, t) : nullptr, C, stream);
    }
    if (streamed) simd::stream_fence();
    zeros += z;
  });
  return {zeros.load()};
}

/// The normalized residual update of spec/ngpt.md for h, h_m, out [B,T,C], alpha [C] (the raw
/// parameter; lr = |alpha · opt.alpha_scale|); `normalized`, when given, receives norm(h)
/// (upstream's h_normalized). out may alias h (each row is read before it is written). The same
/// for every policy; policy.threads splits the rows. Returns the count of rows that met a zero
/// vector (norm(0) = 0: such rows stay finite, see args.hpp).
template <exec::policy P, class T_ = void, class H, class T = common::element_t<T_, H>>
report forward(const P& policy, const H& h_in, common::in_view<T, 3> hm, common::in_view<T, 1> alpha,
               common::out_view<T, 3> out, options<T> opt = {}, tensor_view<T, 3>* normalized = nullptr) {
  const tensor_view<const T, 3> h = h_in;
  exec::check(policy, "ngpt");
  const pool_scope scope(policy.pool);
  check_args("ngpt", h, hm, alpha, out, normalized);
  const auto lr = learning_rate(alpha, opt.alpha_scale);
  return update(policy.threads, h, hm, lr.data(), out, normalized, opt.stream_min_bytes);
}

/// norm(h) = h / ‖h‖₂ over the channels of h, out [B,T,C] (norm(0) = 0); upstream's justnorm.
template <exec::policy P, class T_ = void, class H, class T = common::element_t<T_, H>>
void normalize(const P& policy, const H& h_in, common::out_view<T, 3> out) {
  const tensor_view<const T, 3> h = h_in;
  exec::check(policy, "ngpt::normalize");
  const pool_scope scope(policy.pool);
  check_shape("ngpt::normalize", "out", out.extents(), h.extents());
  const index_t L = h.extent(1), C = h.extent(2), N = checked_mul(h.extent(0), L, "ngpt::normalize");
  require(C <= 1 || (h.stride(2) == 1 && out.stride(2) == 1), "ngpt::normalize", "h and out need unit stride along C");
  parallel_for(policy.threads, N, [&](index_t n) {
    const T* x = h.ptr(n / L, n % L);
    const T s = inverse_norm(simd::dot(x, x, C));
    simd::transform(x, out.ptr(n / L, n % L), C, [s](auto v) { return v * decltype(v)(s); });
  });
}

// ---- the block's queries and keys ----

/// model.py's position table (get_sinusoidal_embeddings + apply_rotary_position_embeddings) as
/// one multiplier per element: with f_i = exp(2i·(−ln base)/hd) and e[2i] = sin(p f_i),
/// e[2i+1] = cos(p f_i), sin_ = e[0:hd/2], cos_ = e[hd/2:hd] (a chunk, not the even/odd split),
/// upstream's result is r[2i] = −x[2i+1]·cos_[i], r[2i+1] = x[2i]·sin_[i]. So
/// r[d] = mult[d] · x[d xor 1] with mult[2i] = −cos_[i], mult[2i+1] = sin_[i]. Returns [n, hd]
/// for positions offset .. offset + n − 1, computed in double.
template <class T>
std::vector<T> rope_table(index_t offset, index_t n, index_t hd, double base = 10000) {
  std::vector<T> mult(static_cast<std::size_t>(checked_mul(n, hd, "ngpt::rope_table")));
  std::vector<double> e(static_cast<std::size_t>(hd)), f(static_cast<std::size_t>(hd / 2));
  for (index_t i = 0; i < hd / 2; ++i) f[std::size_t(i)] = std::exp(double(2 * i) * (-std::log(base) / double(hd)));
  for (index_t t = 0; t < n; ++t) {
    const double p = double(offset + t);
    for (index_t i = 0; i < hd / 2; ++i) {
      e[std::size_t(2 * i)] = std::sin(p * f[std::size_t(i)]);
      e[std::size_t(2 * i + 1)] = std::cos(p * f[std::size_t(i)]);
    }
    T* row = mult.data() + t * hd;
    for (index_t i = 0; i < hd / 2; ++i) {
      row[2 * i] = static_cast<T>(-e[std::size_t(hd / 2 + i)]);
      row[2 * i + 1] = static_cast<T>(e[std::size_t(i)]);
    }
  }
  return mult;
}

/// One head in place: x ← scale ⊙ norm(r), r[d] = mult[d]·x[d xor 1] (rope_table). hd even.
/// Returns true when r was a zero vector (the head is then left zero).
template <class T>
bool rope_norm_head(T* x, const T* mult, const T* scale, index_t hd) {
  T s = 0;
  for (index_t i = 0; i < hd; i += 2) {
    const T r0 = mult[i] * x[i + 1], r1 = mult[i + 1] * x[i];
    x[i] = r0, x[i + 1] = r1;
    s += r0 * r0 + r1 * r1;
  }
  const T inv = inverse_norm(s);
  simd::transform(x, scale, x, hd, [inv](auto a, auto b) { return a * decltype(a)(inv) * b; });
  return !(s != T(0));
}

}  // namespace seqmix::kernels::ngpt
