#!/usr/bin/env bash
# Installs the Debian packages casesync builds and tests with, only when missing.
set -eu
pkgs="build-essential pkg-config libcivetweb-dev liblmdb-dev libcjson-dev zlib1g-dev libssl-dev libcurl4-openssl-dev libargon2-dev nginx-light openssl"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
