#!/usr/bin/env bash
# Rough figures for blocks in a local directory vs in an S3-compatible bucket (moto on
# 127.0.0.1): time of a flush, dashboard query latency over blocks (warm), the first query
# after a restart (cold: samples fetched from the store) and block store requests per query.
# Usage: scripts/bench-objstore.sh PROMLAKE_BINARY PYTHON_WITH_MOTO [SERIES] [SCRAPES]
# Writes nothing outside a temp dir; prints one block of figures per mode.
set -euo pipefail
BIN="$1"; PY="$2"; SERIES="${3:-2000}"; SCRAPES="${4:-480}"
WORK="$(mktemp -d)"; PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOTO_PORT=$(free_port)
"$PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/" && break; sleep 0.5; done
curl -sf -X PUT "http://127.0.0.1:$MOTO_PORT/bench-blocks" >/dev/null

start() { # mode data_dir -> sets URL, PID
  local mode="$1" dir="$2" port; port=$(free_port)
  { echo '[query]'; echo 'split_interval = "0s"'; } >"$WORK/$mode.toml"
  if [ "$mode" = s3 ]; then
    cat >>"$WORK/$mode.toml" <<EOF
[storage]
blocks_url = "s3://bench-blocks/run"
[storage.s3]
endpoint = "http://127.0.0.1:$MOTO_PORT"
allow_http = true
access_key_id = "bench"
secret_access_key = "bench"
EOF
  fi
  "$BIN" serve --config "$WORK/$mode.toml" --data-dir "$dir" --http-listen "127.0.0.1:$port" \
    --grpc-listen 127.0.0.1:0 2>"$WORK/$mode.log" & PID=$!; PIDS+=($PID)
  URL="http://127.0.0.1:$port"
  for _ in $(seq 1 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/-/ready")" = 200 ] && return; sleep 0.1; done
  echo "promlake ($mode) not ready" >&2; cat "$WORK/$mode.log" >&2; exit 1
}
gets() { curl -s "$URL/metrics" | awk '/^promlake_block_store_requests\{op="get"\}/ {print $2}'; }
Q='sum by (mode) (rate(node_cpu_seconds_total[30m]))'
query() { curl -s -o /dev/null -w '%{time_total}' --data-urlencode "query=$Q" \
  --data-urlencode "time=$T" "$URL/api/v1/query"; }

for mode in local s3; do
  start "$mode" "$WORK/data-$mode"
  "$BIN" bench ingest --url "$URL/api/v1/write" --series "$SERIES" --scrapes "$SCRAPES" >"$WORK/ingest-$mode.log" 2>&1
  T=$(date +%s) # every instant query at this time: the data ends just before
  flush=$(curl -s -o /dev/null -w '%{time_total}' -X POST "$URL/api/v1/admin/tsdb/flush")
  query >/dev/null # loads the blocks' samples
  g0=$(gets); warm=$(query); g1=$(gets)
  "$BIN" bench query --url "$URL" --runs 5 --range 1h >"$WORK/query-$mode.log" 2>&1
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true
  start "$mode" "$WORK/data-$mode"
  c0=$(gets); cold=$(query); c1=$(gets)
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true
  echo "== $mode: $SERIES series x $SCRAPES scrapes"
  echo "flush_s=$flush"
  echo "instant_query_warm_s=$warm gets_during=$((g1 - g0))"
  echo "instant_query_after_restart_s=$cold gets_during=$((c1 - c0))"
  grep -iE "p50|p95|instant|range" "$WORK/query-$mode.log" | tail -4
done
