# Install rules: headers, the exported seqmix::seqmix target and a relocatable package config.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY include/seqmix DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS seqmix EXPORT seqmixTargets)
install(EXPORT seqmixTargets NAMESPACE seqmix:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/seqmix)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/seqmixConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/seqmixConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/seqmix)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/seqmixConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/seqmixConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/seqmixConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/seqmix)
