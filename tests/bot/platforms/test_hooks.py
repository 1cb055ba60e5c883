"""Optional adapter capabilities are found and checked once, at registration, failing start-up on a wrong shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.messages import Reply
from bot.platforms.base import AdapterHooks, OutboundLimit
from bot.platforms.registry import discover_plugins
from tests.bot.platforms.example import ExampleAdapter, ExampleSettings


def example(**members: Any) -> ExampleAdapter:
    adapter_type = type("Adapter", (ExampleAdapter,), members)
    adapter: ExampleAdapter = adapter_type(ExampleSettings(token="t"), None)
    return adapter


async def _noop(self: Any) -> None:
    pass


def _limits(self: Any, reply: Reply) -> Sequence[OutboundLimit]:
    return (OutboundLimit("example:app", "1/second"),)


def test_an_adapter_with_only_the_required_members_has_no_hooks() -> None:
    assert AdapterHooks.of("example", example()) == AdapterHooks()


def test_every_capability_an_adapter_has_is_found() -> None:
    adapter = example(start=_noop, close=_noop, check=_noop, outbound_limits=_limits)
    hooks = AdapterHooks.of("example", adapter)
    assert hooks.start == adapter.start  # type: ignore[attr-defined]
    assert hooks.close == adapter.close  # type: ignore[attr-defined]
    assert hooks.check == adapter.check  # type: ignore[attr-defined]
    assert hooks.outbound_limits is not None and list(hooks.outbound_limits(None)) == [  # type: ignore[arg-type]
        OutboundLimit("example:app", "1/second")
    ]


@pytest.mark.parametrize(
    ("members", "complaint"),
    [
        ({"start": lambda self: None}, "platform example: start must be an `async def` method"),
        ({"close": lambda self: None}, "platform example: close must be an `async def` method"),
        ({"check": lambda self: None}, "platform example: check must be an `async def` method"),
        ({"outbound_limits": _noop}, "platform example: outbound_limits must be a plain method"),
        ({"name": "exampel"}, "platform example: the adapter calls itself 'exampel'"),
    ],
)
def test_a_wrong_shape_stops_start_up_naming_the_platform_and_the_member(
    members: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        AdapterHooks.of("example", example(**members))
    assert raised.value.message == complaint


def test_an_adapter_missing_a_required_member_is_refused_naming_it() -> None:
    class Incomplete:
        name = "example"
        routes = ExampleAdapter.routes
        verify, decode, ack, format = ExampleAdapter.verify, ExampleAdapter.decode, ExampleAdapter.ack, ExampleAdapter.format

    with pytest.raises(ConfigError) as raised:
        AdapterHooks.of("example", Incomplete())
    assert raised.value.message == "platform example: the adapter lacks send (see PlatformAdapter)"


def test_every_shipped_platform_names_itself_as_registered() -> None:
    for name, plugin in discover_plugins().items():
        assert plugin.name == name
        assert plugin.routes and all(route.path.startswith(f"/{name}/") for route in plugin.routes)
