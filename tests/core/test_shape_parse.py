"""parse_object's fast path (depth only, when no surrogate escape) decides as the full check.

The full check walks every key and string for a lone surrogate; the fast path skips
that when the UTF-8 text holds no ``\\uD800``-``\\uDFFF`` escape. These properties draw
documents with surrogates (paired, lone, as escapes and as raw bytes), escaped
backslashes before ``ud800`` and deep nesting, and require the same verdict and the same
document as json.loads followed by the full walk.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.core.shape import MAX_DEPTH, ShapeError, _check_tree, parse_object

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
TEXT = st.text(
    st.characters(codec=None, exclude_categories=()) | SURROGATES | st.sampled_from('\\"{}[]'),
    max_size=12,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=30,
)


def reference(body: bytes) -> dict[str, Any] | str:
    """The verdict of the full check: the document, or the ShapeError's field."""
    try:
        document = json.loads(body.decode("utf-8"))
    except RecursionError:
        return "body"
    except ValueError:
        return "body"
    if not isinstance(document, dict):
        return "body"
    try:
        _check_tree(document)
    except ShapeError as exc:
        return exc.field
    return document


def verdict(body: bytes) -> dict[str, Any] | str:
    try:
        return parse_object(body)
    except ShapeError as exc:
        return exc.field


def nest(value: Any, depth: int) -> Any:
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@given(value=JSON, depth=st.integers(0, MAX_DEPTH + 3))
def test_the_fast_path_decides_as_the_full_check(value: Any, depth: int) -> None:
    body = json.dumps({"x": nest(value, depth)}).encode()  # ensure_ascii: every surrogate escaped
    assert verdict(body) == reference(body)


@given(value=JSON)
def test_raw_utf8_bodies_decide_as_the_full_check(value: Any) -> None:
    try:
        body = json.dumps({"x": value}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except UnicodeEncodeError:  # pragma: no cover - surrogatepass encodes every code point
        return
    expected = reference(body)
    assert verdict(body) == expected
    if any(0xD800 <= ord(c) <= 0xDFFF for c in body.decode("utf-8", "surrogatepass")):
        assert expected == "body"  # raw encoded surrogates are not UTF-8


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        (b'{"a": "\\ud800"}', False),
        (b'{"\\uDFFF": 1}', False),
        (b'{"a": ["\\ud83d"]}', False),
        (b'{"a": "\\\\ud800"}', True),  # an escaped backslash, then text
        (b'{"a": "\\ud83d\\ude00"}', True),  # a valid pair
        (b'{"a": "\xed\xa0\x80"}', False),  # an encoded surrogate is not UTF-8
        (b"\xef\xbb\xbf{}", False),  # nor is a byte order mark before the object
    ],
)
def test_surrogate_cases(body: bytes, accepted: bool) -> None:
    result = verdict(body)
    assert isinstance(result, dict) is accepted, result
    assert result == reference(body)


def test_depth_limit_without_any_string() -> None:
    assert isinstance(verdict(json.dumps({"x": nest(1, MAX_DEPTH - 1)}).encode()), dict)
    assert verdict(json.dumps({"x": nest(1, MAX_DEPTH)}).encode()) == "body"
