"""Projection.parse decides as parse_object, then cut to the declared fields.

The webhook endpoint parses only what an event's reader reads: msgspec decodes those
fields and skips the rest of the body, and any body it refuses goes to parse_object.
The reference here is the full path (parse_object, then :func:`cut` in Python); the
properties draw the same documents and byte strings as ``test_shape_parse`` (surrogates,
NaN and infinities, wide integers, duplicate keys, byte order marks, damaged bytes) and
require the same verdict and the same kept values, with their types, key order aside.
The one difference by design is depth: only the kept fields are held to MAX_DEPTH.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import assert_loaded_only_by
from json_strategies import JSON, byte_strings, nest, typed
from valine.core.shape import (
    MAX_DEPTH,
    Arr,
    Int,
    Obj,
    Projection,
    ShapeError,
    Str,
    cut,
    parse_object,
)

#: Keys the strategies draw often ("a", "b", "x"), an object, an array of objects and
#: leaves, and a path kept beside the shape.
PROJECTION = Projection(
    Obj({"a": Obj({"b": Str(), "x": Arr(Obj({"a": Int()}))}), "x": Str()}), also=("b.a",)
)


def unordered(value: Any) -> Any:
    """``value`` as :func:`typed` compares it, key order aside (a cut keeps the shape's)."""
    return typed(value, key_order=False)


def full_path(body: bytes) -> Any:
    """The reference: parse_object's verdict, its document cut in Python."""
    try:
        return unordered(cut(parse_object(body), PROJECTION.tree))
    except ShapeError as exc:
        return exc.field


def projected(body: bytes) -> Any:
    try:
        return unordered(PROJECTION.parse(body))
    except ShapeError as exc:
        return exc.field


def assert_decides_as_the_full_path(body: bytes) -> None:
    expected, got = full_path(body), projected(body)
    if got == expected:
        return
    # The one allowed difference: a part nested too deep that is not kept.
    with pytest.raises(ShapeError, match="nested deeper"):
        parse_object(body)
    assert got == unordered(cut(json.loads(body), PROJECTION.tree))


@given(value=JSON, depth=st.integers(0, MAX_DEPTH + 3), where=st.sampled_from("axbz"))
def test_documents_decide_as_the_full_path(value: Any, depth: int, where: str) -> None:
    for body in (
        json.dumps({where: nest(value, depth), "x": "s"}).encode(),
        json.dumps({"a": {"b": value, "x": [{"a": value}]}, "z": value}).encode(),
        json.dumps({"a": {"x": [{"a": 1}, value]}, "b": {"a": value}}, ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        ),
    ):
        assert_decides_as_the_full_path(body)


@given(body=byte_strings())
def test_generated_byte_strings_decide_as_the_full_path(body: bytes) -> None:
    assert_decides_as_the_full_path(body)


@given(body=st.binary(max_size=64))
def test_arbitrary_bytes_decide_as_the_full_path(body: bytes) -> None:
    assert_decides_as_the_full_path(body)


@given(value=JSON)
def test_duplicate_keys_keep_the_last_value(value: Any) -> None:
    inner = json.dumps(value)
    for body in (
        f'{{"a": {{"b": 1}}, "x": {inner}, "a": {inner}, "x": 2}}',
        f'{{"a": {inner}, "a": {{"x": [{{"a": 1}}], "x": {inner}}}}}',
    ):
        assert_decides_as_the_full_path(body.encode())


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        (b'{"z": "\xff", "x": "s"}', "body"),  # not UTF-8 where nothing is kept
        (b'{"z": "\\ud800", "x": "s"}', "z"),  # a lone surrogate is named, kept or not
        (b'{"z": NaN, "x": "s"}', {"x": "s"}),  # json reads NaN: so does the full path
        (b'{"z": 123456789012345678901234567890, "a": {"b": 1e400}}', {"a": {"b": float("inf")}}),
        (b'{"a": "not an object"}', {"a": "not an object"}),  # the shape's check refuses it
        (b'{"a": {"x": [1, null, {"a": 2, "b": 3}]}}', {"a": {"x": [1, None, {"a": 2}]}}),
        (b"\xef\xbb\xbf{}", "body"),
        (b"[]", "body"),
        (b"", "body"),
    ],
)
def test_the_cases_msgspec_reads_differently(body: bytes, verdict: Any) -> None:
    assert projected(body) == full_path(body)
    assert projected(body) == (verdict if isinstance(verdict, str) else unordered(verdict))


def test_only_the_kept_fields_are_held_to_the_depth_limit() -> None:
    deep = nest(1, MAX_DEPTH + 5)
    assert PROJECTION.parse(json.dumps({"z": deep, "x": "s"}).encode()) == {"x": "s"}
    with pytest.raises(ShapeError, match="nested deeper"):
        PROJECTION.parse(json.dumps({"x": deep}).encode())
    beyond = b'{"z": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # beyond what msgspec reads
    with pytest.raises(ShapeError, match="nested deeper"):
        PROJECTION.parse(beyond)


def test_a_path_kept_beside_the_shape() -> None:
    body = b'{"b": {"a": {"deep": [1]}, "c": 2}, "a": {"b": "s", "q": 1}}'
    assert PROJECTION.parse(body) == {"b": {"a": {"deep": [1]}}, "a": {"b": "s"}}
    assert PROJECTION.tree == {"a": {"b": None, "x": [{"a": None}]}, "x": None, "b": {"a": None}}


def test_a_path_through_an_array_is_refused() -> None:
    with pytest.raises(ValueError, match="through an array"):
        Projection(Obj({"l": Arr(Obj({}))}), also=("l.a",))


def test_msgspec_is_imported_on_the_first_parse() -> None:
    """Declaring the projections (importing the webhook events) loads no msgspec."""
    assert_loaded_only_by(
        "msgspec",
        "from valine.github.events import projection",
        "projection('issues').parse(b'{}')",
    )
