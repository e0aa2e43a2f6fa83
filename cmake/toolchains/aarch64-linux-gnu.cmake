# Cross-compiles the engine for 64-bit Arm Linux (Raspberry Pi 4/5, Ampere,
# Graviton, Apple silicon under Linux) against the Debian 12 arm64 sysroot
# that scripts/sysroot-arm64 builds; scripts/cross-arm64 uses it. ctest and
# gtest_discover_tests run the arm64 binaries through qemu-user (`-cpu max`:
# every feature qemu has; the kernels dispatch to NEON, kernels/CMakeLists.txt).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
if(DEFINED ENV{ST_ARM64_SYSROOT})
  get_filename_component(ST_ARM64_SYSROOT "$ENV{ST_ARM64_SYSROOT}" ABSOLUTE)
else()
  get_filename_component(ST_ARM64_SYSROOT "${CMAKE_CURRENT_LIST_DIR}/../../.cache/sysroot-arm64" ABSOLUTE)
endif()
set(CMAKE_SYSROOT ${ST_ARM64_SYSROOT})
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# crt1.o and friends live in the sysroot's multiarch folder.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-B${ST_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-B${ST_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-cpu;max;-L;${ST_ARM64_SYSROOT})
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${ST_ARM64_SYSROOT})
set(ENV{PKG_CONFIG_LIBDIR} "${ST_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${ST_ARM64_SYSROOT}/usr/share/pkgconfig")
