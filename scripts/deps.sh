#!/usr/bin/env bash
# Installs what casesync builds and tests with, only when missing: Debian
# packages (libnats-dev and nats-server for cluster mode and its tests; chromium and a CJK font for the console's browser tests, the JDK
# for the Java binding's test, nodejs and npm for the console's build and the
# OpenAPI checks, python3 for the independent audit verifier, libcsv for the
# hotline import, msgpack-c for the bench's format candidates), then the npm
# packages pinned in package-lock.json (npm ci).
set -eu
cd "$(dirname "$0")/.."
pkgs="build-essential pkg-config libcivetweb-dev liblmdb-dev libcjson-dev zlib1g-dev libssl-dev libcurl4-openssl-dev libargon2-dev libcsv-dev libmsgpack-dev libnats-dev nats-server nginx-light openssl chromium fonts-wqy-microhei openjdk-17-jdk-headless"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# python3 runs tools/verify_audit.py, the independent audit chain check (tests/test_storev2.c).
command -v python3 >/dev/null 2>&1 || missing="$missing python3-minimal"
# node and npm may come from elsewhere (a nodesource build carries npm itself).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "installing:$missing" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# The console's libraries, its bundler, playwright-core (no browser download:
# the tests drive Debian's /usr/bin/chromium) and the OpenAPI linter and
# validator. Again only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "npm ci" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
