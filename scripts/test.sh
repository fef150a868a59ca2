#!/usr/bin/env bash
# Runs every promlake test on a fresh machine: installs what the tests talk to (Debian's
# prometheus, promtool, pushgateway and victoria-metrics; DuckDB and the moto S3 server in a
# Python venv), then
# checks formatting, runs clippy with warnings denied, and runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || need_apt+=(prometheus-pushgateway)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

VENV="${PROMLAKE_VENV:-$PWD/target/test-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import duckdb, moto.server' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
export PROMLAKE_TEST_PYTHON="$VENV/bin/python"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
