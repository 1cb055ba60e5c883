"""Locate the external servers tests need; under CI a missing one fails instead of skipping."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of a server binary, or skip (fail under CI) naming what to install."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path:
        return path
    message = f"{name} is not installed (make test installs it with apt when run as root)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
