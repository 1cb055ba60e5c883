"""Route labels stay bounded, and the bot's private paths cannot be reached however they are spelled."""

from __future__ import annotations

import pytest

from sidecar.routes import BLOCKED, KNOWN_ROUTES, OTHER, resolve


@pytest.mark.parametrize("path", sorted(KNOWN_ROUTES))
def test_every_known_route_is_its_own_label(path: str) -> None:
    route, target = resolve(path.encode() + b"?a=1")  # type: ignore[misc]
    assert route.label == path
    assert route.platform == KNOWN_ROUTES[path]
    assert target == path.encode() + b"?a=1"


def test_platform_callbacks_carry_their_platform() -> None:
    assert resolve(b"/feishu/event")[0].platform == "feishu"  # type: ignore[index]
    assert resolve(b"/api/v1/chat")[0].platform == "api"  # type: ignore[index]


@pytest.mark.parametrize("target", [b"/users/12345/profile", b"/api/v1/chat/extra", b"/health/", b"/%41pi"])
def test_unknown_paths_share_one_label(target: bytes) -> None:
    route, _ = resolve(target)  # type: ignore[misc]
    assert route == OTHER


@pytest.mark.parametrize(
    "target",
    [
        b"/metrics", b"/metrics?format=openmetrics", b"/%6Detrics", b"/%6d%65trics", b"//metrics",
        b"/x/../metrics", b"/./metrics", b"/METRICS", b"/metrics/", b"/sidecar/health", b"/sidecar/ready",
        b"/sidecar", b"/%73idecar/health", b"http://example.test/metrics", b"HTTPS://example.test/sidecar/ready",
        b"/alerts/alertmanager", b"/%61lerts/alertmanager", b"//alerts/alertmanager", b"/Alerts/AlertManager?x=1",
        b"/x/../alerts/alertmanager", b"/alerts",
    ],
)
def test_private_paths_are_blocked_in_every_spelling(target: bytes) -> None:
    route, _ = resolve(target)  # type: ignore[misc]
    assert route is BLOCKED


def test_absolute_form_is_forwarded_in_origin_form() -> None:
    assert resolve(b"http://example.test/api/v1/chat?x=1") == (resolve(b"/api/v1/chat")[0], b"/api/v1/chat?x=1")  # type: ignore[index]
    assert resolve(b"http://example.test")[1] == b"/"  # type: ignore[index]
    assert resolve(b"http://example.test?q=1")[1] == b"/?q=1"  # type: ignore[index]


@pytest.mark.parametrize("target", [b"*", b"example.test:443", b"", b"relative/path"])
def test_targets_that_are_not_paths_are_refused(target: bytes) -> None:
    assert resolve(target) is None
