// Execution policies: how an op walks the sequence. Kernels overload on the policy type; a policy a
// layer cannot honour is a compile-time error, never a silent fallback.
#pragma once

#include <concepts>
#include <type_traits>

#include "../config.hpp"

namespace seqmix::exec {

/// Token by token: the state is read and written once per token. The decode path.
struct recurrent {
  int threads = 1;  ///< threads the op may use (work is split over batch x heads)
};

/// Blocks of `Chunk` tokens: intra-chunk work as small matrix products, one state update per chunk.
template <index_t Chunk = 64>
struct chunkwise {
  static_assert(Chunk >= 1, "seqmix::exec::chunkwise: chunk size must be positive");
  static constexpr index_t chunk = Chunk;
  int threads = 1;
};

/// The whole sequence as one quadratic block (materialised masks / decay matrices).
struct parallel {
  int threads = 1;
};

/// Lets the layer choose: recurrent for short inputs (decode), chunkwise otherwise.
struct automatic {
  int threads = 1;
  index_t recurrent_below = 16;  ///< sequences shorter than this run recurrently
};

template <class P>
inline constexpr bool is_chunkwise_v = false;
template <index_t C>
inline constexpr bool is_chunkwise_v<chunkwise<C>> = true;

/// Any of the policy types above.
template <class P>
concept policy = std::same_as<P, recurrent> || std::same_as<P, parallel> ||
                 std::same_as<P, automatic> || is_chunkwise_v<P>;

/// Human-readable policy name ("recurrent", "chunkwise", "parallel", "automatic").
template <policy P>
constexpr const char* name_of() {
  if constexpr (std::same_as<P, recurrent>) return "recurrent";
  else if constexpr (std::same_as<P, parallel>) return "parallel";
  else if constexpr (std::same_as<P, automatic>) return "automatic";
  else return "chunkwise";
}

/// For `static_assert(unsupported<P>, "Layer: policy P is not supported")` in a catch-all overload.
template <class P>
inline constexpr bool unsupported = false;

}  // namespace seqmix::exec
