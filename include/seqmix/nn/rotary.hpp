// Rotary position embedding (RoPE). Two conventions:
//   half_split  (GPT-NeoX / Llama / fla, rotate_half): dims i and i + dim/2 form a pair;
//   interleaved (GPT-J / DIFF Transformer): dims 2i and 2i + 1 form a pair.
// Pair i at position p is rotated by the angle p · θ^(−2i/dim):
//   out_a = a·cos − b·sin,   out_b = a·sin + b·cos.
// Angles and their cos/sin are computed in double (then rounded to T), so positions far into a
// long context lose no accuracy.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../policy/threads.hpp"
#include "../simd/math.hpp"
#include "../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

enum class rope_layout { half_split, interleaved };

template <class T>
struct rotary {
  index_t dim = 0;  ///< rotated dims per head (even, at most the head dim; later dims pass unchanged)
  double theta = 10000;
  rope_layout layout = rope_layout::half_split;

  /// cos and sin of every pair for positions [offset, offset + n): two [n, dim/2] tables. Exact
  /// double cos/sin every 32 positions, rotated forward by the angle step in between (error
  /// ~1e-15, far below float rounding), so a prompt costs O(n·dim) multiplies, not n·dim/2 sincos.
  void tables(index_t offset, index_t n, std::vector<T>& cos, std::vector<T>& sin) const {
    const index_t half = dim / 2;
    cos.resize(static_cast<std::size_t>(n * half)), sin.resize(cos.size());
    for (index_t i = 0; i < half; ++i) {
      const double f = std::pow(theta, -2.0 * double(i) / double(dim)), cf = std::cos(f), sf = std::sin(f);
      double c = 0, s = 0;
      for (index_t t = 0; t < n; ++t) {
        if (t % 32 == 0) {
          const double a = double(offset + t) * f;
          c = std::cos(a), s = std::sin(a);
        } else {
          const double c1 = c * cf - s * sf;
          s = s * cf + c * sf, c = c1;
        }
        cos[std::size_t(t * half + i)] = static_cast<T>(c);
        sin[std::size_t(t * half + i)] = static_cast<T>(s);
      }
    }
  }

  /// Rotates x [B, L, H, D] in place (unit stride along D, D >= dim); token t is at position
  /// offset + t. `who` names the caller in errors.
  void apply(tensor_view<T, 4> x, index_t offset, const char* who = "rotary", int threads = 1) const {
    std::vector<T> c, s;
    tables(offset, x.extent(1), c, s);
    apply(x, c, s, who, threads);
  }

  /// As above with tables() made by the caller for x's L positions (shared by q and k).
  void apply(tensor_view<T, 4> x, const std::vector<T>& c, const std::vector<T>& s, const char* who = "rotary",
             int threads = 1) const {
    const index_t B = x.extent(0), L = x.extent(1), H = x.extent(2), D = x.extent(3), half = dim / 2;
    require(dim % 2 == 0 && dim > 0 && dim <= D, who,
            "rotary dim " + std::to_string(dim) + " must be even, positive and at most the head dim " + std::to_string(D));
    require(D <= 1 || x.stride(3) == 1, who, "rotary input needs unit stride along the head dim");
    require(index_t(c.size()) >= L * half && index_t(s.size()) >= L * half, who, "rotary tables are too short");
    if (L == 0) return;
    parallel_ranges(L * H * B >= 4096 ? threads : 1, B * L, [&](index_t begin, index_t end) {
      for (index_t bt = begin; bt < end; ++bt) {
        const index_t b = bt / L, t = bt % L;
        const T* ct = c.data() + t * half;
        const T* st = s.data() + t * half;
        for (index_t h = 0; h < H; ++h) rotate(x.ptr(b, t, h), ct, st);
      }
    });
  }

  /// Rotates one head row by the tables' row (cos, sin of dim/2 pairs).
  void rotate(T* row, const T* c, const T* s) const {
    const index_t half = dim / 2;
    if (layout == rope_layout::half_split) {
      T* a = row;
      T* b = row + half;
      index_t i = 0;
      for (; i + simd::lanes<T> <= half; i += simd::lanes<T>) {
        const auto x1 = simd::load(a + i), x2 = simd::load(b + i), cv = simd::load(c + i), sv = simd::load(s + i);
        simd::store(a + i, x1 * cv - x2 * sv);
        simd::store(b + i, x1 * sv + x2 * cv);
      }
      for (; i < half; ++i) {
        const T x1 = a[i], x2 = b[i];
        a[i] = x1 * c[i] - x2 * s[i], b[i] = x1 * s[i] + x2 * c[i];
      }
    } else {
      for (index_t i = 0; i < half; ++i) {
        const T x1 = row[2 * i], x2 = row[2 * i + 1];
        row[2 * i] = x1 * c[i] - x2 * s[i], row[2 * i + 1] = x1 * s[i] + x2 * c[i];
      }
    }
  }
};

}  // namespace seqmix::nn
