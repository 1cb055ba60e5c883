#!/usr/bin/env bash
# Install the Debian servers the tests (or benchmarks) talk to, when root and missing.
# Without root a missing server is reported; tests then skip it, or fail under CI=true.
set -euo pipefail

want=(redis-server:redis-server prometheus:prometheus promtool:prometheus
      prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager
      prometheus-redis-exporter:prometheus-redis-exporter
      nginx:nginx-light docker-compose:docker-compose systemd-analyze:systemd ruby:ruby)
if [[ "${1:-}" == "bench" ]]; then
    want+=(wrk:wrk nginx:nginx-light time:time)
fi

missing=()
for pair in "${want[@]}"; do
    cmd=${pair%%:*} pkg=${pair##*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd ]]; then
        missing+=("$pkg")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Services installed here are started by the tests on their own ports; keep the distro units off.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
else
    echo "missing (install with apt as root): ${missing[*]}" >&2
    [[ "${CI:-}" == "true" ]] && exit 1
fi
exit 0
