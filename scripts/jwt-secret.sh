#!/usr/bin/env bash
# Prints the secret the gateway of `make run` verifies bearer tokens with:
# ORDERFLOW_JWT_SECRET when it is set, else a development secret kept in
# .dev/jwt-secret (git-ignored, readable by its owner only), made on first
# use. Mint a token the gateway accepts with it:
#
#   ORDERFLOW_JWT_SECRET=$(scripts/jwt-secret.sh) bin/orderflow token --sub c-42
set -euo pipefail

if [ -n "${ORDERFLOW_JWT_SECRET:-}" ]; then
  printf '%s\n' "$ORDERFLOW_JWT_SECRET"
  exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
file="$root/.dev/jwt-secret"
if [ ! -s "$file" ]; then
  mkdir -p "$root/.dev"
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$file")
  printf 'jwt-secret.sh: made a development JWT secret in %s\n' "$file" >&2
fi
cat "$file"
echo
