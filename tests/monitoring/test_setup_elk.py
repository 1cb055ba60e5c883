"""`python -m monitoring.setup_elk`, run for real against local servers that record its calls and
answer as Elasticsearch's and Kibana's APIs document. Elasticsearch and Kibana cannot run here, so
this proves the calls (paths, methods, headers, bodies equal to the committed files), re-runs, the
wait bound and the error lines, not the services' behaviour."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.checks import shown
from tests.support.elk_recorder import Call, ElkRecorder
from tests.support.ports import free_port
from tests.support.processes import ROOT

MODULE = ROOT / "monitoring" / "setup_elk.py"
TEMPLATE_FILE = ROOT / "elasticsearch" / "index-template.json"
POLICY_FILE = ROOT / "elasticsearch" / "ilm-policy.json"
SAVED_OBJECTS_FILE = ROOT / "kibana" / "saved-objects.ndjson"
# The name operators and docs/monitoring.md know the template by; the policy's comes from the template.
TEMPLATE_NAME = "botwatch-logs"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: list[str]
    stderr: list[str]


async def run_setup(*args: str, module: Path = MODULE, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    """The CLI as compose runs it (a mutated copy of the module runs as a script)."""
    argv = [sys.executable, "-m", "monitoring.setup_elk"] if module == MODULE else [sys.executable, str(module)]
    proc = await asyncio.create_subprocess_exec(
        *argv, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Run(proc.returncode or 0, out.decode().splitlines(), err.decode().splitlines())


def expected_calls() -> list[tuple[str, str]]:
    template = json.loads(TEMPLATE_FILE.read_text(encoding="utf-8"))
    policy_name = template["template"]["settings"]["index.lifecycle.name"]
    return [
        ("elasticsearch", "GET /_cluster/health?timeout=5s&wait_for_status=yellow"),
        ("elasticsearch", f"PUT /_ilm/policy/{policy_name}"),
        ("elasticsearch", f"PUT /_index_template/{TEMPLATE_NAME}"),
        ("kibana", "GET /api/status"),
        ("kibana", "POST /api/saved_objects/_import?overwrite=true"),
    ]


def check_calls(calls: Sequence[Call], source: Path = MODULE) -> list[str]:
    """What differs from the documented install, each as `<module>: <problem>`."""
    where = shown(source)
    sent = [(c.service, c.line) for c in calls]
    problems = []
    expected = expected_calls()
    for index, (got, want) in enumerate(zip(sent, expected), start=1):
        if got != want:
            problems.append(f"{where}: call {index} to {got[0]} was {got[1]!r}, expected {want[0]} {want[1]!r}")
    problems += [f"{where}: {service} {line!r} was never sent" for service, line in expected[len(sent):]]
    problems += [f"{where}: unexpected {service} call {line!r}" for service, line in sent[len(expected):]]
    by_line = {(c.service, c.line): c for c in calls}
    policy = by_line.get(expected_calls()[1])
    if policy and policy.json() != json.loads(POLICY_FILE.read_text(encoding="utf-8")):
        problems.append(f"{where}: the ILM policy sent is not {shown(POLICY_FILE)}")
    template = by_line.get(expected_calls()[2])
    if template and template.json() != json.loads(TEMPLATE_FILE.read_text(encoding="utf-8")):
        problems.append(f"{where}: the index template sent is not {shown(TEMPLATE_FILE)}")
    for call in calls:
        if call.service == "elasticsearch" and call.body and "json" not in call.headers.get("content-type", ""):
            problems.append(f"{where}: {call.line} sent without a JSON content type")
    upload = by_line.get(expected_calls()[4])
    if upload:
        if upload.headers.get("kbn-xsrf") != "true":
            problems.append(f"{where}: {upload.line} was sent without the kbn-xsrf header Kibana requires on writes")
        filename, content = upload.upload()
        if content != SAVED_OBJECTS_FILE.read_bytes() or not (filename or "").endswith(".ndjson"):
            problems.append(f"{where}: the import is not {shown(SAVED_OBJECTS_FILE)} as an .ndjson file")
    return problems


@pytest.fixture
async def recorder(aiohttp_server: Any) -> tuple[ElkRecorder, list[str]]:
    """The recorder and the CLI arguments that point setup_elk at it."""
    rec = ElkRecorder()
    es, kibana = await aiohttp_server(rec.elasticsearch()), await aiohttp_server(rec.kibana())
    return rec, ["--elasticsearch", str(es.make_url("")), "--kibana", str(kibana.make_url("")), "--wait", "20"]


def progress(run: Run) -> list[str]:
    return [line.removeprefix("setup-elk: ") for line in run.stdout]


async def test_it_makes_exactly_the_documented_calls_with_the_committed_files(recorder) -> None:  # type: ignore[no-untyped-def]
    rec, args = recorder
    run = await run_setup(*args)
    assert check_calls(rec.calls) == []
    assert run.returncode == 0, run
    objects = SAVED_OBJECTS_FILE.read_text(encoding="utf-8").splitlines()
    es_url, kibana_url = args[1].rstrip("/"), args[3].rstrip("/")
    assert progress(run) == [
        f"Elasticsearch at {es_url} is up",
        f"ILM policy {TEMPLATE_NAME} installed",
        f"index template {TEMPLATE_NAME} installed",
        f"Kibana at {kibana_url} is up",
        f"{len(objects)} Kibana saved objects imported",
        f"done: ILM policy and index template {TEMPLATE_NAME} installed; {len(objects)} Kibana objects imported",
    ]
    assert run.stderr == []


async def test_a_second_run_makes_the_same_calls_and_leaves_the_same_state(recorder) -> None:  # type: ignore[no-untyped-def]
    rec, args = recorder
    assert (await run_setup(*args)).returncode == 0
    first = [c.line for c in rec.calls]
    state = (dict(rec.policies), dict(rec.templates), dict(rec.saved_objects))
    rec.calls.clear()
    second = await run_setup(*args)
    assert second.returncode == 0, second
    assert [c.line for c in rec.calls] == first and check_calls(rec.calls) == []
    assert (rec.policies, rec.templates, rec.saved_objects) == state
    assert len(rec.saved_objects) == len(SAVED_OBJECTS_FILE.read_text(encoding="utf-8").splitlines())


async def test_it_waits_for_services_still_starting_and_says_so(recorder) -> None:  # type: ignore[no-untyped-def]
    rec, args = recorder
    rec.not_ready.update(elasticsearch=2, kibana=2)
    run = await run_setup(*args)
    assert run.returncode == 0, run
    lines = [c.line for c in rec.calls]
    assert lines.count("GET /api/status") == 3
    assert lines.count("GET /_cluster/health?timeout=5s&wait_for_status=yellow") == 3
    waiting = [line for line in progress(run) if line.startswith("waiting: ")]
    assert [w.split(" at ")[0] for w in waiting] == ["waiting: Elasticsearch", "waiting: Kibana"], run.stdout
    assert all("giving up in" in w for w in waiting)


async def test_the_wait_is_bounded_and_the_message_says_by_what() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    run = await run_setup("--elasticsearch", closed, "--kibana", closed, "--wait", "2")
    assert time.monotonic() - started < 20
    assert run.returncode == 1
    assert len(run.stderr) == 1, run.stderr
    assert run.stderr[0].startswith(f"setup-elk: Elasticsearch at {closed} is not answering after ")
    assert "(--wait 2)" in run.stderr[0]
    assert progress(run)[0].startswith(f"waiting: Elasticsearch at {closed} is not answering yet")


async def test_an_unreachable_cluster_fails_with_one_clear_line_and_no_secret() -> None:
    closed = f"http://elastic:hunter2-secret@127.0.0.1:{free_port()}"
    run = await run_setup("--elasticsearch", closed, "--kibana", closed, "--wait", "1",
                          env={"ELASTIC_PASSWORD": "hunter2-secret"})
    assert run.returncode == 1
    assert len(run.stderr) == 1 and run.stderr[0].startswith("setup-elk: Elasticsearch at http://127.0.0.1:"), run.stderr
    assert "Traceback" not in "\n".join(run.stderr) and "hunter2" not in "\n".join(run.stderr + run.stdout)


async def test_a_refused_template_names_the_template_and_elasticsearchs_reason(recorder) -> None:  # type: ignore[no-untyped-def]
    rec, args = recorder
    rec.refuse_template = "No handler for type [shrot] declared on field [status_code]"
    run = await run_setup(*args)
    assert run.returncode == 1
    assert run.stderr == [
        f"setup-elk: Elasticsearch refused the index template {TEMPLATE_NAME} (HTTP 400): "
        "mapper_parsing_exception: No handler for type [shrot] declared on field [status_code]"
    ]
    assert not any(c.service == "kibana" for c in rec.calls), "nothing is imported after a failed step"


async def test_objects_kibana_refuses_are_named(recorder) -> None:  # type: ignore[no-untyped-def]
    rec, args = recorder
    rec.import_errors = [{"id": "botwatch-errors", "type": "search", "error": {"type": "missing_references"}}]
    run = await run_setup(*args)
    assert run.returncode == 1
    assert run.stderr == ["setup-elk: Kibana refused the saved objects (HTTP 200): search botwatch-errors: missing_references"]


async def test_credentials_go_to_both_services_and_never_to_the_output(recorder) -> None:  # type: ignore[no-untyped-def]
    rec, args = recorder
    run = await run_setup(*args, env={"ELASTIC_USERNAME": "elastic", "ELASTIC_PASSWORD": "hunter2-secret"})
    assert run.returncode == 0, run
    assert {c.headers.get("authorization") for c in rec.calls} == {"Basic ZWxhc3RpYzpodW50ZXIyLXNlY3JldA=="}
    assert "hunter2" not in "\n".join(run.stdout + run.stderr)
    assert run.stderr == [], "nothing but errors on stderr (no deprecation warnings either)"


@pytest.mark.parametrize("service", ["elasticsearch", "kibana"])
async def test_refused_credentials_fail_at_once_instead_of_waiting(recorder, service: str) -> None:  # type: ignore[no-untyped-def]
    rec, args = recorder
    rec.required_auth[service] = "Basic b3BzOm90aGVyLXBhc3N3b3Jk"  # ops:other-password
    started = time.monotonic()
    run = await run_setup(*args, env={"ELASTIC_USERNAME": "elastic", "ELASTIC_PASSWORD": "hunter2-secret"})
    assert time.monotonic() - started < 15, "a refused password is not worth the --wait"
    assert run.returncode == 1
    name, url = {"elasticsearch": ("Elasticsearch", args[1]), "kibana": ("Kibana", args[3])}[service]
    assert run.stderr == [f"setup-elk: {name} at {url.rstrip('/')} refused the credentials (HTTP 401)"]
    assert "hunter2" not in "\n".join(run.stdout + run.stderr)


MUTATIONS = {
    "dropping the kbn-xsrf header": (
        'headers={"kbn-xsrf": "true"}', "headers={}",
        "was sent without the kbn-xsrf header Kibana requires on writes",
    ),
    "renaming the template": (
        "es.indices.put_index_template(name=NAME,", 'es.indices.put_index_template(name="botwatch-log",',
        "call 3 to elasticsearch was 'PUT /_index_template/botwatch-log', expected elasticsearch 'PUT /_index_template/botwatch-logs'",
    ),
    "another policy name": ("es.ilm.put_lifecycle(name=NAME,", 'es.ilm.put_lifecycle(name="botwatch",', "call 2 to elasticsearch was 'PUT /_ilm/policy/botwatch', expected"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
async def test_each_mutation_of_setup_elk_is_caught_naming_the_file(  # type: ignore[no-untyped-def]
    mutation: str, recorder, tmp_path: Path
) -> None:
    rec, args = recorder
    old, new, expected = MUTATIONS[mutation]
    source = MODULE.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{mutation}: the code to mutate moved"
    mutant = tmp_path / "setup_elk.py"
    mutant.write_text(source.replace(old, new), encoding="utf-8")
    await run_setup(*args, module=mutant)
    problems = check_calls(rec.calls, mutant)
    assert problems and all(p.startswith(f"{mutant}: ") for p in problems), problems
    assert any(expected in p for p in problems), problems


async def test_help_shows_the_wait_and_its_default() -> None:
    run = await run_setup("--help")
    assert run.returncode == 0
    text = "\n".join(run.stdout)
    assert "--wait" in text and "default 300" in text
