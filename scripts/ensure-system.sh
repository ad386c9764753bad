#!/usr/bin/env bash
# Make sure the Debian packages the platform needs are installed.
# Usage: ensure-system.sh command=package [command=package ...]
# Installs missing ones with apt-get when run as root on Debian; otherwise says what is missing.
set -euo pipefail
missing_pkgs=()
for pair in "$@"; do
  cmd=${pair%%=*}; pkg=${pair#*=}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/bin/$cmd" ]; then
    missing_pkgs+=("$pkg")
  fi
done
[ ${#missing_pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing Debian packages: ${missing_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  # Debian's nginx package starts a system nginx on port 80; the platform runs its own.
  exit 0
fi
echo "Missing Debian packages: ${missing_pkgs[*]}" >&2
echo "Install them with: sudo apt-get install ${missing_pkgs[*]}" >&2
exit 1
