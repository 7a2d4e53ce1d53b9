// bf16: the bfloat16 storage type of checkpoints (the top 16 bits of a float32). A plain 16-bit
// wrapper, not an arithmetic type: kernels widen it to float (exactly) or use the target's bf16
// dot products (simd/bf16.hpp); a float becomes bf16 by rounding to nearest, ties to even.
#pragma once

#include <bit>
#include <cstdint>

namespace seqmix {

/// A bfloat16 value: 1 sign, 8 exponent and 7 fraction bits, the upper half of a float32.
struct bf16 {
  std::uint16_t bits = 0;

  constexpr bf16() = default;
  /// Rounds to nearest, ties to even (as torch's `.to(torch.bfloat16)` and AVX512_BF16's
  /// vcvtneps2bf16 do for normal numbers); overflow gives ±inf, a NaN stays a (quiet) NaN of the
  /// same sign. Subnormals round like normals here; the vector instruction flushes them to zero.
  constexpr explicit bf16(float f) : bits(round(std::bit_cast<std::uint32_t>(f))) {}

  /// The exact float value.
  constexpr explicit operator float() const { return std::bit_cast<float>(std::uint32_t(bits) << 16); }

  static constexpr bf16 from_bits(std::uint16_t b) {
    bf16 v;
    v.bits = b;
    return v;
  }

  /// Bitwise equality (so NaN == NaN of the same payload, and +0 != -0): what a round trip keeps.
  friend constexpr bool operator==(bf16 a, bf16 b) = default;

 private:
  static constexpr std::uint16_t round(std::uint32_t u) {
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // NaN: set quiet bit
    u += 0x7fffu + ((u >> 16) & 1u);  // carries into the exponent where it must (up to inf)
    return static_cast<std::uint16_t>(u >> 16);
  }
};

static_assert(sizeof(bf16) == 2);

/// The float value of x (exact).
constexpr float to_float(bf16 x) { return static_cast<float>(x); }

}  // namespace seqmix
