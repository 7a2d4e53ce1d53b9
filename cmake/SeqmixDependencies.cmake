# Dependencies of the seqmix::seqmix target. Debian's xsimd CMake config links a target named
# `xtl` without finding it, so xtl is looked up first.
include(CMakeFindDependencyMacro)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(xtl QUIET)
find_package(xsimd 8 REQUIRED)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3 QUIET)  # optional: only refcheck/ and the tools use it
