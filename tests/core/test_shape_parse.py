"""parse_object decides exactly as json.loads followed by the full check, for every input.

Two shortcuts are proven here against that reference. orjson parses the common body
(no surrogate escape, no run of digits that may be an integer beyond 64 bits) and any
body it refuses goes to json; and json's path checks only the depth when the text holds
no ``\\uD800``-``\\uDFFF`` escape. The properties draw documents (surrogates paired,
lone, escaped and raw, escaped backslashes before ``ud800``, floats with NaN and
infinities, integers around and beyond 64 bits, deep nesting) and byte strings (JSON
text with NaN/Infinity literals, long numbers, duplicate keys, byte order marks, then
random bytes inserted), and require the same verdict and the same document, compared
with its types (``1`` is not ``1.0``), key order and float bits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import assert_loaded_only_by
from json_strategies import JSON, byte_strings, nest, typed
from valine.core import shape
from valine.core.shape import (
    MAX_DEPTH,
    ORJSON_FROM,
    ShapeError,
    _check_tree,
    _parse_with_orjson,
    parse_object,
)
from valine.github.events import HANDLED_EVENTS


def reference(body: bytes) -> Any:
    """The verdict of the full check with json: the typed document, or the error's field."""
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
    return typed(document)


def one_verdict(parse: Callable[[bytes], dict[str, Any]], body: bytes) -> Any:
    """``parse``'s verdict: the typed document, or the ShapeError's field."""
    try:
        return typed(parse(body))
    except ShapeError as exc:
        return exc.field


def verdict(body: bytes) -> Any:
    """parse_object's verdict, which the orjson path gives too whatever the body's size."""
    result = one_verdict(parse_object, body)
    assert one_verdict(_parse_with_orjson, body) == result
    return result


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
    assert (result[0] == "dict") is accepted, result
    assert result == reference(body)


def test_depth_limit_without_any_string() -> None:
    assert verdict(json.dumps({"x": nest(1, MAX_DEPTH - 1)}).encode())[0] == "dict"
    assert verdict(json.dumps({"x": nest(1, MAX_DEPTH)}).encode()) == "body"


@given(body=byte_strings())
def test_generated_byte_strings_decide_as_json(body: bytes) -> None:
    assert verdict(body) == reference(body)


@given(body=st.binary(max_size=64))
def test_arbitrary_bytes_decide_as_json(body: bytes) -> None:
    assert verdict(body) == reference(body)


@given(value=JSON)
def test_documents_with_duplicate_keys_keep_the_last_value_as_json(value: Any) -> None:
    inner = json.dumps(value)
    body = f'{{"k": 1, "z": {inner}, "k": {inner}, "z": 2}}'.encode()
    assert verdict(body) == reference(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN, "b": Infinity, "c": -Infinity}',
        b'{"a": 1e400, "b": -1e400, "c": 1e-400}',
        b'{"a": 18446744073709551615, "b": 18446744073709551616}',
        b'{"a": -9223372036854775808, "b": -9223372036854775809}',
        b'{"a": 123456789012345678901234567890}',
        b'{"a": 0.1, "b": 5e-324, "c": 1.7976931348623157e308, "d": -0.0}',
        b'{"a": 1, "a": 2.0}',
        b"\xef\xbb\xbf{}",
        b'{"a": "\xff"}',
    ],
)
def test_the_inputs_orjson_reads_differently(body: bytes) -> None:
    assert verdict(body) == reference(body)
    if b"NaN" in body:
        assert math.isnan(parse_object(body)["a"])
    if b"18446744073709551616" in body:
        assert parse_object(body)["b"] == 2**64  # an int, not orjson's float


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1023, 1025, 5000])
def test_nesting_beyond_both_parsers_limits_is_refused(depth: int) -> None:
    assert verdict(("[" * depth + "]" * depth).join(['{"x":', "}"]).encode()) == "body"


def test_the_handled_webhooks_take_the_orjson_path(
    webhook_examples: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed-up is real only if the webhooks valine handles are big enough for orjson
    and never fall back to json (every example of every event, the others decide alike)."""
    bodies = [
        (event, json.dumps(example, separators=(",", ":"), ensure_ascii=False).encode())
        for event, examples in webhook_examples.items()
        for example in examples
    ]
    handled = [body for event, body in bodies if event in HANDLED_EVENTS]
    assert len(handled) > 50
    assert min(len(body) for body in handled) >= ORJSON_FROM
    for _, body in bodies:
        assert verdict(body) == reference(body)

    def refuse(body: bytes) -> None:
        raise AssertionError(f"fell back to json: {body[:80]!r}")

    monkeypatch.setattr(shape, "_parse_with_json", refuse)
    assert [parse_object(body) for body in handled] == [json.loads(body) for body in handled]


def test_orjson_is_imported_only_for_a_big_body() -> None:
    """A Discord PING never pays orjson's import (dataclasses, inspect, datetime, uuid)."""
    assert_loaded_only_by(
        "orjson",
        "from valine.core.shape import ORJSON_FROM, parse_object\nparse_object(b'{\"type\": 1}')",
        "parse_object(b'{\"x\": \"' + b'a' * ORJSON_FROM + b'\"}')",
    )
