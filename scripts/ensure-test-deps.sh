#!/usr/bin/env bash
# Installs the real servers the tests start (never mocked): redis-server and nginx (with
# auth_request and ssl: Debian's nginx-light) from Debian; openssl makes the test certificates.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "installing test dependencies: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: ${missing[*]} missing and not root; install with: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts a system redis and nginx; the tests start their own on free ports.
$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
$SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
