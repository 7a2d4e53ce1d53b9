// Every reference case under tests/data/refs through every policy its layer supports, with the
// tolerance rule of refs/README.md (|got - want| <= atol + rtol·|want| for every out.* and state_out.*).
#include <refcheck/registry.hpp>

#include <catch2/catch.hpp>
#include <filesystem>

using namespace seqmix::refcheck;

TEST_CASE("reference cases pass with every policy", "[refs]") {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(SEQMIX_TEST_DATA_DIR "/refs"))
    if (e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(!files.empty());
  int passed = 0;
  for (const auto& f : files) {
    const auto c = ref_case::load(f);
    for (const auto& r : check(c, {policy_kind::recurrent, policy_kind::chunkwise, policy_kind::parallel})) {
      INFO(r.line());
      CHECK(r.state != result::status::fail);
      passed += r.passed();
    }
  }
  // Every layer with cases in tests/data/refs is implemented, so nothing may be skipped.
  CHECK(passed == 3 * static_cast<int>(files.size()));
}
