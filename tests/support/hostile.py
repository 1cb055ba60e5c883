"""Hypothesis strategies for hostile input: odd unicode, arbitrary JSON, deep nesting, XML bombs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

# Every code point, surrogates and controls included.
odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=64)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=30,
)


def encode(value: Any) -> bytes:
    """JSON as a hostile client may send it: ensure_ascii turns lone surrogates into \\ud800-style escapes."""
    return json.dumps(value, ensure_ascii=True).encode()


XML_BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]><xml><Encrypt>&lol9;</Encrypt></xml>"
)
XXE = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Encrypt>&xxe;</Encrypt></xml>'



def bodies(max_bytes: int, max_depth: int, repeats: int) -> st.SearchStrategy[bytes]:
    """Random bytes, odd JSON, nesting up to `max_depth`, XML bombs and XXE, `repeats` empty objects."""
    return st.one_of(
        st.binary(max_size=max_bytes),
        json_values.map(encode),
        st.integers(1, max_depth).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, max_depth).map(lambda n: b'{"a":' * n),
        st.sampled_from([XML_BOMB, XXE, b"", b"\x00" * 64, b"{}" * repeats]),
    )


hostile_bodies = bodies(4096, 100_000, 40_000)

# Long runs of one character (kept under a 64 KiB body even when JSON escapes each one to 12 bytes).
huge_text = st.builds(
    lambda char, n: char * n, st.sampled_from(["x", "é", "\u202e", "\U0001f600", "\x00", "<", "]]>", "%"]),
    st.integers(500, 4000),
)
field_values = st.one_of(json_values, huge_text, st.integers(-(2**70), 2**70))
# Header values http.client can send (latin-1, no line breaks), odd ones included.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
# Bounded so that, wrapped in base64 and JSON, they still fit a 64 KiB body and reach the decoder.
inner_bodies = bodies(2048, 5_000, 1000)
_REMOVE = object()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def mutated(payload: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A genuine payload with one field anywhere in it replaced by a hostile value, or removed."""
    paths = list(_paths(payload))

    def apply(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        result = copy.deepcopy(payload)
        node = result
        for key in path[:-1]:
            node = node[key]
        if value is _REMOVE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return result

    return st.builds(apply, st.sampled_from(paths), st.one_of(field_values, st.just(_REMOVE)))
