#!/usr/bin/env bash
# Installs clang and libFuzzer (Debian: clang, libclang-rt-dev) for `make fuzz`,
# only when clang cannot link a libFuzzer target yet.
set -eu
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' >"$probe/t.c"
if command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1 &&
   "${FUZZ_CC:-clang}" -fsanitize=fuzzer,address,undefined "$probe/t.c" -o "$probe/t" 2>/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: clang libclang-rt-dev" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-rt-dev >/dev/null
