#!/usr/bin/env bash
# Installs the Debian packages casesync builds and tests with, only when missing.
set -eu
pkgs="build-essential pkg-config libcivetweb-dev liblmdb-dev libcjson-dev zlib1g-dev libssl-dev libcurl4-openssl-dev libargon2-dev nginx-light openssl openjdk-17-jdk-headless"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node runs the OpenAPI checks (tests/openapi/check.mjs); Debian's, unless a
# node and npm are already on the PATH.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "installing:$missing" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# The npm packages pinned in package-lock.json (validator and linter), again
# only when the lock file changed since the last install.
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
