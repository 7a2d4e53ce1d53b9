// libFuzzer target for the safetensors reader (io/safetensors.hpp, io/json.hpp, io/weights.hpp).
// Every input must either parse or raise seqmix::error; any other exception, a crash, a sanitizer
// report or a broken invariant (checked with SEQMIX_FUZZ_CHECK) is a finding. Accepted files are
// read back through every get<T, R> path, weight_source::load and a writer round trip.
// Built by scripts/fuzz.sh: with clang -fsanitize=fuzzer, or with replay.cpp as a plain driver.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/io/weights.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace io = seqmix::io;
using seqmix::index_t;

#define SEQMIX_FUZZ_CHECK(cond)                                                   \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

namespace {

template <class T, std::size_t R>
void read_as(const io::safetensors& f, const std::string& name) {
  try {
    const auto t = f.get<T, R>(name);
    SEQMIX_FUZZ_CHECK(t.size() == f.info(name).numel());
    // The in-memory copy is what a layer would read: touch every element.
    volatile T sink{};
    for (index_t i = 0; i < t.size(); ++i) sink = t.data()[i];
    (void)sink;
  } catch (const seqmix::error&) {
    // NaN into an integer, check_finite: both are errors by design.
  }
}

template <std::size_t R>
void read_rank(const io::safetensors& f, const std::string& name) {
  read_as<float, R>(f, name);
  read_as<double, R>(f, name);
  read_as<std::int64_t, R>(f, name);
  read_as<std::int8_t, R>(f, name);
  read_as<std::uint8_t, R>(f, name);
  const auto& info = f.info(name);
  std::array<index_t, R> shape{};
  for (std::size_t d = 0; d < R; ++d) shape[d] = info.shape[d];
  const io::weight_source ws(f, "", "fuzz", {.check_finite = true});
  try {
    (void)ws.load<float, R>(name, shape);
  } catch (const seqmix::error&) {
  }
  try {  // the wrong rank must be an error, not a crash
    (void)f.get<float, R == 4 ? 3 : R + 1>(name);
    SEQMIX_FUZZ_CHECK(false);
  } catch (const seqmix::error&) {
  }
}

void exercise(const io::safetensors& f) {
  io::safetensors_writer w;
  std::size_t data = 0;
  for (const auto& name : f.names()) {
    const auto& info = f.info(name);
    const auto raw = f.raw(name);
    SEQMIX_FUZZ_CHECK(info.name == name);
    SEQMIX_FUZZ_CHECK(info.numel() >= 0);
    SEQMIX_FUZZ_CHECK(raw.size() == static_cast<std::size_t>(info.numel()) * io::dtype_size(info.type));
    data += raw.size();
    switch (info.shape.size()) {
      case 0: read_rank<0>(f, name); break;
      case 1: read_rank<1>(f, name); break;
      case 2: read_rank<2>(f, name); break;
      case 3: read_rank<3>(f, name); break;
      case 4: read_rank<4>(f, name); break;
      default: break;
    }
    w.add_raw(name, info.type, info.shape, raw);
  }
  for (const auto& [k, v] : f.metadata()) {
    SEQMIX_FUZZ_CHECK(f.metadata(k) == v);
    w.add_metadata(k, v);
  }
  // What was read writes back and reads again to the same tensors, bytes and metadata.
  const auto again = io::safetensors::parse(w.bytes(), "round trip");
  SEQMIX_FUZZ_CHECK(again.names() == f.names());
  SEQMIX_FUZZ_CHECK(again.metadata() == f.metadata());
  std::size_t again_data = 0;
  for (const auto& name : f.names()) {
    const auto a = f.raw(name), b = again.raw(name);
    SEQMIX_FUZZ_CHECK(a.size() == b.size());
    SEQMIX_FUZZ_CHECK(std::equal(a.begin(), a.end(), b.begin()));
    SEQMIX_FUZZ_CHECK(again.info(name).shape == f.info(name).shape);
    SEQMIX_FUZZ_CHECK(again.info(name).type == f.info(name).type);
    again_data += b.size();
  }
  SEQMIX_FUZZ_CHECK(again_data == data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  io::safetensors f;
  try {
    // The last byte decides the check_finite option, so both paths are fuzzed.
    f = io::safetensors::parse(std::move(bytes), "fuzz", {.check_finite = size > 0 && (data[size - 1] & 1)});
  } catch (const seqmix::error&) {
    return 0;
  }
  exercise(f);  // a seqmix::error here (e.g. from the writer) escapes: an accepted file must round-trip
  return 0;
}
