// kv_cache: the keys and values earlier tokens left for later ones, laid out for the attention
// kernels. Keys are stored transposed in blocks of 64 positions ([key_dim][64] per block), so a
// score tile q·Kᵀ is a run of broadcast-FMAs over contiguous key vectors with no transposition;
// values are stored as rows ([slot][value_dim]). Each (batch, head) owns its blocks, so a decode
// step reads one head's keys and values as two contiguous streams. kv_cache<bf16> stores them as
// bf16 (rounded to nearest even on write) for float kernels: half the bytes a long-context decode
// streams. See docs/attention.md.
#pragma once

#include <algorithm>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../../error.hpp"
#include "../../simd/transpose.hpp"
#include "../../tensor/bf16.hpp"
#include "../../tensor/tensor.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// Keys per cache block (and per score tile of the kernels).
inline constexpr index_t block_keys = 64;

/// Valid positions of one cache block as of a given length: smallest and largest, and whether all
/// 64 slots hold consecutive positions lo, lo + 1, ... (so no per-slot position is needed).
struct block_span {
  index_t lo = 0, hi = -1;
  bool dense = false;
  bool empty() const { return hi < lo; }
};

/// The element type the kernels compute in for a cache storing S: S itself; float for bf16.
template <class S>
struct cache_compute {
  using type = S;
};
template <>
struct cache_compute<bf16> {
  using type = float;
};
template <class S>
using compute_t = typename cache_compute<S>::type;

/// A computed value as stored (rounded to nearest even for bf16) and a stored value widened (exact).
template <class S, class T>
inline S to_storage(T x) {
  return S(x);
}
template <class T, class S>
inline T from_storage(S x) {
  if constexpr (std::is_same_v<S, bf16>) return to_float(x);
  else return x;
}

/// Keys and values of earlier tokens stored as S (float, double, or bf16 for float kernels); the
/// kernels and every row passed in or out are compute_t<S>.
template <class S>
class kv_cache {
 public:
  using value_type = compute_t<S>;  ///< what the kernels compute in, and keys() / values() return
  using storage_type = S;

 private:
  using T = value_type;

 public:
  struct shape {
    index_t batch = 1, key_heads = 1, key_dim = 0, value_heads = 1, value_dim = 0;
  };

  kv_cache() = default;

  /// A cache for `s.batch` sequences of at most `capacity` tokens each. With a window (and no
  /// more room needed than a full store would take) it becomes a ring buffer: positions below
  /// `m.sink` are kept for good, later ones in a ring of window - 1 + step slots (rounded up to 64),
  /// so memory is O(window). `step` is the most tokens a kernel appends before attending them.
  kv_cache(const shape& s, index_t capacity, mask m = {}, index_t step = block_keys)
      : s_(s), capacity_(capacity), mask_(m), step_(step) {
    require(s.batch >= 0 && s.key_heads > 0 && s.value_heads > 0 && s.key_dim > 0 && s.value_dim > 0,
            "kv_cache", "batch must be >= 0 and heads and head dims positive");
    require(s.key_heads % s.value_heads == 0, "kv_cache", "key heads must be a multiple of value heads");
    require(capacity > 0 && step > 0 && m.window >= 0 && m.sink >= 0, "kv_cache",
            "capacity and step must be positive, window and sink non-negative");
    const index_t full = round_up(capacity);
    sink_slots_ = round_up(std::min(m.sink, capacity));
    require(m.window <= std::numeric_limits<index_t>::max() / 2 - step, "kv_cache", "window + step overflows");
    ring_slots_ = round_up(m.window - 1 + step);
    ring_ = m.window > 0 && ring_slots_ < full - sink_slots_;  // sink_slots_ <= full: no overflow
    slots_ = ring_ ? sink_slots_ + ring_slots_ : full;
    // Sizes from a caller (a batch of 2^53, a capacity near 2^63) must not wrap: checked products.
    auto count = [&](index_t heads, index_t dim) {
      return checked_mul(checked_mul(checked_mul(s.batch, heads, "kv_cache"), slots_, "kv_cache"), dim, "kv_cache");
    };
    k_ = tensor<S, 1>({count(s.key_heads, s.key_dim)});
    v_ = tensor<S, 1>({count(s.value_heads, s.value_dim)});
  }

  const shape& dims() const { return s_; }
  index_t batch() const { return s_.batch; }
  /// Tokens appended so far: the absolute position of the next one.
  index_t length() const { return len_; }
  index_t capacity() const { return capacity_; }
  const mask& visibility() const { return mask_; }
  bool is_ring() const { return ring_; }
  index_t step() const { return step_; }
  /// Whether every key the last `n` positions' windows see is still stored (always in a linear
  /// cache; in a ring, when n <= slots - (window - 1) or nothing past the sink was dropped yet).
  bool holds_windows_of(index_t n) const {
    return !ring_ || len_ - ring_slots_ <= mask_.sink || n <= ring_slots_ - (mask_.window - 1);
  }
  /// Key/value rows stored per head (the memory bound).
  index_t slots() const { return slots_; }
  index_t blocks() const { return slots_ / block_keys; }

  /// Makes a ring buffer room for a kernel to append and attend `n` tokens at once (window - 1 + n
  /// slots, rounded up to 64), growing or shrinking it and keeping every stored position the next
  /// token's window needs. For a layer whose cache another layer reads after a call of n tokens
  /// (Hymba's KV sharing): the reader attends all n queries from it. A linear cache keeps its
  /// storage; `n` only becomes its step.
  void set_step(index_t n) {
    require(n > 0, "kv_cache", "step must be positive");
    if (n == step_) return;
    kv_cache c(s_, capacity_, mask_, n);
    if (c.slots_ == slots_ && c.ring_ == ring_) {  // same layout: nothing moves
      step_ = n;
      return;
    }
    std::vector<T> row(std::size_t(std::max(s_.key_dim, s_.value_dim)));
    for (const index_t p : positions()) {
      if (c.ring_ && p >= mask_.sink && p < len_ - c.ring_slots_) continue;  // outside every later window
      for (index_t b = 0; b < s_.batch; ++b) {
        for (index_t h = 0; h < s_.key_heads; ++h) {
          const index_t sl = slot(p);
          const S* src = key_block(b, h, sl / block_keys) + sl % block_keys;
          for (index_t d = 0; d < s_.key_dim; ++d) row[std::size_t(d)] = from_storage<T>(src[d * block_keys]);
          c.write_key(b, h, p, row.data());  // bf16 -> float -> bf16 is exact
        }
        for (index_t h = 0; h < s_.value_heads; ++h) {
          const S* src = v_.data() + value_offset(b, h, slot(p));
          for (index_t e = 0; e < s_.value_dim; ++e) row[std::size_t(e)] = from_storage<T>(src[e]);
          c.write_value(b, h, p, row.data());
        }
      }
    }
    c.len_ = len_;
    *this = std::move(c);
  }

  /// Forgets every token (the storage is kept).
  void reset() { len_ = 0; }

  /// Drops the tokens after the first `n` (e.g. rejected draft tokens). A ring buffer can only
  /// roll back as far as its slots still hold what the window of position n needs (or to 0).
  void truncate(index_t n) {
    require(n >= 0 && n <= len_, "kv_cache", "truncate(" + std::to_string(n) + ") past the length " + std::to_string(len_));
    require(!ring_ || n == 0 || len_ - n <= ring_slots_ - std::max<index_t>(mask_.window - 1, 0), "kv_cache",
            "a ring-buffer cache cannot roll back " + std::to_string(len_ - n) + " tokens");
    len_ = n;
  }

  /// Appends k [B,n,Hk,Dk] and v [B,n,Hv,Dv] without attending them (e.g. to load a prompt's cache).
  void append(tensor_view<const T, 4> k, tensor_view<const T, 4> v) {
    const index_t n = k.extent(1);
    check_rows("kv_cache", k, v, n);
    check_room("kv_cache", n);
    for (index_t b = 0; b < s_.batch; ++b)
      for (index_t t = 0; t < n; ++t) {  // in order: in a ring, later rows overwrite earlier ones
        for (index_t h = 0; h < s_.key_heads; ++h) write_key(b, h, len_ + t, k.ptr(b, t, h), k.stride(3));
        for (index_t h = 0; h < s_.value_heads; ++h) write_value(b, h, len_ + t, v.ptr(b, t, h), v.stride(3));
      }
    len_ += n;
  }

  /// Positions still stored, in increasing order.
  std::vector<index_t> positions() const {
    std::vector<index_t> p;
    for (index_t j = 0; j < len_; ++j)
      if (!ring_ || j < mask_.sink || j >= len_ - ring_slots_) p.push_back(j);
    return p;
  }
  /// Stored keys [B, kept, Hk, Dk] in position order (kept = positions().size()).
  tensor<T, 4> keys() const { return gather(true); }
  /// Stored values [B, kept, Hv, Dv] in position order.
  tensor<T, 4> values() const { return gather(false); }

  // ---- kernel interface ----

  /// Throws unless `n` more tokens fit.
  void check_room(const char* who, index_t n) const {
    if (n > capacity_ - len_)  // not len_ + n > capacity_: that could overflow
      throw error(std::string(who) + ": KV cache capacity " + std::to_string(capacity_) + " exceeded (holds " +
                  std::to_string(len_) + " tokens, appending " + std::to_string(n) + ")");
  }
  /// Throws unless k [B,n,Hk,Dk], v [B,n,Hv,Dv] match the cache.
  void check_rows(const char* who, const tensor_view<const T, 4>& k, const tensor_view<const T, 4>& v, index_t n) const {
    check_shape(who, "k", k.extents(), {s_.batch, n, s_.key_heads, s_.key_dim});
    check_shape(who, "v", v.extents(), {s_.batch, n, s_.value_heads, s_.value_dim});
  }

  index_t slot(index_t p) const {
    if (!ring_ || p < mask_.sink) return p;
    return sink_slots_ + (p - mask_.sink) % ring_slots_;
  }
  /// Position held by `slot` once `len` tokens were appended (-1: empty).
  index_t position(index_t slot, index_t len) const {
    if (!ring_ || slot < sink_slots_) return slot < len && (!ring_ || slot < mask_.sink) ? slot : -1;
    if (len <= mask_.sink) return -1;
    const index_t s = slot - sink_slots_, newest = len - 1 - mask_.sink, base = newest - newest % ring_slots_;
    if (s <= newest % ring_slots_) return mask_.sink + base + s;
    return base >= ring_slots_ ? mask_.sink + base - ring_slots_ + s : -1;
  }
  /// Positions of block `blk` once `len` tokens were appended: min/max of the valid ones. A linear
  /// cache's blocks are always dense: its unwritten slots count as the future positions they will
  /// hold, which causality already hides from every query (and they hold finite values).
  block_span span(index_t blk, index_t len) const {
    const index_t first = blk * block_keys;
    if (!ring_) return {first, first + block_keys - 1, true};
    block_span r{0, -1, true};
    index_t prev = -2;
    for (index_t i = 0; i < block_keys; ++i) {
      const index_t p = position(first + i, len);
      if (p < 0) {
        r.dense = false;
        continue;
      }
      r.lo = r.empty() ? p : std::min(r.lo, p);
      r.hi = r.empty() ? p : std::max(r.hi, p);
      if (i > 0 && p != prev + 1) r.dense = false;
      prev = p;
    }
    return r;
  }
  /// Blocks that may hold positions once `len` tokens were appended (a prefix of the blocks).
  index_t used_blocks(index_t len) const {
    return ring_ ? blocks() : std::min(blocks(), (len + block_keys - 1) / block_keys);
  }

  /// Key block [Dk][64] of (b, key head): element (d, i) is key dim d of slot blk·64 + i.
  S* key_block(index_t b, index_t kh, index_t blk) { return k_.data() + key_offset(b, kh, blk); }
  const S* key_block(index_t b, index_t kh, index_t blk) const { return k_.data() + key_offset(b, kh, blk); }
  /// Value rows [64][Dv] of block blk of (b, value head).
  S* value_block(index_t b, index_t vh, index_t blk) { return v_.data() + value_offset(b, vh, blk * block_keys); }
  const S* value_block(index_t b, index_t vh, index_t blk) const {
    return v_.data() + value_offset(b, vh, blk * block_keys);
  }

  void write_key(index_t b, index_t kh, index_t p, const T* row, index_t stride = 1) {
    const index_t sl = slot(p);
    S* dst = key_block(b, kh, sl / block_keys) + sl % block_keys;
    for (index_t d = 0; d < s_.key_dim; ++d) dst[d * block_keys] = to_storage<S>(row[d * stride]);
  }
  /// Keys of positions p0 .. p0 + n - 1: row t at src + t·row_stride, elements `stride` apart.
  /// Writes each block's rows [Dk][run] contiguously (runs of consecutive slots), transposed in
  /// 16 x 16 tiles.
  void write_keys(index_t b, index_t kh, index_t p0, index_t n, const T* src, index_t row_stride, index_t stride = 1) {
    for (index_t t = 0; t < n;) {
      const index_t p = p0 + t, sl = slot(p), lane = sl % block_keys;
      index_t run = std::min(n - t, block_keys - lane);
      if (ring_ && p < mask_.sink) run = std::min(run, mask_.sink - p);  // the sink ends mid-block
      S* dst = key_block(b, kh, sl / block_keys) + lane;
      if constexpr (std::is_same_v<S, T>) simd::transpose(src + t * row_stride, row_stride, stride, dst, block_keys, run, s_.key_dim);
      else  // bf16: rounded one by one (a run is at most 64 keys, small next to attending them)
        for (index_t d = 0; d < s_.key_dim; ++d)
          for (index_t i = 0; i < run; ++i) dst[d * block_keys + i] = to_storage<S>(src[(t + i) * row_stride + d * stride]);
      t += run;
    }
  }
  void write_value(index_t b, index_t vh, index_t p, const T* row, index_t stride = 1) {
    S* dst = v_.data() + value_offset(b, vh, slot(p));
    if constexpr (std::is_same_v<S, T>)
      if (stride == 1) return void(std::copy_n(row, s_.value_dim, dst));  // vectorized (a run-time stride kept GCC scalar)
    for (index_t e = 0; e < s_.value_dim; ++e) dst[e] = to_storage<S>(row[e * stride]);
  }
  /// Records that `n` tokens were written by the kernel (after all heads are written).
  void commit(index_t n) { len_ += n; }

 private:
  static index_t round_up(index_t n) {
    require(n <= std::numeric_limits<index_t>::max() - block_keys, "kv_cache", "capacity " + std::to_string(n) + " too large");
    return (std::max<index_t>(n, 0) + block_keys - 1) / block_keys * block_keys;
  }
  index_t key_offset(index_t b, index_t kh, index_t blk) const {
    return ((b * s_.key_heads + kh) * slots_ + blk * block_keys) * s_.key_dim;
  }
  index_t value_offset(index_t b, index_t vh, index_t slot) const {
    return ((b * s_.value_heads + vh) * slots_ + slot) * s_.value_dim;
  }

  tensor<T, 4> gather(bool keys) const {
    const auto pos = positions();
    const index_t H = keys ? s_.key_heads : s_.value_heads, D = keys ? s_.key_dim : s_.value_dim;
    tensor<T, 4> out({s_.batch, index_t(pos.size()), H, D});
    for (index_t b = 0; b < s_.batch; ++b)
      for (index_t i = 0; i < index_t(pos.size()); ++i)
        for (index_t h = 0; h < H; ++h) {
          const index_t sl = slot(pos[std::size_t(i)]);
          for (index_t d = 0; d < D; ++d)
            out(b, i, h, d) = from_storage<T>(keys ? key_block(b, h, sl / block_keys)[d * block_keys + sl % block_keys]
                                                   : v_.data()[value_offset(b, h, sl) + d]);
        }
    return out;
  }

  shape s_{};
  index_t capacity_ = 0, len_ = 0;
  mask mask_{};
  index_t step_ = block_keys;
  bool ring_ = false;
  index_t sink_slots_ = 0, ring_slots_ = 0, slots_ = 0;
  tensor<S, 1> k_, v_;
};

}  // namespace seqmix::kernels::attention
