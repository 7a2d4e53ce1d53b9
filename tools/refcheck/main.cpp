// seqmix-refcheck [--policy recurrent|chunkwise|parallel|all] FILE...
// Runs reference cases through seqmix: one line per file and policy, then "N passed, N failed,
// N skipped". Exit status: 0 when every case passed, 1 when one failed, 3 when none failed but
// some were skipped (a layer seqmix does not implement, an unsupported option) or nothing ran.
#include <refcheck/registry.hpp>

#include <cstdio>
#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
  using seqmix::refcheck::policy_kind;
  std::vector<policy_kind> policies{policy_kind::recurrent, policy_kind::chunkwise, policy_kind::parallel};
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--policy" && i + 1 < argc) {
      const std::string p = argv[++i];
      if (p == "all") continue;
      if (p == "recurrent") policies = {policy_kind::recurrent};
      else if (p == "chunkwise") policies = {policy_kind::chunkwise};
      else if (p == "parallel") policies = {policy_kind::parallel};
      else {
        std::cerr << "seqmix-refcheck: unknown policy '" << p << "' (recurrent, chunkwise, parallel or all)\n";
        return 2;
      }
    } else if (a == "-h" || a == "--help") {
      std::cout << "usage: seqmix-refcheck [--policy recurrent|chunkwise|parallel|all] FILE...\n";
      return 0;
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    std::cerr << "usage: seqmix-refcheck [--policy recurrent|chunkwise|parallel|all] FILE...\n";
    return 2;
  }
  int passed = 0, failed = 0, skipped = 0;
  for (const auto& f : files) {
    try {
      const auto c = seqmix::refcheck::ref_case::load(f);
      for (const auto& r : seqmix::refcheck::check(c, policies)) {
        std::cout << r.line() << '\n';
        if (r.state == seqmix::refcheck::result::status::pass) ++passed;
        if (r.state == seqmix::refcheck::result::status::fail) ++failed;
        if (r.state == seqmix::refcheck::result::status::skip) ++skipped;
      }
    } catch (const std::exception& e) {
      std::cout << "FAIL " << f << " - - (" << e.what() << ")\n";
      ++failed;
    }
  }
  std::cout << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  if (failed) return 1;
  return skipped > 0 || passed == 0 ? 3 : 0;
}
