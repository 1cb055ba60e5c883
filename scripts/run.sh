#!/usr/bin/env bash
# `make run`: the bot on 127.0.0.1:18789 and the sidecar in front of it on :8080, embedded defaults.
# Ctrl-C (or SIGTERM) stops both and exits 0. A process that fails to start, or dies later, stops
# the other too and the run exits non-zero, its reason on the terminal. One instance at a time.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BOT_PORT=${BOT_PORT:-18789}
SIDECAR_PORT=${SIDECAR_PORT:-8080}
SIDECAR_ADMIN_PORT=${SIDECAR_ADMIN_PORT:-9901}
RUN_DIR=${RUN_DIR:-var}
mkdir -p "$RUN_DIR"
export BOT_PORT BOT_LOG_FILE=${BOT_LOG_FILE:-$RUN_DIR/bot.log}
PIDFILE=$RUN_DIR/run.pid

say() { echo "make run: $*" >&2; }

listening() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "botwatch is already running (pid $(cat "$PIDFILE")); stop it first (Ctrl-C in its terminal, or kill $(cat "$PIDFILE"))"
    exit 1
fi
ports=("$BOT_PORT")
[[ -f sidecar/__main__.py ]] && ports+=("$SIDECAR_PORT" "$SIDECAR_ADMIN_PORT")
for port in "${ports[@]}"; do
    if listening "$port"; then
        say "port $port is already in use (another botwatch, or another program); free it or set BOT_PORT / SIDECAR_PORT / SIDECAR_ADMIN_PORT"
        exit 1
    fi
done
echo $$ >"$PIDFILE"

pids=()
names=()
stop() {
    local code=$1
    trap - INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    wait "${pids[@]}" 2>/dev/null
    rm -f "$PIDFILE"
    # Said last, so it is the last line on the terminal.
    [[ -n ${2:-} ]] && say "$2"
    exit "$code"
}
trap 'echo; echo "stopping..."; stop 0' INT TERM

# Which of our processes has exited, with its status; empty while all run.
exited() {
    local i
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            wait "${pids[$i]}"
            echo "${names[$i]} $?"
            return
        fi
    done
}

died() {
    local name=$1 code=$2
    [[ $code == 0 ]] && code=1
    stop "$code" "the $name exited with status $2; its reason is above"
}

wait_http() {
    local url=$1 name=$2 gone
    for _ in $(seq 1 200); do
        gone=$(exited)
        [[ -n $gone ]] && died $gone
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    stop 1 "the $name did not answer $url within 20 s"
}

$PY -m bot &
pids+=($!)
names+=(bot)
wait_http "http://127.0.0.1:${BOT_PORT}/health" bot

entry="http://127.0.0.1:${BOT_PORT}"
if [[ -f sidecar/__main__.py ]]; then
    SIDECAR_PORT=$SIDECAR_PORT SIDECAR_ADMIN_PORT=$SIDECAR_ADMIN_PORT \
    SIDECAR_LOG_FILE=${SIDECAR_LOG_FILE:-$RUN_DIR/sidecar.log} \
    SIDECAR_UPSTREAM=${SIDECAR_UPSTREAM:-http://127.0.0.1:${BOT_PORT}} \
        $PY -m sidecar &
    pids+=($!)
    names+=(sidecar)
    wait_http "http://127.0.0.1:${SIDECAR_ADMIN_PORT}/sidecar/health" sidecar
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
    echo "  logs             ${BOT_LOG_FILE}, ${SIDECAR_LOG_FILE:-$RUN_DIR/sidecar.log} (ECS JSON)"
else
    echo "  logs             ${BOT_LOG_FILE} (ECS JSON)"
fi
echo

while true; do
    wait -n "${pids[@]}"
    gone=$(exited)
    [[ -n $gone ]] && died $gone
done
