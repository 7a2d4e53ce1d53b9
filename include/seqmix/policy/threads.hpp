// Thread pools and the kernels' parallel loops.
//
// A thread_pool owns background threads that live as long as the pool; a call runs its parts on
// the calling thread and on whichever workers are free, so no call starts or joins a thread. Each
// policy names the pool it runs on (exec::recurrent{.threads = 2, .pool = &mine}); a null pool is
// thread_pool::default_pool(), created on first use and grown to the largest thread count asked of
// it (up to default_max_workers()). With threads = 1 (or one part of work) nothing touches any pool: the caller runs the loop.
//
// parallel_ranges / parallel_for come in two forms: taking a policy (its threads and pool), and
// taking a plain thread count, which runs on the pool bound to the calling thread (pool_scope: the
// op entry points bind the policy's pool for the duration of the op, and a pool's workers are bound
// to their own pool) or else on the default pool.
//
// Nested calls (a part that itself calls parallel_for) never deadlock: a caller only waits for
// parts that some thread has already started, and runs every unclaimed part of its own call itself.
// Idle workers poll for a while (default_spin) before they sleep, so back-to-back ops find them awake.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "execution.hpp"

namespace seqmix {

class thread_pool;

namespace detail {
// The pool that plain-count parallel loops on this thread run on (null: the default pool).
inline thread_pool*& bound_pool() {
  thread_local thread_pool* pool = nullptr;
  return pool;
}
}  // namespace detail

/// Persistent worker threads for the kernels' parallel loops (see the file comment).
class thread_pool {
 public:
  /// How long an idle worker (or a waiting caller) polls before it sleeps, by default: longer
  /// than the gaps between the ops of one decode step, so the step's ops find the workers awake.
  static constexpr std::chrono::microseconds default_spin{200};

  /// A pool with `workers` background threads; calls also run parts on the calling thread, so a
  /// pool of N - 1 workers serves `threads = N`. Idle workers poll for `spin` before they sleep
  /// (0: sleep at once, for a pool that must not take CPU time from other processes).
  explicit thread_pool(int workers = 0, std::chrono::microseconds spin = default_spin) : spin_(spin) {
    reserve(workers);
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  ~thread_pool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    epoch_.fetch_add(1);
    epoch_.notify_all();
    for (auto& t : threads_) t.join();
  }

  /// The process-wide pool behind policies whose `pool` is null, created on first use.
  static thread_pool& default_pool() {
    static thread_pool pool;
    return pool;
  }

  /// Background threads now running.
  int workers() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(threads_.size());
  }

  /// Calls that handed work to this pool so far (calls run on the caller alone are not counted).
  std::uint64_t jobs() const { return jobs_.load(std::memory_order_relaxed); }

  /// Grows the pool to at least `workers` background threads (never shrinks). When the system
  /// refuses a thread the pool stays smaller: calls still run every range (the caller takes the
  /// ones no worker takes), only with less parallelism.
  void reserve(int workers) {
    if (started_.load(std::memory_order_acquire) >= workers) return;  // the common case: no lock
    std::lock_guard lock(mutex_);
    try {
      while (static_cast<int>(threads_.size()) < workers) threads_.emplace_back([this] { work(); });
    } catch (const std::system_error&) {
    }
    started_.store(static_cast<int>(threads_.size()), std::memory_order_release);
  }

  /// The most workers the default pool grows to, whatever thread count is asked: four per
  /// hardware thread (at least 15), since more threads than cores never run faster.
  static int default_max_workers() {
    static const int n = std::max(16, 4 * static_cast<int>(std::thread::hardware_concurrency())) - 1;  // a system call
    return n;
  }

  /// Calls fn(part) for every part in [0, parts) on the caller and free workers and returns when
  /// all have returned. fn must not throw (parallel_ranges wraps it). Safe from several threads
  /// at once and from inside fn.
  template <class Fn>
  void run(index_t parts, Fn& fn) {
    if (parts <= 0) return;
    if (parts == 1) return fn(index_t(0));
    jobs_.fetch_add(1, std::memory_order_relaxed);
    job j{&invoke<Fn>, &fn, parts};
    {
      std::lock_guard lock(mutex_);
      j.next = 1;  // the caller runs part 0 without the lock
      queue_.push_back(&j);
    }
    epoch_.fetch_add(1);
    // Wake at most one sleeping worker per part the caller does not run (polling ones see epoch_).
    for (index_t s = std::min<index_t>(sleepers_.load(), parts - 1); s > 0; --s) epoch_.notify_one();
    fn(index_t(0));
    index_t finished = 1;
    for (index_t part; (part = claim(j)) >= 0; ++finished) fn(part);
    if (j.done.fetch_add(finished) + finished == parts) return;
    wait_done(j);
  }

 private:
  struct job {
    void (*call)(void*, index_t);
    void* fn;
    index_t parts;
    index_t next = 0;               // first unclaimed part (guarded by mutex_)
    std::atomic<index_t> done{0};  // parts returned; a worker touches the job last here
  };

  template <class Fn>
  static void invoke(void* fn, index_t part) {
    (*static_cast<Fn*>(fn))(part);
  }

  // Takes the next part of j (-1 when all are claimed); the claim of the last part unlinks j.
  index_t claim(job& j) {
    std::lock_guard lock(mutex_);
    if (j.next >= j.parts) return -1;
    const index_t part = j.next++;
    if (j.next == j.parts) queue_.erase(std::find(queue_.begin(), queue_.end(), &j));
    return part;
  }

  // Takes a part of the oldest job with parts left; false when there is none.
  bool claim_any(job*& j, index_t& part) {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) return false;
    j = queue_.front();
    part = j->next++;
    if (j->next == j->parts) queue_.pop_front();
    return true;
  }

  void finish(job& j, index_t n) {
    const index_t parts = j.parts;  // read first: once done reaches parts, j may be gone
    if (j.done.fetch_add(n) + n != parts) return;
    // j may be gone from here on (its caller returns): only pool members below.
    completions_.fetch_add(1);
    if (waiters_.load() > 0) completions_.notify_all();
  }

  void wait_done(job& j) {
    const auto until = std::chrono::steady_clock::now() + spin_;
    for (unsigned i = 0;; ++i) {
      const auto seen = completions_.load();
      if (j.done.load() == j.parts) return;
      if (i % 64 == 63 && std::chrono::steady_clock::now() > until) {
        waiters_.fetch_add(1);
        if (j.done.load() != j.parts) completions_.wait(seen);
        waiters_.fetch_sub(1);
      }
    }
  }

  void work() {
    detail::bound_pool() = this;
    for (;;) {
      auto seen = epoch_.load();
      job* j = nullptr;
      index_t part = 0;
      if (claim_any(j, part)) {
        j->call(j->fn, part);
        finish(*j, 1);
        continue;
      }
      if (stop_now()) return;
      const auto until = std::chrono::steady_clock::now() + spin_;
      bool woke = false;
      for (unsigned i = 1; !woke; ++i) {
        woke = epoch_.load() != seen;
        if (i % 64 == 0 && !woke && std::chrono::steady_clock::now() > until) break;
      }
      if (!woke) {
        sleepers_.fetch_add(1);
        epoch_.wait(seen);
        sleepers_.fetch_sub(1);
      }
    }
  }

  bool stop_now() {
    std::lock_guard lock(mutex_);
    return stop_ && queue_.empty();
  }

  std::chrono::microseconds spin_;
  mutable std::mutex mutex_;
  std::deque<job*> queue_;          // jobs with unclaimed parts, oldest first
  std::vector<std::thread> threads_;
  bool stop_ = false;
  // Polled by idle workers and waiting callers: each on its own cache line.
  alignas(64) std::atomic<std::uint32_t> epoch_{0};        // bumped when work arrives (and on stop)
  alignas(64) std::atomic<std::uint32_t> completions_{0};  // bumped when a job's last part returns
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<int> waiters_{0};
  std::atomic<std::uint64_t> jobs_{0};
  std::atomic<int> started_{0};  // threads_.size(), readable without the lock
};

/// Binds `pool` (when not null) as the pool of plain-count parallel loops on this thread until the
/// scope ends. The op entry points bind their policy's pool this way, so the kernels beneath them,
/// which take a thread count, run on the caller's pool.
class pool_scope {
 public:
  explicit pool_scope(thread_pool* pool) : previous_(detail::bound_pool()) {
    if (pool) detail::bound_pool() = pool;
  }
  template <exec::policy P>
  explicit pool_scope(const P& policy) : pool_scope(policy.pool) {}
  pool_scope(const pool_scope&) = delete;
  pool_scope& operator=(const pool_scope&) = delete;
  ~pool_scope() { detail::bound_pool() = previous_; }

 private:
  thread_pool* previous_;
};

namespace detail {

// Splits [0, n) into min(threads, n) contiguous, near-equal ranges (the split depends on threads
// and n only, never on the pool) and runs them on `pool` (null: bound or default pool).
template <class Fn>
void run_ranges(thread_pool* pool, int threads, index_t n, Fn& fn) {
  const index_t parts = std::min<index_t>(threads, n);
  if (parts <= 1) {
    if (n > 0) fn(index_t(0), n);
    return;
  }
  if (!pool) pool = bound_pool();
  if (!pool) {
    pool = &thread_pool::default_pool();
    pool->reserve(static_cast<int>(std::min<index_t>(parts - 1, thread_pool::default_max_workers())));
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(parts));
  auto part = [&](index_t w) {
    try {
      fn(n * w / parts, n * (w + 1) / parts);
    } catch (...) {
      errors[static_cast<std::size_t>(w)] = std::current_exception();
    }
  };
  const pool_scope scope(pool);  // nested plain-count calls in the caller's parts run here too
  pool->run(parts, part);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

inline void check_threads(int threads, const char* who) {
  if (threads < 1) throw error(std::string(who) + ": threads must be at least 1 (got " + std::to_string(threads) + ")");
}

}  // namespace detail

/// The threads worth using for a call of `work` units (multiply-adds, or state elements updated
/// per token): at most `threads`, and one per `per_thread` units, at least one. A hand-off to a
/// pool worker costs 1-2.5 µs here (docs/policy.md), the time of about 2^15-2^16 units in the
/// recurrent kernels: a decode step of GLA or Gated DeltaNet K64 (2^15 units) ran 2.1-2.4x slower
/// on two threads, Gated DeltaNet K128 (2^17) even, Mamba-2 (1.5·2^17) 1.2x faster.
inline int threads_for_work(int threads, double work, double per_thread = 65536) {
  if (!(work >= per_thread * 2)) return std::min(threads, 1);
  return static_cast<int>(std::min<double>(threads, work / per_thread));
}

/// Calls fn(begin, end) once per range of [0, n) split into min(policy.threads, n) contiguous,
/// near-equal ranges, on policy.pool (null: the pool bound to this thread, else the default pool);
/// the exception of the lowest-numbered failing range is rethrown on the caller.
template <exec::policy P, class Fn>
void parallel_ranges(const P& policy, index_t n, Fn&& fn) {
  exec::check(policy, "parallel_ranges");
  detail::run_ranges(policy.pool, policy.threads, n, fn);
}

/// Calls fn(i) for every i in [0, n), split as parallel_ranges(policy, ...) does.
template <exec::policy P, class Fn>
void parallel_for(const P& policy, index_t n, Fn&& fn) {
  parallel_ranges(policy, n, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i);
  });
}

/// parallel_ranges with a plain thread count (>= 1, else seqmix::error), on the pool bound to this
/// thread (pool_scope) or the default pool.
template <class Fn>
void parallel_ranges(int threads, index_t n, Fn&& fn) {
  detail::check_threads(threads, "parallel_ranges");
  detail::run_ranges(nullptr, threads, n, fn);
}

/// parallel_for with a plain thread count, as parallel_ranges(int, ...).
template <class Fn>
void parallel_for(int threads, index_t n, Fn&& fn) {
  parallel_ranges(threads, n, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i);
  });
}

}  // namespace seqmix
