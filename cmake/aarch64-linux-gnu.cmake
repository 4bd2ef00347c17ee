# CMake toolchain file: cross-compile cterp for aarch64 (arm64) Linux on a Debian 12 x86-64 host
# with Debian's gcc-aarch64-linux-gnu and the arm64 multiarch dev packages (dpkg
# --add-architecture arm64), and run the target binaries under qemu-user: ctest (and try_run)
# prefix every test command with CMAKE_CROSSCOMPILING_EMULATOR.
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCTERP_NATIVE=OFF
#
# scripts/cross-aarch64.sh installs the packages, configures, builds and runs the tests.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CTERP_CROSS_TRIPLE aarch64-linux-gnu)
# Debian multiarch: find_library/find_path also search <prefix>/lib/aarch64-linux-gnu and
# <prefix>/include/aarch64-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE ${CTERP_CROSS_TRIPLE})

set(CMAKE_C_COMPILER   ${CTERP_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${CTERP_CROSS_TRIPLE}-g++)

# Where to look: the cross toolchain's own tree (/usr/aarch64-linux-gnu: libc, loader, libgomp)
# and the host root for the multiarch packages (/usr/lib/aarch64-linux-gnu,
# /usr/include/aarch64-linux-gnu, /usr/include). Programs (pkg-config, qemu) come from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${CTERP_CROSS_TRIPLE} /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_PATH /usr/lib/${CTERP_CROSS_TRIPLE})
set(CMAKE_INCLUDE_PATH /usr/include/${CTERP_CROSS_TRIPLE} /usr/include)
# Never the host's own multiarch directories.
set(CMAKE_IGNORE_PATH
  /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/include/x86_64-linux-gnu
  /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/x86_64-linux-gnu/openblas-pthread
  /usr/include/x86_64-linux-gnu/openblas-openmp /usr/include/x86_64-linux-gnu/openblas-pthread)

# OpenBLAS: CMakeLists.txt searches the x86-64 HINTS before the aarch64 ones, so give it the
# arm64 OpenMP flavour (else the pthread one) up front; a -D on the command line still wins.
foreach(flavour openblas-openmp openblas-pthread)
  if(NOT OPENBLAS_LIB AND EXISTS /usr/lib/${CTERP_CROSS_TRIPLE}/${flavour}/libopenblas.so)
    set(OPENBLAS_LIB /usr/lib/${CTERP_CROSS_TRIPLE}/${flavour}/libopenblas.so CACHE FILEPATH "arm64 OpenBLAS")
    set(OPENBLAS_INC /usr/include/${CTERP_CROSS_TRIPLE}/${flavour} CACHE PATH "arm64 OpenBLAS headers")
  endif()
endforeach()

# pkg-config (host pkgconf): only the arm64 .pc files and the architecture-independent ones.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${CTERP_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Run target binaries under qemu-user. -L <prefix> makes qemu look up absolute paths (the ELF
# interpreter /lib/ld-linux-aarch64.so.1, then libc and the other libraries) under <prefix> first,
# then on the host.
#
# The loader and libc must come from the same glibc build. The arm64 dev packages pull in the
# multiarch libc6:arm64 (/lib/ld-linux-aarch64.so.1, /lib/aarch64-linux-gnu/libc.so.6), and the
# loader finds that libc through /etc/ld.so.cache and its default path. So -L / (the multiarch
# loader) whenever it is installed. -L /usr/aarch64-linux-gnu would pair libc6-arm64-cross's
# loader (Debian 12: 2.36-8cross1) with libc6:arm64's libc (2.36-9+deb12u14): every
# pthread_create then spins forever (OpenMP tests hang; a bare pthread_create test hangs too).
# That prefix is only right where libc6:arm64 is absent (cross libc only).
if(NOT DEFINED CTERP_QEMU_LD_PREFIX)
  if(EXISTS /lib/ld-linux-aarch64.so.1)
    set(CTERP_QEMU_LD_PREFIX /)
  else()
    set(CTERP_QEMU_LD_PREFIX /usr/${CTERP_CROSS_TRIPLE})
  endif()
endif()
find_program(CTERP_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static NO_CMAKE_FIND_ROOT_PATH)
if(NOT CTERP_QEMU_AARCH64)
  set(CTERP_QEMU_AARCH64 qemu-aarch64)
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR "${CTERP_QEMU_AARCH64};-L;${CTERP_QEMU_LD_PREFIX}")
