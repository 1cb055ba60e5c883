#!/usr/bin/env bash
# `make run`: the bot on 127.0.0.1:18789 and the sidecar in front of it on :8080, embedded defaults.
# Ctrl-C (or SIGTERM) stops both.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BOT_PORT=${BOT_PORT:-18789}
SIDECAR_PORT=${SIDECAR_PORT:-8080}
SIDECAR_ADMIN_PORT=${SIDECAR_ADMIN_PORT:-9901}
mkdir -p var
export BOT_PORT BOT_LOG_FILE=${BOT_LOG_FILE:-var/bot.log}

pids=()
stop() {
    trap - INT TERM
    echo; echo "stopping..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    wait "${pids[@]}" 2>/dev/null
    exit 0
}
trap stop INT TERM

wait_http() {
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not come up; see the logs above" >&2
    stop
}

$PY -m bot > >(tee -a var/bot.stdout.log) 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${BOT_PORT}/health"

entry="http://127.0.0.1:${BOT_PORT}"
if [[ -f sidecar/__main__.py ]]; then
    SIDECAR_PORT=$SIDECAR_PORT SIDECAR_ADMIN_PORT=$SIDECAR_ADMIN_PORT \
    SIDECAR_UPSTREAM=${SIDECAR_UPSTREAM:-http://127.0.0.1:${BOT_PORT}} \
        $PY -m sidecar > var/sidecar.stdout.log 2>&1 &
    pids+=($!)
    wait_http "http://127.0.0.1:${SIDECAR_ADMIN_PORT}/sidecar/health"
    entry="http://127.0.0.1:${SIDECAR_PORT}"
fi

cat <<MSG

botwatch is running (Ctrl-C stops everything)
  entry point      ${entry}
  chat API         curl -X POST ${entry}/api/v1/chat -H 'Content-Type: application/json' -d '{"message":"hello"}'
  bot direct       http://127.0.0.1:${BOT_PORT}   (/health, /api/health, /ready, /metrics)
MSG
if [[ -f sidecar/__main__.py ]]; then
    echo "  sidecar admin    http://127.0.0.1:${SIDECAR_ADMIN_PORT}   (/metrics, /sidecar/health, /sidecar/ready)"
fi
echo "  logs             var/bot.log (ECS JSON)"
echo

wait -n "${pids[@]}"
stop
