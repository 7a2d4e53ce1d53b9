// The fused attention block behind the chunkwise and recurrent policies: a block of query rows
// walks the cache in key tiles with an online softmax, so no score matrix larger than
// rows x tile is ever formed. Per key tile:
//   1. scores: S = Q·Kᵀ for MR rows x KT keys in registers (Q pre-scaled by scale·log2 e, K read
//      from the cache's transposed blocks), masked only on tiles the mask cuts;
//   2. online softmax: running max m (moved lazily), P = 2^(S - m), running sums l;
//   3. every two key tiles: O = alpha·O + P1·V1 + P2·V2 for MR rows x 4 vectors of value columns
//      in registers (one O load and store per 128 keys with AVX-512).
// Steps 1-2 run over every row group for a key tile, so the key tile stays in L1 for the scores;
// step 3 then runs over every row group for both tiles. See docs/attention.md.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <numbers>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../simd/batch.hpp"
#include "../../simd/bf16.hpp"
#include "../../simd/math.hpp"
#include "../../simd/softmax.hpp"
#include "../../simd/vec.hpp"
#include "cache.hpp"
#include "common.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention::detail {

// Register budget: 32 vector registers with AVX-512, 16 with AVX2 / SSE2. Scores keep
// MR x NV accumulators + NV key vectors + 1 broadcast; P·V keeps MR x NO + NO + 1.
using simd::vector_registers;
inline constexpr index_t tile_rows = vector_registers >= 32 ? 4 : 2;  // MR
inline constexpr index_t score_vectors = 4;                            // NV: key tile = 4 vectors
inline constexpr index_t out_vectors = vector_registers >= 32 ? 4 : 2;  // NO

// simd::pin keeps a tile's vectors in registers (see there).
using simd::pin;

// Prefetches n elements from p (one per 64-byte line) into L2, for reading or writing. An asm
// statement: GCC 12 deletes loops whose only effect is a prefetch builtin or intrinsic when they
// sit in a callback like the one flash_run passes to attend().
template <class T>
inline void prefetch_rows(const T* p, index_t n, bool write) {
  for (index_t i = 0; i < n; i += 64 / index_t(sizeof(T))) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (write) asm volatile("prefetchw %0" : : "m"(p[i]));
    else asm volatile("prefetcht1 %0" : : "m"(p[i]));
#else
    if (write) __builtin_prefetch(p + i, 1, 2);
    else __builtin_prefetch(p + i, 0, 2);
#endif
  }
}

// Prefetches the line holding p into L1 for writing (asm, see prefetch_rows).
template <class T>
inline void prefetch_l1(const T* p) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm volatile("prefetchw %0" : : "m"(*p));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

// A bf16 cache's walk prefetches the next block's key row (and value row) into L2 as it reads the
// current one: one block of a head follows the other in memory, so the line is `ahead` elements on.
// An address hint only (never dereferenced, also past the end). See docs/attention.md.
template <class S>
inline void prefetch_next_block(const S* p, index_t ahead) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm volatile("prefetcht1 (%0)" : : "r"(reinterpret_cast<std::uintptr_t>(p) + std::uintptr_t(ahead) * sizeof(S)));
#else
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) + std::uintptr_t(ahead) * sizeof(S)), 0, 2);
#endif
}

enum class visibility { none, partial, full };

// 0, 1, 2, ...: lane indices of a key tile, compared with the mask bounds.
template <class T>
inline const T* lane_index() {
  alignas(64) static const auto table = [] {
    std::array<T, block_keys> a{};
    for (index_t i = 0; i < block_keys; ++i) a[std::size_t(i)] = T(i);
    return a;
  }();
  return table.data();
}

// Visibility of keys with positions in [klo, khi] (all slots valid if `dense`) from query rows with
// positions in [pa, pb].
inline visibility classify(index_t klo, index_t khi, bool dense, index_t pa, index_t pb, const mask& m) {
  if (khi < klo || klo > pb) return visibility::none;
  if (m.window > 0 && pa - khi >= m.window && klo >= m.sink) return visibility::none;
  if (dense && khi <= pa && (m.window <= 0 || pb - klo < m.window || khi < m.sink)) return visibility::full;
  return visibility::partial;
}

// T: the compute type (queries, scores, outputs); Store: the cache's storage type (T, or bf16 for
// T = float: key and value vectors are widened as they are loaded).
template <class T, class Store = T>
class flash_block {
 public:
  static constexpr index_t L = simd::lanes<T>, KT = score_vectors * L, MR = tile_rows;
  static constexpr index_t KP = 2 * KT;  // p row: the two key tiles of one P·V pass

  flash_block(index_t max_rows, index_t max_segments, index_t Dk, index_t Dv)
      : Dk_(Dk), Dv_(Dv), keys_of_(size(max_segments)), q_(size(max_rows * Dk)), o_(size(max_rows * Dv)), m_(size(max_rows)),
        l_(size(max_rows * L)), p_(size(max_rows * KP)), alpha_(size(max_rows)), pos_(size(max_rows)),
        keys_(size(2 * ((max_rows + MR - 1) / MR + max_segments))), fresh_(keys_.size()) {}

  /// Starts a block of `rows` query rows in `segments` equal segments, one per key head (rows of
  /// segment s read key head kh0 + s; all share the value head); fill them with set_row().
  void begin(index_t rows, index_t segments = 1) {
    rows_ = rows, segments_ = segments, seg_rows_ = rows / segments;
    std::fill_n(fresh_.begin(), fresh_.size(), 1);  // O rows are written, not accumulated, on their first tile
    std::fill_n(l_.begin(), rows * L, T(0));
    std::fill_n(m_.begin(), rows, simd::online_row<T>::initial_max);
    slot_ = 0;
  }
  /// Row r: query q_row (unit stride) times `qscale` (= scale·log2 e), at absolute position p.
  /// Every segment holds the same positions, in non-decreasing order.
  void set_row(index_t r, const T* q_row, T qscale, index_t p) {
    simd::transform(q_row, q_.data() + r * Dk_, Dk_, [qscale](auto x) { return x * qscale; });
    pos_[std::size_t(r)] = p;
  }

  /// Attends every row to the cache's keys of (b, key head kh0 + segment) and values of value
  /// head vh, as the cache stands with `len` tokens. After key block i of n it calls
  /// between(i, n) (the caller's prefetches for what comes next).
  template <class Between = void (*)(index_t, index_t)>
  void attend(const kv_cache<Store>& c, index_t b, index_t kh0, index_t vh, index_t len, const mask& m,
              Between&& between = [](index_t, index_t) {}) {
    if (rows_ == 0) return;
    const index_t pa = pos_[0], pb = pos_[std::size_t(seg_rows_ - 1)];
    index_t kpos[block_keys];
    for (index_t blk = 0, nb = c.used_blocks(len); blk < nb; between(blk++, nb)) {
      const block_span sp = c.span(blk, len);
      if (classify(sp.lo, sp.hi, sp.dense, pa, pb, m) == visibility::none) continue;
      if (!sp.dense)  // ring blocks: per-slot positions
        for (index_t i = 0; i < block_keys; ++i) kpos[i] = c.position(blk * block_keys + i, len);
      for (index_t sg = 0; sg < segments_; ++sg) keys_of_[std::size_t(sg)] = c.key_block(b, kh0 + sg, blk);
      const Store* V = c.value_block(b, vh, blk);
      for (index_t c0 = 0; c0 < block_keys; c0 += KT) {
        // The tile's key positions: lo + i when dense (consecutive, all valid), else kpos.
        index_t lo = sp.lo + c0, hi = lo + KT - 1;
        bool valid = true, dense = sp.dense;
        if (!dense) {
          lo = std::numeric_limits<index_t>::max(), hi = -1, dense = true;
          for (index_t i = c0; i < c0 + KT; ++i) {
            if (kpos[i] < 0) valid = false;
            else lo = std::min(lo, kpos[i]), hi = std::max(hi, kpos[i]);
            dense = dense && kpos[i] == kpos[c0] + (i - c0) && kpos[i] >= 0;
          }
        }
        if (hi >= 0 && classify(lo, hi, valid, pa, pb, m) != visibility::none)
          tile(c0, V + c0 * Dv_, dense ? nullptr : kpos + c0, lo, hi, valid, m);
      }
    }
    if (slot_ == 1) flush(1);
  }

  /// Writes row r's output (numerators / sums) to out (unit stride, Dv elements).
  void store_row(index_t r, T* out) const {
    const T sum = simd::reduce_add(simd::load(l_.data() + r * L));
    if (!(sum > T(0))) {  // no visible key (cannot happen causally)
      std::fill_n(out, Dv_, T(0));
      return;
    }
    const T inv = T(1) / sum;
    simd::transform(o_.data() + r * Dv_, out, Dv_, [inv](auto x) { return x * inv; });
  }

 private:
  static std::size_t size(index_t n) { return static_cast<std::size_t>(std::max<index_t>(n, 1)); }

  // Row group g: rows [r0, r0 + nr) of one segment.
  std::pair<index_t, index_t> group(index_t g) const {
    const index_t per = (seg_rows_ + MR - 1) / MR, r = (g % per) * MR;
    return {(g / per) * seg_rows_ + r, std::min(MR, seg_rows_ - r)};
  }

  // One key tile at column c0 of the current blocks: K [Dk][block_keys] per segment, V [KT][Dv];
  // key i is at position lo + i, or kpos[i] when kpos is given (-1: empty slot). A row group the
  // tile's end cuts off causally only computes the key vectors up to its last visible key.
  void tile(index_t c0, const Store* V, const index_t* kpos, index_t lo, index_t hi, bool valid, const mask& m) {
    const index_t per = (seg_rows_ + MR - 1) / MR, groups = per * segments_, slot = slot_;
    for (index_t g = 0; g < groups; ++g) {
      const auto rows = group(g);  // not a structured binding: lambdas below capture r0
      const index_t r0 = rows.first, nr = rows.second;
      const index_t pb = pos_[std::size_t(r0 + nr - 1)];
      const Store* K = keys_of_[std::size_t(g / per)] + c0;
      const visibility vis = classify(lo, hi, valid, pos_[std::size_t(r0)], pb, m);
      keys_[std::size_t(2 * g + slot)] = 0;
      if (vis == visibility::none) {
        if (slot == 0) std::fill_n(alpha_.begin() + r0, nr, T(1));
        continue;
      }
      const index_t nv = kpos || vis == visibility::full ? score_vectors : std::min(score_vectors, (pb - lo) / L + 1);
      keys_[std::size_t(2 * g + slot)] = nv * L;
      with_rows(nr, [&]<index_t R>(std::integral_constant<index_t, R>) {
        with_vectors(nv, [&]<index_t NV>(std::integral_constant<index_t, NV>) {
          if (slot == 0) scores<R, NV, 0>(r0, K, kpos, lo, vis, m);
          else scores<R, NV, 1>(r0, K, kpos, lo, vis, m);
        });
      });
    }
    V_[std::size_t(slot)] = V;
    if (slot == 1) flush(2);
    else slot_ = 1;
  }

  // P·V of the tiles held in p_ (slots [0, n)): one O load and store per row group for both.
  void flush(index_t n) {
    const index_t per = (seg_rows_ + MR - 1) / MR, groups = per * segments_;
    for (index_t g = 0; g < groups; ++g) {
      const index_t nk0 = keys_[std::size_t(2 * g)], nk1 = n > 1 ? keys_[std::size_t(2 * g + 1)] : 0;
      if (nk0 + nk1 == 0) continue;
      const auto rows = group(g);  // not a structured binding: the lambda captures r0
      const index_t r0 = rows.first, nr = rows.second;
      with_rows(nr, [&]<index_t R>(std::integral_constant<index_t, R>) { values<R>(r0, nk0, nk1, fresh_[std::size_t(g)]); });
      fresh_[std::size_t(g)] = 0;
    }
    slot_ = 0;
  }

  template <class F>
  static void with_rows(index_t n, F&& f) {
    if constexpr (MR >= 4) {
      if (n == 4) return f(std::integral_constant<index_t, 4>{});
      if (n == 3) return f(std::integral_constant<index_t, 3>{});
    }
    if (n == 2) return f(std::integral_constant<index_t, 2>{});
    f(std::integral_constant<index_t, 1>{});
  }

  template <class F>
  static void with_vectors(index_t n, F&& f) {
    static_assert(score_vectors == 4);
    if (n == 4) return f(std::integral_constant<index_t, 4>{});
    if (n == 3) return f(std::integral_constant<index_t, 3>{});
    if (n == 2) return f(std::integral_constant<index_t, 2>{});
    f(std::integral_constant<index_t, 1>{});
  }

  // Scores of rows [r0, r0 + R) on the tile's first NV key vectors, masked when the tile is cut,
  // then the online-softmax update of those rows (p of the NV·L keys).
  template <index_t R, index_t NV, index_t S>
  [[gnu::noinline]] void scores(index_t r0, const Store* K, const index_t* kpos, index_t lo, visibility vis, const mask& m) {
    simd::batch<T> acc[R][NV];
    SEQMIX_UNROLL for (index_t r = 0; r < R; ++r)
      SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) acc[r][v] = simd::batch<T>(T(0));
    const T* q = q_.data() + r0 * Dk_;
    for (index_t d = 0; d < Dk_; ++d) {
      simd::batch<T> kv[NV];
      SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) kv[v] = simd::load_as<T>(K + d * block_keys + v * L), pin(kv[v]);
      if constexpr (!std::is_same_v<Store, T>) prefetch_next_block(K + d * block_keys, Dk_ * block_keys);
      SEQMIX_UNROLL for (index_t r = 0; r < R; ++r) {
        const simd::batch<T> a(q[r * Dk_ + d]);
        SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) acc[r][v] = simd::fma(a, kv[v], acc[r][v]);
      }
    }
    if (vis == visibility::partial) {
      const simd::batch<T> masked(simd::online_row<T>::masked);
      SEQMIX_UNROLL for (index_t r = 0; r < R; ++r) {  // unrolled: a runtime row index would keep acc in memory
        const index_t p = pos_[std::size_t(r0 + r)];
        if (kpos) {  // ring tile: per-slot positions
          alignas(64) T s[KT];
          SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) simd::store(s + v * L, acc[r][v]);
          for (index_t i = 0; i < NV * L; ++i)
            if (!m.sees(p, kpos[i])) s[i] = simd::online_row<T>::masked;
          SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) acc[r][v] = simd::load(s + v * L);
          continue;
        }
        // Dense tile: key i (position lo + i) is visible iff i <= p - lo and, with a window,
        // i >= p - lo - W + 1 or i < sink - lo. Bounds clamped to [-1, KT] are exact in T.
        auto bound = [](index_t x) { return T(std::clamp<index_t>(x, -1, KT)); };
        const simd::batch<T> last(bound(p - lo)), first(m.window > 0 ? bound(p - lo - m.window + 1) : T(-1)),
            sink(bound(m.sink - lo));
        SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) {
          const simd::batch<T> i = simd::load(lane_index<T>() + v * L);
          acc[r][v] = simd::select((i <= last) & ((i >= first) | (i < sink)), acc[r][v], masked);
        }
      }
    }
    SEQMIX_UNROLL for (index_t r = 0; r < R; ++r) {
      const index_t row = r0 + r;
      simd::batch<T> x[NV];  // a copy: a reference to acc[r] would keep acc on the stack too
      SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) x[v] = acc[r][v];
      T* p = p_.data() + row * KP;
      const T a = simd::online_softmax_update<NV, T>(x, m_[std::size_t(row)], l_.data() + row * L, p + S * KT);
      if constexpr (S == 0) alpha_[std::size_t(row)] = a;
      else if (a != T(1)) {  // the max moved: the first tile's p (and O, through alpha) use the old one
        alpha_[std::size_t(row)] *= a;
        const simd::batch<T> av(a);
        SEQMIX_UNROLL for (index_t v = 0; v < score_vectors; ++v) simd::store(p + v * L, simd::load(p + v * L) * av);
      }
    }
  }

  // O[r0 .. r0+R) = alpha·O + P·V over the value columns, for the first nk0 keys of the tile in
  // slot 0 and the first nk1 of the tile in slot 1.
  template <index_t R>
  void values(index_t r0, index_t nk0, index_t nk1, bool fresh) {
    index_t j = 0;
    for (; j + out_vectors * L <= Dv_; j += out_vectors * L) values_tile<R, out_vectors>(r0, j, nk0, nk1, fresh);
    for (; j + L <= Dv_; j += L) values_tile<R, 1>(r0, j, nk0, nk1, fresh);
    for (; j < Dv_; ++j)
      for (index_t r = 0; r < R; ++r) {
        const index_t row = r0 + r;
        T acc = fresh ? T(0) : o_[std::size_t(row * Dv_ + j)] * alpha_[std::size_t(row)];
        for (index_t s = 0; s < 2; ++s)
          for (index_t i = 0; i < (s ? nk1 : nk0); ++i)
            acc += p_[std::size_t(row * KP + s * KT + i)] * from_storage<T>(V_[std::size_t(s)][i * Dv_ + j]);
        o_[std::size_t(row * Dv_ + j)] = acc;
      }
  }

  template <index_t R, index_t NO>
  [[gnu::noinline]] void values_tile(index_t r0, index_t j, index_t nk0, index_t nk1, bool fresh) {
    simd::batch<T> acc[R][NO];
    T* o = o_.data() + r0 * Dv_ + j;
    const T* p = p_.data() + r0 * KP;
    // The O rows the next call reads (this group's next column slab, else the next group's first)
    // come from L2: fetch them into L1 now, ~1000 FMA cycles ahead.
    const index_t next = j + 2 * NO * L <= Dv_ ? r0 * Dv_ + j + NO * L : (r0 + R) * Dv_;
    if (next + R * Dv_ <= index_t(o_.size()))
      SEQMIX_UNROLL for (index_t r = 0; r < R; ++r)
        SEQMIX_UNROLL for (index_t v = 0; v < NO; ++v) prefetch_l1(o_.data() + next + r * Dv_ + v * L);
    bool rescale = false;
    SEQMIX_UNROLL for (index_t r = 0; r < R; ++r) rescale = rescale || alpha_[std::size_t(r0 + r)] != T(1);
    SEQMIX_UNROLL for (index_t r = 0; r < R; ++r)
      SEQMIX_UNROLL for (index_t v = 0; v < NO; ++v) acc[r][v] = fresh ? simd::batch<T>(T(0)) : simd::load(o + r * Dv_ + v * L);
    if (rescale && !fresh)  // only while a row's running max still moves (lazy max: rarely after its first tiles)
      SEQMIX_UNROLL for (index_t r = 0; r < R; ++r) {
        const simd::batch<T> a(alpha_[std::size_t(r0 + r)]);
        SEQMIX_UNROLL for (index_t v = 0; v < NO; ++v) acc[r][v] *= a;
      }
    auto pass = [&](const Store* V, const T* ps, index_t nk) {
      for (index_t i = 0; i < nk; ++i) {
        simd::batch<T> vv[NO];
        SEQMIX_UNROLL for (index_t v = 0; v < NO; ++v) vv[v] = simd::load_as<T>(V + i * Dv_ + j + v * L), pin(vv[v]);
        if constexpr (!std::is_same_v<Store, T>)
          for (index_t v = 0; v < NO * L; v += 64 / index_t(sizeof(Store))) prefetch_next_block(V + i * Dv_ + j + v, block_keys * Dv_);
        SEQMIX_UNROLL for (index_t r = 0; r < R; ++r) {
          const simd::batch<T> a(ps[r * KP + i]);
          SEQMIX_UNROLL for (index_t v = 0; v < NO; ++v) acc[r][v] = simd::fma(a, vv[v], acc[r][v]);
        }
      }
    };
    pass(V_[0], p, nk0);
    pass(V_[1], p + KT, nk1);
    SEQMIX_UNROLL for (index_t r = 0; r < R; ++r)
      SEQMIX_UNROLL for (index_t v = 0; v < NO; ++v) simd::store(o + r * Dv_ + v * L, acc[r][v]);
  }

  index_t Dk_, Dv_, rows_ = 0, segments_ = 1, seg_rows_ = 0;
  std::vector<const Store*> keys_of_;
  std::vector<T> q_, o_, m_, l_, p_, alpha_;
  std::vector<index_t> pos_;
  std::vector<index_t> keys_;  // per row group and slot: keys of the tile it uses (0: none)
  const Store* V_[2] = {nullptr, nullptr};  // value tiles of the two slots
  index_t slot_ = 0;                    // slot the next tile's scores go to
  std::vector<unsigned char> fresh_;  // per row group: no tile has written its O rows yet
};

/// The chunkwise / recurrent frame: each task's query tokens in blocks of `C` tokens (rows: token
/// by token, the query heads of one key head inside), attended with flash_block. `step` tokens are
/// appended to the cache before they are attended (1 for the recurrent policy); without k and v
/// (nullptr) the queries are the cache's last positions.
template <class T, class S>
void flash_run(const char* who, int threads, index_t step, index_t C, tensor_view<const T, 4> q,
               const tensor_view<const T, 4>* k, const tensor_view<const T, 4>* v, tensor_view<T, 4> o,
               kv_cache<S>& cache, const options<T>& opt) {
  const head_map hm = check_args(who, q, k, v, o, cache);
  const index_t Dk = cache.dims().key_dim, Dv = cache.dims().value_dim, G = hm.q_per_k();
  const T qscale = T(double(scale_of(opt, Dk)) * std::numbers::log2e);
  C = std::max<index_t>(1, std::min(C, std::max<index_t>(q.extent(1), 1)));
  // The query heads of a task's key heads go into one block, a segment per key head, so the key
  // heads that share a value head (differential attention) share its value tiles.
  run_tasks<T>(
      threads, step, hm, q.extent(0), q.extent(1), k, v, cache, [&] { return flash_block<T, S>(C * G * hm.k_per_v(), hm.k_per_v(), Dk, Dv); },
      [&](flash_block<T, S>& fb, const task_step& s) {
        for (index_t a = s.t0; a < s.t0 + s.n; a += C) {
          const index_t nt = std::min(C, s.t0 + s.n - a), per = nt * G;
          fb.begin(s.nk * per, s.nk);
          for (index_t sg = 0; sg < s.nk; ++sg)
            for (index_t i = 0; i < nt; ++i)
              for (index_t r = 0; r < G; ++r)
                fb.set_row(sg * per + i * G + r, q.ptr(s.b, a + i, (s.kh0 + sg) * G + r), qscale, s.base + a + i);
          // Rows of one head are Hq·Dk floats apart, too far for the hardware prefetcher: fetch the
          // next block's queries and this block's output rows while the key blocks are walked.
          const index_t next = std::min(C, s.t0 + s.n - a - nt), nq = s.nk * G, lines = (next + nt) * nq;
          fb.attend(cache, s.b, s.kh0, s.vh, s.len, cache.visibility(), [&](index_t i, index_t nb) {
            for (index_t x = lines * i / nb; x < lines * (i + 1) / nb; ++x) {
              const index_t t = x / nq, h = s.kh0 * G + x % nq;
              if (t < next) prefetch_rows(q.ptr(s.b, a + nt + t, h), Dk, false);
              else prefetch_rows<T>(o.ptr(s.b, a + t - next, h), Dv, true);
            }
          });
          for (index_t sg = 0; sg < s.nk; ++sg)
            for (index_t i = 0; i < nt; ++i)
              for (index_t r = 0; r < G; ++r) fb.store_row(sg * per + i * G + r, o.ptr(s.b, a + i, (s.kh0 + sg) * G + r));
        }
      });
}

}  // namespace seqmix::kernels::attention::detail
