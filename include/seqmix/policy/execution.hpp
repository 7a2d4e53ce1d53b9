// Execution policies: how an op walks the sequence. Kernels overload on the policy type; a policy a
// layer cannot honour is a compile-time error, never a silent fallback.
//
// Every policy carries `threads` (how many threads the op may use, at least 1: 0 or a negative
// count is a seqmix::error naming the policy, raised before any work) and `pool` (the
// seqmix::thread_pool that runs the work; null: the process-wide default pool, created on first
// use). With threads = 1 no pool is touched. See policy/threads.hpp and docs/policy.md.
#pragma once

#include <concepts>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"

namespace seqmix {
class thread_pool;
}  // namespace seqmix

namespace seqmix::exec {

/// Token by token: the state is read and written once per token. The decode path.
struct recurrent {
  int threads = 1;                ///< threads the op may use (work is split over batch x heads), >= 1
  thread_pool* pool = nullptr;  ///< pool that runs the work (null: the default pool)
};

/// Blocks of `Chunk` tokens: intra-chunk work as small matrix products, one state update per chunk.
template <index_t Chunk = 64>
struct chunkwise {
  static_assert(Chunk >= 1, "seqmix::exec::chunkwise: chunk size must be positive");
  static constexpr index_t chunk = Chunk;
  int threads = 1;
  thread_pool* pool = nullptr;
};

/// The whole sequence as one quadratic block (materialised masks / decay matrices).
struct parallel {
  int threads = 1;
  thread_pool* pool = nullptr;
};

/// Lets the op choose by the per-family rule table in policy/automatic.hpp (measured; see
/// docs/policy.md): sequences shorter than `recurrent_below` always run recurrently, the others
/// as the family's rule says.
struct automatic {
  int threads = 1;
  index_t recurrent_below = 0;  ///< sequences shorter than this run recurrently (0: the rule alone decides)
  thread_pool* pool = nullptr;
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

/// `policy` as another policy kind with the same threads and pool: what a dispatch header passes
/// on when it runs one policy as another (automatic as recurrent, parallel as one chunk, ...).
template <class To, class From>
  requires policy<To> && policy<From>
constexpr To rebind(const From& from) {
  To to{};
  to.threads = from.threads;
  to.pool = from.pool;
  return to;
}

/// Throws seqmix::error "<who>: exec::<policy>: threads must be at least 1 (got N)" for a
/// thread count below 1.
template <policy P>
void check(const P& p, const char* who) {
  if (p.threads < 1)
    throw error(std::string(who) + ": exec::" + name_of<P>() + ": threads must be at least 1 (got " +
                std::to_string(p.threads) + ")");
}

/// For `static_assert(unsupported<P>, "Layer: policy P is not supported")` in a catch-all overload.
template <class P>
inline constexpr bool unsupported = false;

}  // namespace seqmix::exec
