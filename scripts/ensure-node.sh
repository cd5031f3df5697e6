#!/usr/bin/env bash
# Prints the directory of a Node 24 binary. Uses the machine's node when it is already 24 or
# newer; otherwise installs Node 24 from the npm registry's node-linux-<arch> package (a
# prebuilt binary inside an ordinary registry package) into .tools/node, once.
set -euo pipefail
want=24
root="$(cd "$(dirname "$0")/.." && pwd)"
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -ge "$want" ]; then dirname "$(command -v node)"; exit 0; fi
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "error: no node-linux package for $(uname -m); install Node $want yourself" >&2; exit 1 ;;
esac
tools="$root/.tools/node"
bin="$tools/node_modules/node-linux-$arch/bin"
if ! "$bin/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null | grep -qx "$want"; then
  echo "machine node is $(node --version 2>/dev/null || echo missing); installing Node $want into .tools/node" >&2
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --no-save --loglevel=error "node-linux-$arch@$want" >&2
fi
echo "$bin"
