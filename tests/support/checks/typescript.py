"""JSON files type-checked by `tsc` against the vendors' own TypeScript types (the npm packages pinned in
package.json, installed by `npm ci`): each file is written into a .ts module as an object literal that
`satisfies` the vendor's type, so a wrong value, a wrong type name or an unknown key is a tsc error."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.checks import shown
from tests.support.processes import ROOT
from tests.support.services import in_ci

NODE_MODULES = ROOT / "node_modules"
TSC = NODE_MODULES / ".bin" / "tsc"
TSCONFIG = {
    "compilerOptions": {
        "strict": True, "noEmit": True, "skipLibCheck": True, "target": "es2022",
        "module": "nodenext", "moduleResolution": "nodenext", "types": [],
    },
    "include": ["*.ts"],
}
_ERROR = re.compile(r"^(?P<file>[^(\s]+\.ts)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<text>.*)$")


@dataclass(frozen=True)
class TypedFile:
    """One JSON value that must satisfy `type_expr`, imported by `imports`; `source` names it in problems."""

    source: Path
    value: Any
    imports: str
    type_expr: str


def require_tsc() -> Path:
    if TSC.exists():
        return TSC
    message = "node_modules is missing: run `npm ci` (make test does)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def module_name(index: int, source: Path) -> str:
    return f"m{index}_{re.sub(r'[^A-Za-z0-9]+', '_', source.name)}.ts"


def typecheck(files: list[TypedFile], workdir: Path) -> list[str]:
    """tsc's complaints, each as `source: TSnnnn message (at: the offending line)`; [] when all satisfy."""
    tsc = require_tsc()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tsconfig.json").write_text(json.dumps(TSCONFIG), encoding="utf-8")
    (workdir / "package.json").write_text('{"type": "module", "private": true}', encoding="utf-8")
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(NODE_MODULES, target_is_directory=True)
    modules: dict[str, tuple[Path, list[str]]] = {}
    for index, typed in enumerate(files):
        name = module_name(index, typed.source)
        lines = [typed.imports, f"export const value = {json.dumps(typed.value, indent=2)} satisfies {typed.type_expr};", ""]
        text = "\n".join(lines)
        (workdir / name).write_text(text, encoding="utf-8")
        modules[name] = (typed.source, text.splitlines())
    result = subprocess.run(
        [str(tsc), "-p", str(workdir), "--pretty", "false"], capture_output=True, text=True, timeout=300, cwd=workdir
    )
    problems: list[str] = []
    for raw in result.stdout.splitlines():
        found = _ERROR.match(raw)
        if found:
            source, text = modules.get(Path(found["file"]).name, (Path(found["file"]), []))
            line = int(found["line"])
            at = text[line - 1].strip() if 0 < line <= len(text) else ""
            problems.append(f"{shown(source)}: {found['code']} {found['text']} (at: {at[:160]})")
        elif problems and raw.startswith(" "):
            problems[-1] += " | " + raw.strip()
    if result.returncode != 0 and not problems:
        problems.append(f"tsc failed without a diagnostic: {(result.stdout + result.stderr)[-2000:]}")
    return problems
