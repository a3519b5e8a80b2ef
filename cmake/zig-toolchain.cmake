# CMake toolchain for the prebuilt wheels (scripts/build_wheels.sh, docs/packaging.md):
# zig's clang as C/C++ compiler, targeting an old glibc (manylinux_2_28) on x86_64 or aarch64,
# with zig's libc++ linked statically into the module (no libstdc++ dependency at all).
#
# Reads two environment variables (the environment, unlike -D values, also reaches CMake's
# try_compile projects):
#   PYFER_ZIG_ARCH  x86_64 | aarch64                     -> CMAKE_SYSTEM_PROCESSOR
#   PYFER_ZIG_BIN   a folder with the wrapper scripts cc, c++, ar, ranlib that run
#                   `zig cc|c++ -target <arch>-linux-gnu.2.28 ...` / `zig ar|ranlib`
#                   (scripts/build_wheels.sh writes them)
# CMAKE_SYSTEM_PROCESSOR is what CMakeLists.txt uses to decide whether the AVX2 translation
# units (and their -mavx2 -mfma flags) are built, so an aarch64 build gets the portable kernels
# only (csrc/kernels/no_x86.cpp).
if(NOT DEFINED ENV{PYFER_ZIG_ARCH} OR NOT DEFINED ENV{PYFER_ZIG_BIN})
  message(FATAL_ERROR "zig-toolchain.cmake needs PYFER_ZIG_ARCH and PYFER_ZIG_BIN in the environment")
endif()
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR $ENV{PYFER_ZIG_ARCH})
set(CMAKE_C_COMPILER $ENV{PYFER_ZIG_BIN}/cc)
set(CMAKE_CXX_COMPILER $ENV{PYFER_ZIG_BIN}/c++)
set(CMAKE_AR $ENV{PYFER_ZIG_BIN}/ar CACHE FILEPATH "zig ar")
set(CMAKE_RANLIB $ENV{PYFER_ZIG_BIN}/ranlib CACHE FILEPATH "zig ranlib")
# The host's binutils strip does not know aarch64: strip at link time instead (lld --strip-all),
# and give pybind11 no strip step.
set(CMAKE_STRIP "" CACHE FILEPATH "no strip step; modules are stripped by the linker")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,--strip-all")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-Wl,--strip-all")
# No link-time optimisation (pybind11 adds -flto to the module otherwise): with -flto zig also
# rebuilds its libc++ as LTO bitcode (3.5 min per target here) and links for minutes; the hot
# code is in pyfer_core, which is never built with LTO anyway.
set(CMAKE_INTERPROCEDURAL_OPTIMIZATION OFF CACHE BOOL "")
# pybind11: take the extension suffix from SETUPTOOLS_EXT_SUFFIX / SKBUILD_SOABI (set by
# build_wheels.sh for the target), not from the host interpreter
set(PYBIND11_USE_CROSSCOMPILING ON CACHE BOOL "")
