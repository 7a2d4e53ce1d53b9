// Checkpoints edited for error and identity tests: a file with an entry left out or rewritten.
#pragma once

#include <seqmix/io/safetensors.hpp>
#include <string>
#include <vector>

namespace seqmix::test {

/// `file` with each entry passed through edit(name, bytes): an entry is kept when edit returns
/// true (with the bytes as edit left them) and left out when it returns false.
template <class Edit>
io::safetensors rewritten(const io::safetensors& file, Edit&& edit) {
  io::safetensors_writer w;
  for (const auto& n : file.names()) {
    std::vector<std::byte> raw(file.raw(n).begin(), file.raw(n).end());
    if (edit(n, raw)) w.add_raw(n, file.info(n).type, file.info(n).shape, raw);
  }
  return io::safetensors::parse(w.bytes(), "edited");
}

/// `file` without the entry `missing`.
inline io::safetensors without_entry(const io::safetensors& file, const std::string& missing) {
  return rewritten(file, [&](const std::string& n, std::vector<std::byte>&) { return n != missing; });
}

}  // namespace seqmix::test
