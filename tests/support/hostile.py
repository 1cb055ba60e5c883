"""Hypothesis strategies for hostile input: odd unicode, arbitrary JSON, deep nesting, XML bombs."""

from __future__ import annotations

import json
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

hostile_bodies = st.one_of(
    st.binary(max_size=4096),
    json_values.map(encode),
    st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 100_000).map(lambda n: b'{"a":' * n),
    st.sampled_from([XML_BOMB, XXE, b"", b"\x00" * 64, b"{}" * 40_000]),
)
