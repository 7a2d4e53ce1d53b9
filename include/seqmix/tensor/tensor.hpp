// tensor<T, Rank>: an owning, 64-byte aligned, contiguous row-major tensor.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "view.hpp"

namespace seqmix {

namespace detail {
inline constexpr std::size_t tensor_alignment = 64;  // one cache line; enough for AVX-512 loads

// Allocations of at least a huge page (2 MiB on x86-64 Linux) are placed on huge pages: the
// kernels walk rows a page or more apart (time-major [B,T,H,D] tensors), which with 4 KiB pages
// costs a TLB miss per row. On huge pages, equal-sized tensors would start at the same offset
// in the L1 and L2 sets (the L2 is physically indexed, and a huge page fixes the address bits it
// uses), so each one is shifted by one of 16 "colours" of 4 KiB + 64 B, chosen from its address.
inline constexpr std::size_t huge_page = std::size_t(2) << 20;
inline constexpr std::size_t colour_step = 4096 + 64, colours = 16;

template <class T>
struct aligned_delete {
  std::size_t alignment = tensor_alignment, offset = 0;  // offset: the colour, from the allocation's start
  void operator()(T* p) const { ::operator delete[](reinterpret_cast<char*>(p) - offset, std::align_val_t(alignment)); }
};

/// Zero-initialised storage for n elements, with its deleter. A count or byte size that overflows,
/// or an allocation the system refuses, is a seqmix::error naming the size, never std::bad_alloc.
template <class T>
std::unique_ptr<T[], aligned_delete<T>> aligned_alloc(index_t n) {
  if (n < 0) throw error("tensor: negative element count " + std::to_string(n));
  // Always allocate at least one element so data() is never null. The byte size, padding for the
  // colour included, must stay below PTRDIFF_MAX (no object may be larger).
  const auto count = static_cast<std::size_t>(std::max<index_t>(n, 1));
  constexpr std::size_t max_bytes = static_cast<std::size_t>(std::numeric_limits<index_t>::max()) - colours * colour_step;
  if (count > max_bytes / sizeof(T))
    throw error("tensor: " + std::to_string(n) + " elements of " + std::to_string(sizeof(T)) +
                " bytes overflow the byte size");
  const std::size_t bytes = count * sizeof(T);
  aligned_delete<T> del;
  if (bytes >= huge_page) del.alignment = huge_page;
  // The nothrow form: a refused allocation is a null pointer here (also under AddressSanitizer with
  // allocator_may_return_null=1, which ends the process on a failed throwing new instead).
  char* base = static_cast<char*>(::operator new[](bytes < huge_page ? bytes : bytes + colours * colour_step,
                                                   std::align_val_t(del.alignment), std::nothrow));
  if (!base) throw error("tensor: cannot allocate " + std::to_string(bytes) + " bytes (" + std::to_string(n) + " elements)");
  if (bytes >= huge_page) {
    del.offset = (std::uintptr_t(base) / huge_page * 0x9E3779B1u >> 8) % colours * colour_step;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Whole huge pages only: the partial last one stays on small pages, so no memory is added.
    // A hint: without transparent huge pages (or when it fails) the tensor is just coloured.
    (void)madvise(base, (del.offset + bytes) / huge_page * huge_page, MADV_HUGEPAGE);
#endif
  }
  T* p = reinterpret_cast<T*>(base + del.offset);
  std::uninitialized_value_construct_n(p, count);
  return std::unique_ptr<T[], aligned_delete<T>>(p, del);
}
}  // namespace detail

/// Owning, zero-initialised, 64-byte aligned, contiguous row-major tensor (from 2 MiB on, on huge
/// pages where the system offers them; see detail::aligned_alloc). Converts implicitly to
/// `tensor_view<T, Rank>` and `tensor_view<const T, Rank>`; copies are deep.
template <class T, std::size_t Rank>
class tensor {
 public:
  using value_type = T;
  using shape_type = std::array<index_t, Rank>;
  static constexpr std::size_t rank() { return Rank; }

  tensor() : tensor(shape_type{}) {}
  explicit tensor(const shape_type& extents)
      : extents_(extents), size_(checked_size(extents, "tensor")), data_(detail::aligned_alloc<T>(size_)) {}
  tensor(const shape_type& extents, T fill) : tensor(extents) { std::fill_n(data(), size(), fill); }
  /// Deep copy of any view with the same rank (any strides).
  template <class U>
  explicit tensor(tensor_view<U, Rank> src) : tensor(src.extents()) {
    copy_from(src);
  }

  tensor(const tensor& o) : tensor(o.extents_) { std::copy_n(o.data(), size(), data()); }
  /// A moved-from tensor is empty (all extents 0, size 0, no storage): it can be copied, assigned
  /// and destroyed (a defaulted move left its extents with no storage behind them).
  tensor(tensor&& o) noexcept
      : extents_(std::exchange(o.extents_, shape_type{})), size_(std::exchange(o.size_, 0)), data_(std::move(o.data_)) {}
  tensor& operator=(const tensor& o) {
    if (this != &o) *this = tensor(o);
    return *this;
  }
  tensor& operator=(tensor&& o) noexcept {
    extents_ = std::exchange(o.extents_, shape_type{}), size_ = std::exchange(o.size_, 0), data_ = std::move(o.data_);
    return *this;
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  const shape_type& extents() const { return extents_; }
  index_t extent(std::size_t d) const { return extents_[d]; }
  index_t size() const { return size_; }

  tensor_view<T, Rank> view() { return {data(), extents_}; }
  tensor_view<const T, Rank> view() const { return {data(), extents_}; }
  operator tensor_view<T, Rank>() { return view(); }
  operator tensor_view<const T, Rank>() const { return view(); }

  template <class... I>
  T& operator()(I... idx) { return view()(idx...); }
  template <class... I>
  const T& operator()(I... idx) const { return view()(idx...); }

  void fill(T value) { std::fill_n(data(), size(), value); }

 private:
  template <class U>
  void copy_from(tensor_view<U, Rank> src) {
    // Walk the source in row-major order; the destination is contiguous.
    std::array<index_t, Rank> i{};
    T* out = data();
    for (index_t n = 0, total = size(); n < total; ++n) {
      index_t off = 0;
      for (std::size_t d = 0; d < Rank; ++d) off += i[d] * src.stride(d);
      *out++ = static_cast<T>(src.data()[off]);
      for (std::size_t d = Rank; d-- > 0;) {
        if (++i[d] < extents_[d]) break;
        i[d] = 0;
      }
    }
  }

  shape_type extents_{};
  index_t size_ = 0;  // checked product of extents_
  std::unique_ptr<T[], detail::aligned_delete<T>> data_;
};

}  // namespace seqmix
