// Thread pool benchmarks: the cost of one parallel call with an empty body (the pool's own
// overhead: handing a range to a worker and waiting for it), on the default pool and on a pool
// the caller owns. threads:1 touches no pool.
#include <seqmix/policy/threads.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

void pool_call(const char* pool_name, bool own_pool, int threads) {
  add(name(std::string("pool/parallel_for/") + pool_name + "/call", {{"parts", threads}, {"threads", threads}}), 0, 0,
      [=](benchmark::State& state) {
        thread_pool mine(own_pool ? threads - 1 : 0);
        const exec::recurrent policy{.threads = threads, .pool = own_pool ? &mine : nullptr};
        for (auto _ : state) parallel_for(policy, threads, [](index_t) { benchmark::ClobberMemory(); });
      });
}

const bool registered = [] {
  for (int threads : {1, 2}) {
    pool_call("default", false, threads);
    pool_call("own", true, threads);
  }
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
