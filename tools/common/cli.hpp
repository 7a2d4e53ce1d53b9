// What the command-line tools share: whole-string numbers, reading a file, a wall clock, grouped
// digits for tables. Tool code, not part of the library.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <seqmix/error.hpp>
#include <sstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace seqmix::tools {

/// `text` as a number of type N, all of it (std::sto* accept trailing text); `flag` names it in errors.
template <class N>
N number(const std::string& flag, const std::string& text) {
  std::istringstream in(text);
  N v{};
  if (!(in >> v) || !in.eof()) throw error(flag + " '" + text + "' is not a number");
  return v;
}

/// Splits argv into positional arguments (returned, in order) and options "--name value", each
/// passed to option(name, value); a name in `switches` takes no value (option gets "").
template <class Option>
std::vector<std::string> parse_args(int argc, char** argv, std::initializer_list<std::string_view> switches, Option&& option) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (!a.starts_with("--")) {
      positional.push_back(a);
      continue;
    }
    bool is_switch = false;
    for (auto sw : switches) is_switch = is_switch || a == sw;
    if (is_switch) {
      option(a, std::string());
      continue;
    }
    if (i + 1 >= argc) throw error(a + " needs a value");
    option(a, std::string(argv[++i]));
  }
  return positional;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// "1,234,567" for a table column.
inline std::string grouped(long long n) {
  std::string s = std::to_string(n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), ",");
  return s;
}

/// A tool's main(): options = parse(argc, argv), then run(options). A seqmix::error while parsing
/// prints the usage and exits 2; one while running (a bad config or checkpoint...) exits 1.
template <class Parse, class Run>
int tool_main(const char* name, const char* usage, int argc, char** argv, Parse&& parse, Run&& run) {
  decltype(parse(argc, argv)) options;
  try {
    options = parse(argc, argv);
  } catch (const seqmix::error& e) {
    std::fprintf(stderr, "%s: %s\n%s", name, e.what(), usage);
    return 2;
  }
  try {
    return run(options);
  } catch (const seqmix::error& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace seqmix::tools
