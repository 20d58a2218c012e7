"""Hypothesis strategies for JSON parsing properties: documents and near-JSON bytes.

Documents hold surrogates (paired, lone, escaped and raw), escaped backslashes before
``ud800``, floats with NaN and infinities, integers around and beyond 64 bits; the byte
strings are JSON-like text with NaN/Infinity literals, long numbers, duplicate keys,
odd whitespace and byte order marks, then random bytes inserted.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import strategies as st

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
TEXT = st.text(
    st.characters(codec=None, exclude_categories=()) | SURROGATES | st.sampled_from('\\"{}[]'),
    max_size=12,
)
#: Integers json and orjson may read differently: around and beyond 64 bits.
WIDE_INTEGERS = st.integers(-(2**70), 2**70) | st.sampled_from(
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**19, -(10**19), 10**20]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | WIDE_INTEGERS | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=30,
)


def nest(value: Any, depth: int) -> Any:
    """``value`` inside ``depth`` levels of objects and arrays, alternating."""
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


NUMBER = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
LITERAL = st.sampled_from(["null", "true", "false", "NaN", "Infinity", "-Infinity", "1e400"])
STRING = st.builds(
    lambda text, ascii_only: json.dumps(text, ensure_ascii=ascii_only), TEXT, st.booleans()
)
KEY = st.sampled_from(['"a"', '"b"', '"\\ud800"', '"x"']) | STRING  # a small set: duplicates
SPACE = st.sampled_from(["", " ", "\n", "\t", "\r\n", "\u00a0", "\x0b"])
VALUE_TEXT = st.recursive(
    NUMBER | LITERAL | STRING,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        | st.lists(st.tuples(KEY, SPACE, inner), max_size=5).map(
            lambda pairs: (
                "{" + ",".join(f"{key}:{space}{value}" for key, space, value in pairs) + "}"
            )
        )
    ),
    max_leaves=20,
)
OBJECT_TEXT = st.lists(st.tuples(KEY, VALUE_TEXT), max_size=6).map(
    lambda pairs: "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"
)


@st.composite
def byte_strings(draw: st.DrawFn) -> bytes:
    """JSON-like text, sometimes with a byte order mark or padding, sometimes damaged."""
    text = draw(SPACE) + draw(OBJECT_TEXT | VALUE_TEXT) + draw(SPACE)
    body = draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf"])) + text.encode(
        "utf-8", "surrogatepass"
    )
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at:]
    return body


def typed(value: Any, *, key_order: bool = True) -> Any:
    """``value`` with its types and float bits (so ``1 != 1.0``, ``nan == nan``), and its
    objects' key order unless ``key_order`` is false: comparable with ``==``."""
    if isinstance(value, dict):
        pairs = ((key, typed(item, key_order=key_order)) for key, item in value.items())
        return ("dict", tuple(pairs) if key_order else frozenset(pairs))
    if isinstance(value, list):
        return ("list", tuple(typed(item, key_order=key_order) for item in value))
    if isinstance(value, float):
        return ("float", struct.pack(">d", value))
    return (type(value).__name__, value)
