// UltraMem op reference: spec/ultramem.md written step by step in double (scores, rank-1
// approximation, full sorts for the three selections, the exact grid, the weighted sum). For tests
// only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ultramem {

/// The op in double: shapes as forward(); o, indices, scores written for every token. Selections
/// rank by value, then by smaller index (virtual index on the grid), sorting all candidates.
template <class T>
void ref(tensor_view<const T, 3> q_row, tensor_view<const T, 3> q_col, tensor_view<const T, 4> keys,
         tensor_view<const T, 3> core, tensor_view<const T, 3> values, tensor_view<T, 4> o,
         tensor_view<std::int64_t, 4> indices, tensor_view<T, 4> scores, options opt = {}) {
  const index_t B = q_row.extent(0), L = q_row.extent(1), dk = q_row.extent(2), r = keys.extent(1), n = keys.extent(2),
                h = core.extent(0), m = indices.extent(3), dv = values.extent(2);
  check_retrieval("ultramem::ref", q_row, q_col, keys, core, indices, scores);
  check_shape("ultramem::ref", "values", values.extents(), {h, n * n, dv});
  check_shape("ultramem::ref", "o", o.extents(), {B, L, h, dv});
  std::vector<double> U, Tt;
  core_factors(core, U, Tt);
  auto top = [](const std::vector<double>& s, const std::vector<index_t>& id, index_t k) {
    std::vector<std::size_t> ord(s.size());
    std::iota(ord.begin(), ord.end(), std::size_t(0));
    std::sort(ord.begin(), ord.end(), [&](std::size_t a, std::size_t b) { return s[a] > s[b] || (s[a] == s[b] && id[a] < id[b]); });
    ord.resize(std::size_t(k));
    return ord;
  };
  std::vector<double> Sr(std::size_t(r * n)), Sc(Sr.size());
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      for (index_t a = 0; a < r; ++a)
        for (index_t i = 0; i < n; ++i) {
          double x = 0, y = 0;
          for (index_t j = 0; j < dk; ++j)
            x += double(keys(0, a, i, j)) * q_row(b, t, j), y += double(keys(1, a, i, j)) * q_col(b, t, j);
          Sr[std::size_t(a * n + i)] = x, Sc[std::size_t(a * n + i)] = y;
        }
      for (index_t hh = 0; hh < h; ++hh) {
        std::vector<double> row(std::size_t(n), 0.0), col(std::size_t(n), 0.0);
        std::vector<index_t> ids(static_cast<std::size_t>(n));
        std::iota(ids.begin(), ids.end(), index_t(0));
        for (index_t i = 0; i < n; ++i)
          for (index_t a = 0; a < r; ++a)
            row[std::size_t(i)] += U[std::size_t(hh * r + a)] * Sr[std::size_t(a * n + i)],
                col[std::size_t(i)] += Tt[std::size_t(hh * r + a)] * Sc[std::size_t(a * n + i)];
        const auto I = top(row, ids, m), J = top(col, ids, m);
        std::vector<double> grid;
        std::vector<index_t> vid;
        for (auto i : I)
          for (auto j : J) {
            double s = 0;
            for (index_t a = 0; a < r; ++a)
              for (index_t c = 0; c < r; ++c)
                s += Sr[std::size_t(a * n + index_t(i))] * double(core(hh, a, c)) * Sc[std::size_t(c * n + index_t(j))];
            grid.push_back(s), vid.push_back(index_t(i) * n + index_t(j));
          }
        const auto K = top(grid, vid, m);
        std::vector<double> acc(std::size_t(dv), 0.0);
        for (index_t k = 0; k < m; ++k) {
          const std::size_t g = K[std::size_t(k)];
          indices(b, t, hh, k) = vid[g], scores(b, t, hh, k) = static_cast<T>(grid[g]);
          const double w = opt.act == activation::relu ? std::max(grid[g], 0.0) : grid[g];
          for (index_t c = 0; c < dv; ++c) acc[std::size_t(c)] += w * double(values(hh, vid[g], c));
        }
        for (index_t c = 0; c < dv; ++c) o(b, t, hh, c) = static_cast<T>(acc[std::size_t(c)]);
      }
    }
}

}  // namespace seqmix::kernels::ultramem
