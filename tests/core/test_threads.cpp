// Tests for seqmix::thread_pool and parallel_ranges / parallel_for: results, the split, exceptions,
// nested and concurrent calls, the caller's pool, and that threads = 1 touches no pool.
#include <catch2/catch.hpp>

#include <seqmix/error.hpp>
#include <seqmix/policy/execution.hpp>
#include <seqmix/policy/threads.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using seqmix::index_t;
using seqmix::thread_pool;
using seqmix::threads_for_work;
namespace exec = seqmix::exec;

namespace {

// Every range a call made, sorted, and the threads that ran them.
struct split {
  std::vector<std::pair<index_t, index_t>> ranges;
  std::set<std::thread::id> ids;
};

template <class How>
split record(How&& how, index_t n) {
  std::mutex mu;
  split s;
  how(n, [&](index_t begin, index_t end) {
    const std::lock_guard lock(mu);
    s.ranges.emplace_back(begin, end);
    s.ids.insert(std::this_thread::get_id());
  });
  std::sort(s.ranges.begin(), s.ranges.end());
  return s;
}

// True when the ranges tile [0, n) with lengths differing by at most one.
bool near_equal_tiling(const split& s, index_t n) {
  index_t next = 0, shortest = n, longest = 0;
  for (auto [b, e] : s.ranges) {
    if (b != next || e <= b) return false;
    next = e;
    shortest = std::min(shortest, e - b);
    longest = std::max(longest, e - b);
  }
  return next == n && (n == 0 || longest - shortest <= 1);
}

}  // namespace

TEST_CASE("parallel_for computes the same sums with any thread count and pool", "[threads]") {
  thread_pool small(1), wide(3);
  for (index_t n : {index_t(0), index_t(1), index_t(2), index_t(7), index_t(1000)})
    for (int threads : {1, 2, 3, 8}) {
      INFO("n=" << n << " threads=" << threads);
      for (thread_pool* pool : {static_cast<thread_pool*>(nullptr), &small, &wide}) {
        std::vector<long> out(static_cast<std::size_t>(n), -1);
        seqmix::parallel_for(exec::recurrent{.threads = threads, .pool = pool}, n,
                             [&](index_t i) { out[static_cast<std::size_t>(i)] = 3 * i + 1; });
        long want = 0, got = 0;
        for (index_t i = 0; i < n; ++i) want += 3 * i + 1, got += out[static_cast<std::size_t>(i)];
        CHECK(got == want);
        CHECK(std::count(out.begin(), out.end(), -1) == 0);
      }
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      seqmix::parallel_for(threads, n, [&](index_t i) { ++hits[static_cast<std::size_t>(i)]; });
      CHECK(std::all_of(hits.begin(), hits.end(), [](const std::atomic<int>& h) { return h == 1; }));
    }
}

TEST_CASE("the split depends on threads and n only, never on the pool's size", "[threads]") {
  thread_pool one(1), three(3);
  for (index_t n : {index_t(1), index_t(5), index_t(100)})
    for (int threads : {2, 3, 4, 8}) {
      INFO("n=" << n << " threads=" << threads);
      const index_t parts = std::min<index_t>(threads, n);
      const split by_int = record([&](index_t m, auto fn) { seqmix::parallel_ranges(threads, m, fn); }, n);
      CHECK(static_cast<index_t>(by_int.ranges.size()) == parts);
      CHECK(near_equal_tiling(by_int, n));
      for (thread_pool* pool : {&one, &three}) {
        const split s = record(
            [&](index_t m, auto fn) { seqmix::parallel_ranges(exec::chunkwise<16>{.threads = threads, .pool = pool}, m, fn); },
            n);
        CHECK(s.ranges == by_int.ranges);
        CHECK(static_cast<int>(s.ids.size()) <= pool->workers() + 1);  // the caller and the workers
      }
    }
}

TEST_CASE("threads = 1 runs on the caller and touches no pool", "[threads]") {
  thread_pool mine(2);
  const auto default_jobs = thread_pool::default_pool().jobs();
  const split a = record([&](index_t n, auto fn) { seqmix::parallel_ranges(exec::recurrent{.threads = 1, .pool = &mine}, n, fn); }, 50);
  const split b = record([&](index_t n, auto fn) { seqmix::parallel_ranges(1, n, fn); }, 50);
  for (const split* s : {&a, &b}) {
    REQUIRE(s->ranges.size() == 1);
    CHECK(s->ranges[0] == std::pair<index_t, index_t>(0, 50));
    CHECK(s->ids == std::set{std::this_thread::get_id()});
  }
  // One part of work (n = 1) needs no pool either, whatever the thread count.
  seqmix::parallel_for(exec::parallel{.threads = 4, .pool = &mine}, 1, [](index_t) {});
  CHECK(mine.jobs() == 0);
  CHECK(thread_pool::default_pool().jobs() == default_jobs);
  // With two threads the same call does reach the pool.
  seqmix::parallel_for(exec::parallel{.threads = 2, .pool = &mine}, 2, [](index_t) {});
  CHECK(mine.jobs() == 1);
}

TEST_CASE("a caller's pool runs the work, and no call starts a thread", "[threads]") {
  thread_pool mine(2);
  const auto default_jobs = thread_pool::default_pool().jobs();
  std::mutex mu;
  std::set<std::thread::id> ids;
  for (int call = 0; call < 200; ++call)
    seqmix::parallel_for(exec::automatic{.threads = 3, .pool = &mine}, 30, [&](index_t) {
      const std::lock_guard lock(mu);
      ids.insert(std::this_thread::get_id());
    });
  CHECK(mine.jobs() == 200);
  CHECK(thread_pool::default_pool().jobs() == default_jobs);
  CHECK(mine.workers() == 2);
  CHECK(ids.size() <= 3);  // the caller and the pool's two workers, over all 200 calls

  // A bound pool (as the op entry points bind their policy's) serves plain-count calls.
  {
    const seqmix::pool_scope scope(&mine);
    seqmix::parallel_for(2, 10, [](index_t) {});
  }
  CHECK(mine.jobs() == 201);
  seqmix::parallel_for(2, 10, [](index_t) {});  // unbound again: the default pool
  CHECK(mine.jobs() == 201);
  CHECK(thread_pool::default_pool().jobs() == default_jobs + 1);
}

TEST_CASE("the default pool persists and grows to the largest thread count asked", "[threads]") {
  seqmix::parallel_for(3, 3, [](index_t) {});
  const int workers = thread_pool::default_pool().workers();
  CHECK(workers >= 2);
  for (int i = 0; i < 50; ++i) seqmix::parallel_for(2, 8, [](index_t) {});
  CHECK(thread_pool::default_pool().workers() == workers);
  // An absurd thread count is capped (every range still runs), not a thread per range.
  std::atomic<index_t> total{0};
  seqmix::parallel_ranges(100000, 300, [&](index_t b, index_t e) { total += e - b; });
  CHECK(total == 300);
  CHECK(thread_pool::default_pool().workers() <= thread_pool::default_max_workers());
}

TEST_CASE("exceptions in any range are rethrown on the caller; the pool stays usable", "[threads]") {
  thread_pool mine(1);
  for (int threads : {1, 2, 3, 8})
    for (index_t bad : {index_t(0), index_t(50), index_t(99)}) {
      INFO("threads=" << threads << " throwing at i=" << bad);
      auto body = [&](index_t i) {
        if (i == bad) throw std::runtime_error("boom at " + std::to_string(i));
      };
      REQUIRE_THROWS_WITH(seqmix::parallel_for(threads, 100, body), "boom at " + std::to_string(bad));
      REQUIRE_THROWS_WITH(seqmix::parallel_for(exec::recurrent{.threads = threads, .pool = &mine}, 100, body),
                          "boom at " + std::to_string(bad));
    }
  // Several failing ranges: the lowest-numbered one's exception arrives, with its type.
  REQUIRE_THROWS_WITH(seqmix::parallel_ranges(4, 40,
                                              [](index_t b, index_t) { throw seqmix::error("range " + std::to_string(b)); }),
                      "range 0");
  REQUIRE_THROWS_AS(seqmix::parallel_for(3, 9,
                                         [](index_t i) {
                                           if (i == 8) throw std::logic_error("last");
                                         }),
                    std::logic_error);
  std::atomic<index_t> total{0};
  seqmix::parallel_ranges(exec::recurrent{.threads = 2, .pool = &mine}, 1000, [&](index_t b, index_t e) { total += e - b; });
  CHECK(total == 1000);
}

TEST_CASE("nested parallel calls complete (no deadlock) and compute the right sums", "[threads]") {
  thread_pool one(1);
  for (thread_pool* pool : {static_cast<thread_pool*>(nullptr), &one}) {
    const exec::recurrent p{.threads = 4, .pool = pool};
    std::atomic<long> sum{0};
    seqmix::parallel_for(p, 6, [&](index_t i) {
      seqmix::parallel_for(p, 5, [&](index_t j) {
        seqmix::parallel_for(3, 4, [&](index_t k) { sum += i * 100 + j * 10 + k; });  // plain count: the bound pool
      });
    });
    long want = 0;
    for (long i = 0; i < 6; ++i)
      for (long j = 0; j < 5; ++j)
        for (long k = 0; k < 4; ++k) want += i * 100 + j * 10 + k;
    CHECK(sum == want);
  }
  // Inside a pool's worker, plain-count calls run on that pool, not the default one.
  const auto default_jobs = thread_pool::default_pool().jobs();
  seqmix::parallel_for(exec::recurrent{.threads = 2, .pool = &one}, 2, [&](index_t) { seqmix::parallel_for(2, 2, [](index_t) {}); });
  CHECK(thread_pool::default_pool().jobs() == default_jobs);
}

TEST_CASE("several threads share one pool at once", "[threads]") {
  thread_pool shared(2);
  std::vector<long> sums(4, 0);
  {
    std::vector<std::jthread> callers;
    for (std::size_t c = 0; c < sums.size(); ++c)
      callers.emplace_back([&, c] {
        for (int rep = 0; rep < 50; ++rep) {
          std::atomic<long> s{0};
          seqmix::parallel_for(exec::recurrent{.threads = 3, .pool = &shared}, 100, [&](index_t i) { s += i; });
          sums[c] += s;
        }
      });
  }
  for (long s : sums) CHECK(s == 50 * 4950);
  CHECK(shared.jobs() == 200);
}

TEST_CASE("sleeping workers and waiting callers are woken", "[threads]") {
  // No polling: every call finds the workers asleep, and a caller whose part ends first sleeps too.
  thread_pool sleepy(2, std::chrono::microseconds(0));
  for (int call = 0; call < 40; ++call) {
    if (call % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
    std::atomic<long> sum{0};
    seqmix::parallel_for(exec::recurrent{.threads = 3, .pool = &sleepy}, 3, [&](index_t i) {
      if (i > 0 && call % 2 == 1) std::this_thread::sleep_for(std::chrono::microseconds(200));  // the caller waits
      sum += i + 1;
    });
    CHECK(sum == 6);
  }
  CHECK(sleepy.jobs() == 40);
}

TEST_CASE("threads = 0 or negative is a seqmix::error naming the policy", "[threads]") {
  auto nothing = [](index_t) {};
  REQUIRE_THROWS_WITH(seqmix::parallel_for(exec::chunkwise<16>{.threads = 0}, 10, nothing),
                      Catch::Contains("exec::chunkwise") && Catch::Contains("threads must be at least 1 (got 0)"));
  REQUIRE_THROWS_WITH(seqmix::parallel_for(exec::recurrent{.threads = -2}, 10, nothing),
                      Catch::Contains("exec::recurrent") && Catch::Contains("(got -2)"));
  REQUIRE_THROWS_AS(seqmix::parallel_for(exec::automatic{.threads = 0}, 0, nothing), seqmix::error);  // even with no work
  REQUIRE_THROWS_WITH(seqmix::parallel_for(0, 10, nothing), Catch::Contains("threads must be at least 1 (got 0)"));
  REQUIRE_THROWS_AS(seqmix::parallel_ranges(-1, 10, [](index_t, index_t) {}), seqmix::error);
}

TEST_CASE("exec::rebind carries threads and pool to another policy kind", "[threads]") {
  thread_pool mine(1);
  const exec::automatic a{.threads = 3, .recurrent_below = 5, .pool = &mine};
  const auto r = exec::rebind<exec::recurrent>(a);
  const auto c = exec::rebind<exec::chunkwise<32>>(a);
  CHECK(r.threads == 3);
  CHECK(r.pool == &mine);
  CHECK(c.threads == 3);
  CHECK(c.pool == &mine);
  CHECK(exec::rebind<exec::parallel>(exec::recurrent{}).pool == nullptr);
}

TEST_CASE("threads_for_work: one thread per 2^16 units of work, at most the policy's", "[threads]") {
  CHECK(threads_for_work(2, 8 * 64 * 64) == 1);     // a GLA / Gated DeltaNet K64 decode step
  CHECK(threads_for_work(2, 8 * 128 * 128) == 2);   // Gated DeltaNet K128
  CHECK(threads_for_work(8, 24 * 64 * 128) == 3);   // Mamba-2: 3 · 2^16 units
  CHECK(threads_for_work(2, 131071) == 1);          // just below two threads' worth
  CHECK(threads_for_work(1, 1e12) == 1);
  CHECK(threads_for_work(4, 0) == 1);
  CHECK(threads_for_work(4, std::numeric_limits<double>::quiet_NaN()) == 1);
  CHECK(threads_for_work(16, 1e6, 1e5) == 10);
  CHECK(threads_for_work(0, 1e12) == 0);            // left invalid, for the caller's check to name
}
