# CMake toolchain for building the C++ core on this machine for another operating system
# (scripts/check_cross_build.sh): zig's clang for macOS or Windows. Not for wheels: no Python
# module is built (PYFER_BUILD_PYTHON=OFF), only libpyfer_core.a and the pyfer_selftest program.
#
# Reads the environment (which also reaches CMake's try_compile projects):
#   PYFER_ZIG_SYSTEM  Darwin | Windows               -> CMAKE_SYSTEM_NAME
#   PYFER_ZIG_ARCH    arm64 | x86_64 | AMD64         -> CMAKE_SYSTEM_PROCESSOR (decides the x86 kernels)
#   PYFER_ZIG_BIN     a folder with the wrappers cc, c++, ar, ranlib running `zig cc|c++ -target ...`
foreach(var PYFER_ZIG_SYSTEM PYFER_ZIG_ARCH PYFER_ZIG_BIN)
  if(NOT DEFINED ENV{${var}})
    message(FATAL_ERROR "zig-cross-toolchain.cmake needs ${var} in the environment")
  endif()
endforeach()
set(CMAKE_SYSTEM_NAME $ENV{PYFER_ZIG_SYSTEM})
set(CMAKE_SYSTEM_PROCESSOR $ENV{PYFER_ZIG_ARCH})
set(CMAKE_C_COMPILER $ENV{PYFER_ZIG_BIN}/cc)
set(CMAKE_CXX_COMPILER $ENV{PYFER_ZIG_BIN}/c++)
set(CMAKE_AR $ENV{PYFER_ZIG_BIN}/ar CACHE FILEPATH "zig ar")
set(CMAKE_RANLIB $ENV{PYFER_ZIG_BIN}/ranlib CACHE FILEPATH "zig ranlib")
