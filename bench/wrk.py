"""Drive wrk and read its results: throughput, exact latency percentiles, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# wrk's summary() hook prints exact percentiles as JSON after the human-readable report.
_REPORT = r"""
local body = os.getenv("WRK_BODY")
local ctype = os.getenv("WRK_CONTENT_TYPE") or "application/json"
local method = os.getenv("WRK_METHOD") or (body and "POST" or "GET")
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
wrk.method = method
if body then wrk.body = body; wrk.headers["Content-Type"] = ctype end
function delay() return delay_ms end

-- WRK_REQUESTS names a file of ready-made requests (see write_requests), sent in turn. They are
-- formatted in init(), once wrk knows the Host header.
local prepared = {}
local counter = 0
local file_name = os.getenv("WRK_REQUESTS")
if file_name then
  function init(args)
    local f = assert(io.open(file_name, "rb"))
    while true do
      local path = f:read("*l")
      if not path then break end
      local verb = f:read("*l")
      local headers = {}
      for _ = 1, tonumber(f:read("*l")) do
        local line = f:read("*l")
        local name, value = line:match("^([^:]+): (.*)$")
        headers[name] = value
      end
      local body = f:read(tonumber(f:read("*l")))
      f:read("*l")
      prepared[#prepared + 1] = wrk.format(verb, path, headers, body)
    end
    f:close()
  end
  function request()
    counter = counter + 1
    return prepared[(counter - 1) % #prepared + 1]
  end
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.timeout + summary.errors.status
  io.write("WRKJSON ", string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%f}\n',
    summary.requests, summary.duration, errors, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    cpu_s: float  # user+system CPU wrk itself used, so the generator's share can be reported

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is not installed: run as root `make bench` (it installs it) or apt-get install wrk")
    return path


def run_wrk(
    url: str,
    *,
    duration: float = 10.0,
    connections: int = 50,
    threads: int = 1,
    body: str | None = None,
    delay_ms: int = 0,
    timeout: float = 5.0,
    requests_file: Path | None = None,
) -> WrkResult:
    """Run wrk once; `delay_ms` with one connection gives an (approximately) fixed request rate.

    With `requests_file` (written by `write_requests`) each connection sends those requests in turn.
    """
    script = Path(tempfile.mkdtemp()) / "report.lua"
    script.write_text(_REPORT)
    env = {"PATH": "/usr/bin:/bin", "WRK_DELAY_MS": str(delay_ms)}
    if body is not None:
        env["WRK_BODY"] = body
    if requests_file is not None:
        env["WRK_REQUESTS"] = str(requests_file)
    argv = [
        wrk_binary(), "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
        "--timeout", f"{timeout:g}s", "-s", str(script), url,
    ]
    proc = subprocess.run(  # noqa: S603
        ["/usr/bin/time", "-f", "CPU %U %S", *argv] if Path("/usr/bin/time").exists() else argv,
        env=env, capture_output=True, text=True, check=True,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON "))
    data = json.loads(line[len("WRKJSON "):])
    cpu = 0.0
    for ln in proc.stderr.splitlines():
        if ln.startswith("CPU "):
            user, system = ln.split()[1:3]
            cpu = float(user) + float(system)
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=data["errors"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p999_ms=data["p999_us"] / 1000,
        cpu_s=cpu,
    )


def write_requests(path: Path, requests: Iterable[tuple[str, str, dict[str, str], bytes]]) -> int:
    """Write (method, path, headers, body) requests in the simple framing the wrk script reads."""
    count = 0
    with path.open("wb") as fh:
        for method, target, headers, body in requests:
            fh.write(f"{target}\n{method}\n{len(headers)}\n".encode())
            for name, value in headers.items():
                fh.write(f"{name}: {value}\n".encode())
            fh.write(f"{len(body)}\n".encode() + body + b"\n")
            count += 1
    return count
