"""Run a profile: Locust headless in its own process, then the gates and the truth check on its record."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtest.gates import Figures, figures_line, judge, refusal_check, summary_line
from loadtest.platforms.registry import PLATFORMS, missing_settings
from loadtest.profiles import PROFILES, Profile
from loadtest.record import RunRecord
from loadtest.replies import await_replies, judge_replies, load_reply_gate, load_sent, reply_figures
from loadtest.scrape import Snapshot, scrape
from loadtest.settings import GeneratorSettings, StepPlan, parse_weights, user_class_name, weight_of
from loadtest.slo import Gates, load_gates
from loadtest.step import analyse_steps, draw, knee, knee_line
from loadtest.truth import check_truth

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# `make run`'s stack: the sidecar on :8080 (admin :9901) in front of the bot on :18789.
LOCAL_BOT = "http://127.0.0.1:18789"
LOCAL_SIDECAR = "http://127.0.0.1:8080"
LOCAL_SIDECAR_ADMIN = "http://127.0.0.1:9901"


@dataclass(frozen=True)
class Target:
    host: str
    bot_metrics: str | None
    sidecar_metrics: str | None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def resolve_target(host: str | None, bot_metrics: str | None, sidecar_metrics: str | None) -> Target:
    """Explicit URLs win; with none, the local stack, through the sidecar when it runs."""
    if host is None:
        through_sidecar = _answers(LOCAL_SIDECAR_ADMIN + "/sidecar/health")
        host = LOCAL_SIDECAR if through_sidecar else LOCAL_BOT
        default_bot = LOCAL_BOT + "/metrics"
        default_sidecar = LOCAL_SIDECAR_ADMIN + "/metrics" if through_sidecar else None
    else:
        default_bot, default_sidecar = host.rstrip("/") + "/metrics", None
    return Target(
        host.rstrip("/"),
        _unless_none(bot_metrics) if bot_metrics is not None else default_bot,
        _unless_none(sidecar_metrics) if sidecar_metrics is not None else default_sidecar,
    )


def _unless_none(url: str) -> str | None:
    return None if url in ("", "none") else url


def platforms_on(host: str) -> list[str]:
    """The platforms whose routes the bot serves, from /api/health."""
    with urllib.request.urlopen(host + "/api/health", timeout=5.0) as resp:  # noqa: S310
        return [str(p) for p in json.loads(resp.read()).get("platforms", [])]


def choose_users(
    on: Sequence[str], weights: Mapping[str, int], environ: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """User classes to run, and notes on platforms left out (off in the bot, weight 0 or no secrets here)."""
    chosen = [user_class_name("chat")] if weight_of("chat", weights) > 0 else []
    notes = []
    for name in PLATFORMS:
        if name not in on:
            continue
        missing = missing_settings(name, environ)
        if weight_of(name, weights) <= 0:
            notes.append(f"{name}: weight 0, not loaded")
        elif missing:
            notes.append(f"{name}: on in the bot but {', '.join(missing)} not set here, not loaded")
        else:
            chosen.append(user_class_name(name))
    return chosen, notes


def run_locust(target: Target, users: int, duration_s: float, classes: list[str], settings: GeneratorSettings,
               out: Path, environ: Mapping[str, str]) -> int:
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", target.host,
        "-u", str(users), "-r", str(max(users, 1)), "-t", f"{math.ceil(duration_s)}s",
        # Let every request in flight finish so the generator's counts can match the servers'.
        "--stop-timeout", "30", "--csv", str(out / "locust"), "--html", str(out / "report.html"),
        "--only-summary", "--loglevel", "WARNING", "--logfile", str(out / "locust.log"), *classes,
    ]
    env = {**environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    with (out / "locust.out").open("wb") as log:
        proc = subprocess.run(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                              timeout=duration_s + 120, check=False)
    return proc.returncode


def _scrape(url: str | None, what: str, problems: list[str]) -> Snapshot | None:
    if url is None:
        return None
    try:
        return scrape(url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        problems.append(f"{what} metrics at {url} unreadable ({exc}); pass --{what}-metrics URL, or none")
        return None


def _resources(snapshot: Snapshot | None) -> str:
    if snapshot is None:
        return "unknown"
    rss, fds = snapshot.value("process_resident_memory_bytes"), snapshot.value("process_open_fds")
    return f"RSS {rss / 2**20:.1f} MiB, {fds:.0f} open files" if rss is not None and fds is not None else "unknown"


def execute(profile: Profile, target: Target, gates: Gates, out: Path, *, rate: float, duration_s: float,
            weights: Mapping[str, int], api_key: str | None, environ: Mapping[str, str],
            replies_url: str | None = None) -> tuple[bool, str]:
    """Run one profile against a target; returns (passed, the one-line reason) and writes out/summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        on = platforms_on(target.host)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, f"FAIL: {target.host}/api/health did not answer ({exc}); start it (make run) or pass --host"
    classes, notes = choose_users(on, weights, environ)
    if not classes:
        return False, "FAIL: every user class has weight 0"
    for note in notes:
        print(f"  {note}")
    print(f"  target {target.host}; users: {', '.join(classes)}; results in {out}")

    problems: list[str] = []
    # Bot before sidecar going in, sidecar before bot coming out: a bot scrape that passes through the
    # sidecar then never lands inside the sidecar's window.
    bot_before = _scrape(target.bot_metrics, "bot", problems)
    sidecar_before = _scrape(target.sidecar_metrics, "sidecar", problems)
    settings = GeneratorSettings(str(out / "record"), profile.user_rps, dict(weights), api_key, profile.step)
    users = math.ceil(rate / profile.user_rps)
    run_locust(target, users, duration_s, classes, settings, out, environ)
    sidecar_after = _scrape(target.sidecar_metrics, "sidecar", problems)
    bot_after = _scrape(target.bot_metrics, "bot", problems)
    try:
        record = RunRecord.load(out / "record")
    except (OSError, ValueError, KeyError) as exc:
        return False, f"FAIL: the load generator left no record ({exc}); see {out / 'locust.out'}"

    figures = Figures.of(record, gates)
    verdict = judge(figures, gates)
    truth = check_truth(
        record,
        bot_after - bot_before if bot_after and bot_before else None,
        sidecar_after - sidecar_before if sidecar_after and sidecar_before else None,
        gates.latency_objective,
    )
    lines = [summary_line(verdict, gates) if profile.step is None else figures_line(figures, gates), truth.line()]
    refusal_warning, refusal_failure = refusal_check(figures)
    if refusal_warning:
        lines.append(refusal_warning)
    replies_passed, reply_line = True, ""
    reply_summary: dict[str, object] | None = None
    if replies_url:
        reply_gate = load_reply_gate()
        sent = load_sent(out / "record")
        try:
            arrived = await_replies(replies_url, sent, reply_gate)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problems.append(f"{replies_url} did not answer ({exc})")
        else:
            reply_numbers = reply_figures(sent, arrived, reply_gate)
            replies_passed, reply_line = judge_replies(reply_numbers, reply_gate)
            lines.append(reply_line)
            reply_summary = {**asdict(reply_numbers), "gate": asdict(reply_gate), "passed": replies_passed}
    summary: dict[str, object] = {
        "profile": profile.name, "target": asdict(target), "figures": asdict(figures),
        "gates": asdict(gates), "failures": verdict.failures,
        "truth": [asdict(c) for c in truth.checks], "error_reasons": record.error_reasons,
        "refused_by_rate_limits": refusal_failure or refusal_warning,
    }
    if reply_summary is not None:
        summary["replies"] = reply_summary
    passed = verdict.passed and truth.passed and replies_passed and not problems and refusal_failure is None
    if profile.report_resources:
        line = f"bot resources: start {_resources(bot_before)}; end {_resources(bot_after)}"
        lines.append(line)
        summary["resources"] = line
    headline = lines[0].removeprefix("PASS: ")
    reasons = list(verdict.failures)
    if not replies_passed:
        reasons.append(reply_line)
    if profile.step is not None:
        knee_found, headline = _read_steps(record, gates, out, summary)
        lines += [headline, f"chart: {out / 'step.png'}"]
        # Going past the knee is the point of a stepped run; it fails only if not even the floor held.
        passed = truth.passed and not problems and knee_found and refusal_failure is None
        reasons = [headline]
    if refusal_failure:
        reasons.append(refusal_failure)
    if not truth.passed:
        reasons.append(truth.line())
    reasons += problems
    for line in lines:
        print(line)
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return passed, ("PASS: " + headline) if passed else "FAIL: " + "; ".join(reasons)


def _read_steps(record: RunRecord, gates: Gates, out: Path, summary: dict[str, object]) -> tuple[bool, str]:
    """Judge each step, draw the chart; whether a knee at or above the floor was found, and the knee line."""
    steps = analyse_steps(record, gates)
    if steps:
        draw(steps, gates, out / "step.png")
    line = knee_line(steps, gates)
    summary["steps"] = [asdict(s) for s in steps]
    summary["knee"] = line
    best = knee(steps)
    return best is not None and best.achieved_rps >= gates.min_rps, line


def _api_key(environ: Mapping[str, str]) -> str | None:
    """LOADTEST_API_KEY, else the bot's own first key when this shell has it."""
    keys = environ.get("LOADTEST_API_KEY") or environ.get("BOT_API_KEY") or ""
    return keys.split(",")[0].strip() or None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    parser.add_argument("profile", choices=sorted(PROFILES), nargs="?", default="smoke")
    parser.add_argument("--host", help="URL to load (default: the local stack, through the sidecar if it runs)")
    parser.add_argument("--bot-metrics", help="the bot's /metrics URL, or none (default: HOST/metrics)")
    parser.add_argument("--sidecar-metrics", help="the sidecar admin /metrics URL, or none")
    parser.add_argument("--rate", type=float, help="requests per second to offer (step: the first step's)")
    parser.add_argument("--duration", type=float, help="seconds to run (not for step)")
    parser.add_argument("--step-rate", type=float, help="step: how much each step adds")
    parser.add_argument("--step-seconds", type=float, help="step: how long each step lasts")
    parser.add_argument("--max-rate", type=float, help="step: the highest rate to offer")
    parser.add_argument("--weights", default=env.get("LOADTEST_WEIGHTS", ""),
                        help="user class weights, e.g. chat=8,feishu=1,wecom=1 (0 turns one off)")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "loadtest")
    parser.add_argument("--replies", default=env.get("LOADTEST_REPLIES_URL") or None,
                        help="the platform API stand-in's /_replies URL: gate platform replies on slo.yaml's reply "
                             "objective")
    args = parser.parse_args(argv)

    profile = PROFILES[args.profile]
    if profile.step is not None:
        plan = profile.step
        profile = Profile(profile.name, profile.rate, profile.duration_s, profile.user_rps, StepPlan(
            start_rate=args.rate or plan.start_rate, step_rate=args.step_rate or plan.step_rate,
            step_seconds=args.step_seconds or plan.step_seconds, max_rate=args.max_rate or plan.max_rate,
        ))
    try:
        weights = parse_weights(args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    target = resolve_target(args.host, args.bot_metrics, args.sidecar_metrics)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.results / f"{profile.name}-{stamp}"
    rate = args.rate or profile.rate
    passed, line = execute(
        profile, target, load_gates(), out, rate=rate, duration_s=args.duration or profile.duration_s,
        weights=weights, api_key=_api_key(env), environ=env, replies_url=args.replies,
    )
    print(line)
    return 0 if passed else 1
