// Tests for parallel_ranges / parallel_for and the execution policy types.
#include <catch2/catch.hpp>

#include <seqmix/error.hpp>
#include <seqmix/policy/execution.hpp>
#include <seqmix/policy/threads.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using seqmix::index_t;
namespace exec = seqmix::exec;

namespace {

constexpr index_t sizes[] = {0, 1, 2, 7, 100};
constexpr int thread_counts[] = {0, 1, 2, 3, 8};

}  // namespace

TEST_CASE("parallel_for visits every index exactly once", "[threads]") {
  for (index_t n : sizes)
    for (int threads : thread_counts) {
      INFO("n=" << n << " threads=" << threads);
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      std::atomic<int> out_of_range{0};
      seqmix::parallel_for(threads, n, [&](index_t i) {
        if (i < 0 || i >= n) ++out_of_range;
        else ++hits[static_cast<std::size_t>(i)];
      });
      CHECK(out_of_range == 0);
      CHECK(std::all_of(hits.begin(), hits.end(), [](const std::atomic<int>& h) { return h == 1; }));
    }
}

TEST_CASE("parallel_ranges splits 0..n into contiguous near-equal ranges", "[threads]") {
  for (index_t n : sizes)
    for (int threads : thread_counts) {
      INFO("n=" << n << " threads=" << threads);
      std::mutex mu;
      std::vector<std::pair<index_t, index_t>> ranges;
      std::set<std::thread::id> ids;
      seqmix::parallel_ranges(threads, n, [&](index_t begin, index_t end) {
        const std::lock_guard lock(mu);
        ranges.emplace_back(begin, end);
        ids.insert(std::this_thread::get_id());
      });
      const index_t workers = std::min<index_t>(std::max(threads, 1), n);
      CHECK(static_cast<index_t>(ranges.size()) == workers);
      CHECK(static_cast<index_t>(ids.size()) == workers);  // one thread per range (the caller is one)
      std::sort(ranges.begin(), ranges.end());
      index_t next = 0, shortest = n, longest = 0;
      bool tiled = true;
      for (auto [b, e] : ranges) {
        tiled = tiled && b == next && e > b;
        next = e;
        shortest = std::min(shortest, e - b);
        longest = std::max(longest, e - b);
      }
      CHECK(tiled);
      CHECK(next == n);
      if (n > 0) CHECK(longest - shortest <= 1);
    }
  // Serial runs happen on the calling thread.
  std::thread::id seen;
  seqmix::parallel_ranges(1, 10, [&](index_t, index_t) { seen = std::this_thread::get_id(); });
  CHECK(seen == std::this_thread::get_id());
}

TEST_CASE("exceptions in workers are rethrown on the caller", "[threads]") {
  for (int threads : thread_counts)
    for (index_t bad : {index_t(0), index_t(50), index_t(99)}) {
      INFO("threads=" << threads << " throwing at i=" << bad);
      std::atomic<index_t> visited{0};
      auto body = [&](index_t i) {
        ++visited;
        if (i == bad) throw std::runtime_error("boom at " + std::to_string(i));
      };
      REQUIRE_THROWS_WITH(seqmix::parallel_for(threads, 100, body), "boom at " + std::to_string(bad));
      CHECK(visited >= 1);
      CHECK(visited <= 100);
    }
  // The exception type survives the trip, and with several failures one of them arrives.
  REQUIRE_THROWS_AS(seqmix::parallel_for(3, 9, [](index_t i) {
                      if (i == 8) throw seqmix::error("worker: failed");
                    }),
                    seqmix::error);
  REQUIRE_THROWS_AS(seqmix::parallel_ranges(4, 40, [](index_t, index_t) { throw std::logic_error("all"); }),
                    std::logic_error);
  // Without exceptions every range is processed.
  std::atomic<index_t> total{0};
  seqmix::parallel_ranges(8, 1000, [&](index_t b, index_t e) { total += e - b; });
  CHECK(total == 1000);
}

TEST_CASE("execution policy types", "[threads]") {
  using std::string_view;
  static_assert(string_view(exec::name_of<exec::recurrent>()) == "recurrent");
  static_assert(string_view(exec::name_of<exec::parallel>()) == "parallel");
  static_assert(string_view(exec::name_of<exec::automatic>()) == "automatic");
  static_assert(string_view(exec::name_of<exec::chunkwise<16>>()) == "chunkwise");
  CHECK(string_view(exec::name_of<exec::chunkwise<>>()) == "chunkwise");

  static_assert(exec::is_chunkwise_v<exec::chunkwise<16>>);
  static_assert(exec::is_chunkwise_v<exec::chunkwise<>>);
  static_assert(!exec::is_chunkwise_v<exec::recurrent>);
  static_assert(!exec::is_chunkwise_v<exec::automatic>);
  static_assert(!exec::is_chunkwise_v<int>);

  static_assert(exec::policy<exec::recurrent>);
  static_assert(exec::policy<exec::chunkwise<16>>);
  static_assert(exec::policy<exec::chunkwise<>>);
  static_assert(exec::policy<exec::parallel>);
  static_assert(exec::policy<exec::automatic>);
  static_assert(!exec::policy<int>);
  static_assert(!exec::policy<exec::recurrent*>);
  static_assert(!exec::unsupported<exec::recurrent>);

  static_assert(exec::chunkwise<16>::chunk == 16);
  static_assert(exec::chunkwise<>::chunk == 64);
  CHECK(exec::recurrent{}.threads == 1);
  CHECK(exec::chunkwise<32>{}.threads == 1);
  CHECK(exec::parallel{4}.threads == 4);
  const exec::automatic a{};
  CHECK(a.threads == 1);
  CHECK(a.recurrent_below == 16);
}
