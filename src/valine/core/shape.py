"""Declared shapes of the signed request bodies, checked before any field is used.

A small typed layer instead of a validation library: it imports nothing beyond the
standard library's ``json``, ``re`` and ``typing``, which the service imports anyway, so
the Discord PING's cold start pays about 1 ms for it (``python -X importtime``: median
self time of 25 runs, 1.0-1.2 ms). The compiled parser ``orjson`` is imported on the
first body of :data:`ORJSON_FROM` bytes or more (a webhook), never for a PING: its import
loads ``dataclasses``, ``inspect``, ``datetime`` and ``uuid``, about 20 ms.

:func:`parse_object` turns a body into a JSON object or raises :class:`ShapeError`
(not JSON, nested deeper than :data:`MAX_DEPTH`, a lone surrogate in a string, not an
object). Its verdicts are the standard library's: orjson parses first, and any body it
refuses or might read differently is parsed by ``json``. A shape (:class:`Obj`,
:class:`Arr`, :class:`Str`, :class:`Int` ...) is a declaration of the fields a handler
reads; ``shape.check(value, path)`` raises :class:`ShapeError` naming the first field
that does not fit (``data.options[0].value: must be a string``). Fields a shape does
not declare are allowed and never read.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from valine.core.errors import ValineError

#: Deepest nesting of objects and arrays a body may have (the platforms' bodies use < 10).
MAX_DEPTH = 32
#: How much of a field name a message quotes.
_QUOTE = 60
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A JSON escape of a surrogate. A superset: it also matches an escaped backslash before
#: ``ud800`` (text, not an escape) and valid pairs, which only cost the full search.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
#: A surrogate escape, searched in the raw bytes: orjson refuses a lone one where ``json``
#: names its field, so such a body goes to ``json`` at once (a superset, as above).
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
#: orjson reads an integer beyond 64 bits as a float, of this magnitude or more; a float
#: that large sends the body to ``json`` (which keeps the integer, or reads the same float).
_WIDE = 2.0**63
#: The size from which a body is parsed by orjson (webhooks: 8.6-27 KB; a PING: 0.2 KB).
ORJSON_FROM = 4096
#: What ``json.loads`` builds for objects and arrays.
_CONTAINERS = (dict, list)


class ShapeError(ValineError):
    """A body that does not fit its declared shape; ``field`` says where (``body``: all)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field or "body"
        self.problem = problem
        super().__init__(f"{self.field}: {problem}")


def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object ``body`` holds; raises :class:`ShapeError` for anything else.

    The body must be UTF-8 (strictly: no encoded surrogates, no other encoding). The
    verdict and the document are always those of :func:`json.loads`; a body of
    :data:`ORJSON_FROM` bytes or more is parsed by orjson first (about 2.5 times faster).
    """
    if len(body) >= ORJSON_FROM:
        return _parse_with_orjson(body)
    return _parse_with_json(body)


def _parse_with_orjson(body: bytes) -> dict[str, Any]:
    """:func:`_parse_with_json`'s verdict, through orjson where it reads the body alike.

    orjson parses a body without a surrogate escape; a body it refuses (``NaN``, a float
    beyond the double range, invalid UTF-8, a byte order mark, not JSON, not an object) or
    may have read differently (a float of :data:`_WIDE` or more: perhaps a wide integer)
    goes to ``json``, which decides.
    """
    if _SURROGATE_ESCAPE_BYTES.search(body) is None:
        try:
            document = _orjson_loads()(body)
        except ValueError:  # orjson.JSONDecodeError
            pass
        else:
            if type(document) is dict and _checked_as_json_reads(document):
                return document
    return _parse_with_json(body)


def _checked_as_json_reads(document: dict[str, Any]) -> bool:
    """The depth check of orjson's document; False if a float may be a wide integer."""
    return _walk_depth(document, stop_at_wide_float=True)


def _walk_depth(document: dict[str, Any], *, stop_at_wide_float: bool) -> bool:
    """Raise ShapeError past MAX_DEPTH, visiting only containers (iteratively); with
    ``stop_at_wide_float``, answer False at the first float of 2**63 or more in
    magnitude (orjson reads a wider integer as one; ``json`` keeps the int). True else."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ShapeError("body", f"nested deeper than {MAX_DEPTH} levels")
        for item in value.values() if type(value) is dict else value:
            kind = type(item)
            if kind in _CONTAINERS:
                stack.append((item, depth + 1))
            elif kind is float and stop_at_wide_float and not -_WIDE < item < _WIDE:
                return False
    return True


@functools.cache
def _orjson_loads() -> Callable[[bytes], Any]:
    """``orjson.loads``, imported on first use (not on the Discord PING's path)."""
    import orjson

    return orjson.loads


def _parse_with_json(body: bytes) -> dict[str, Any]:
    """The standard library's parse and checks: the verdicts :func:`parse_object` gives.

    A lone surrogate can only come from a ``\\uD800``-``\\uDFFF`` escape in strict
    UTF-8, so the strings of the document are searched for one only when the text has
    such an escape (a signed webhook of 16 KB has none, and searching all its strings
    cost more than parsing it).
    """
    try:
        text = body.decode("utf-8")
        document = json.loads(text)
    except RecursionError:
        raise ShapeError("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise ShapeError("body", "not valid JSON (UTF-8)") from None
    if not isinstance(document, dict):
        raise ShapeError("body", "must be a JSON object")
    if _SURROGATE_ESCAPE.search(text) is None:
        _check_depth(document)
    else:
        _check_tree(document)
    return document


def _check_depth(document: dict[str, Any]) -> None:
    """The depth check of the whole document, iteratively, visiting only containers."""
    _walk_depth(document, stop_at_wide_float=False)


def _check_tree(document: dict[str, Any]) -> None:
    """Depth and string checks of the whole document, iteratively (no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ShapeError("body", f"nested deeper than {MAX_DEPTH} levels")
        pairs = value.items() if isinstance(value, dict) else (("", v) for v in value)
        for key, item in pairs:
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))
            elif _SURROGATE.search(key) or (isinstance(item, str) and _SURROGATE.search(item)):
                raise ShapeError(_quote(key), "a lone surrogate in a string (not UTF-8)")


def _quote(name: str) -> str:
    safe = name.encode("utf-8", "replace").decode("utf-8")[:_QUOTE]
    return json.dumps(safe)[1:-1]


class Shape:
    """A declared shape; ``nullable`` lets JSON ``null`` stand for an absent value."""

    #: What a value of this shape must be, for messages.
    expected = "a value"

    def __init__(self, *, nullable: bool = False) -> None:
        self.nullable = nullable

    def check(self, value: Any, path: str) -> None:
        """Raise :class:`ShapeError` at ``path`` if ``value`` does not fit."""
        if value is None and self.nullable:
            return
        if not self._fits(value):
            raise ShapeError(path, f"must be {self.expected}")
        self._check_inside(value, path)

    def _fits(self, value: Any) -> bool:
        return True

    def _check_inside(self, value: Any, path: str) -> None:
        return None


class Str(Shape):
    """A string of at most ``max_length`` characters."""

    def __init__(self, max_length: int = 100_000, *, nullable: bool = False) -> None:
        super().__init__(nullable=nullable)
        self.max_length = max_length
        self.expected = f"a string of at most {max_length} characters"

    def _fits(self, value: Any) -> bool:
        return isinstance(value, str) and len(value) <= self.max_length


class Snowflake(Str):
    """A Discord id: a string of 1 to 20 digits."""

    expected = "a Discord id (a string of digits)"

    def __init__(self, *, nullable: bool = False) -> None:
        super().__init__(20, nullable=nullable)
        self.expected = "a Discord id (a string of digits)"

    def _fits(self, value: Any) -> bool:
        return (
            isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() and value.isdigit()
        )


class Int(Shape):
    """A whole number (not a boolean) between ``low`` and ``high``."""

    def __init__(self, low: int = 0, high: int = 2**53, *, nullable: bool = False) -> None:
        super().__init__(nullable=nullable)
        self.low, self.high = low, high
        self.expected = f"a whole number from {low} to {high}"

    def _fits(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )


class Bool(Shape):
    """``true`` or ``false``."""

    expected = "true or false"

    def _fits(self, value: Any) -> bool:
        return isinstance(value, bool)


class Scalar(Shape):
    """A string (at most ``max_length`` characters), a number or a boolean."""

    expected = "a string, a number or a boolean"

    def __init__(self, max_length: int = 6_000, *, nullable: bool = False) -> None:
        super().__init__(nullable=nullable)
        self.max_length = max_length

    def _fits(self, value: Any) -> bool:
        if isinstance(value, str):
            return len(value) <= self.max_length
        return isinstance(value, int | float | bool)


class Arr(Shape):
    """A list of at most ``max_items`` values, each of shape ``item``."""

    def __init__(self, item: Shape, max_items: int = 10_000, *, nullable: bool = False) -> None:
        super().__init__(nullable=nullable)
        self.item, self.max_items = item, max_items
        self.expected = f"a list of at most {max_items} items"

    def _fits(self, value: Any) -> bool:
        return isinstance(value, list) and len(value) <= self.max_items

    def _check_inside(self, value: Any, path: str) -> None:
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]")


class Obj(Shape):
    """A JSON object; ``fields`` declares the keys read (``required`` must be present)."""

    expected = "an object"

    def __init__(
        self,
        fields: Mapping[str, Shape],
        required: tuple[str, ...] = (),
        *,
        nullable: bool = False,
    ) -> None:
        super().__init__(nullable=nullable)
        self.fields, self.required = fields, required

    def _fits(self, value: Any) -> bool:
        return isinstance(value, dict)

    def _check_inside(self, value: Any, path: str) -> None:
        prefix = f"{path}." if path else ""
        for name in self.required:
            if value.get(name) is None:
                raise ShapeError(prefix + name, "is required")
        for name, shape in self.fields.items():
            if name in value:
                shape.check(value[name], prefix + name)


def check(shape: Shape, value: Any) -> None:
    """Check a whole document against ``shape``; raises :class:`ShapeError`."""
    shape.check(value, "")


#: A projection: ``None`` keeps a whole value, a dict the named fields of an object (or
#: the value itself if it is no object), a one-item list that projection of every item of
#: an array (or the value itself if it is no array).
Tree = dict[str, Any]


class Projection:
    """The part of an object body that a shape declares, and the paths read beside it.

    :meth:`parse` is :func:`parse_object` cut to those fields: the same verdict and the
    same values, without building the rest of the document. msgspec decodes the body
    into typed dicts of the declared fields and skips the others, checking that they are
    JSON (RFC 8259) without building them; a 16 KB webhook costs about a fifth of a full
    parse. A body msgspec refuses or cannot read into those types (``NaN``, a lone
    surrogate, a field of another type, a byte order mark, not JSON) is parsed by
    :func:`parse_object`, which decides, and then cut in Python. One difference, by
    design: only the fields kept are held to :data:`MAX_DEPTH`; the rest may nest as
    deep as msgspec reads (about 1,000 levels), since nothing reads it.
    """

    def __init__(self, shape: Obj, also: tuple[str, ...] = ()) -> None:
        """``also``: dotted paths (``pull_request.user.login``) kept beside ``shape``'s."""
        self.tree: Tree = _tree(shape)
        for path in also:
            _keep(self.tree, path)
        self._decode: Callable[[bytes], Any] | None = None

    def parse(self, body: bytes) -> dict[str, Any]:
        """The body's kept fields; raises :class:`ShapeError` as :func:`parse_object` does."""
        document = self._decoded(body)
        if document is None:
            return cut(parse_object(body), self.tree)
        _walk_depth(document, stop_at_wide_float=False)
        return document

    def _decoded(self, body: bytes) -> dict[str, Any] | None:
        """msgspec's reading of ``body`` into the kept fields; None if it cannot decide."""
        if not body.isascii():
            try:
                body.decode("utf-8")  # msgspec skips a string without checking its bytes
            except UnicodeDecodeError:
                return None
        decode = self._decode or self._decoder()
        try:
            document: dict[str, Any] = decode(body)
        except (ValueError, RecursionError):  # msgspec.DecodeError, msgspec.ValidationError
            return None
        return document

    def _decoder(self) -> Callable[[bytes], Any]:
        """msgspec's decoder of the kept fields, built (and msgspec imported) on first use."""
        import msgspec

        self._decode = msgspec.json.Decoder(_typed_dict(self.tree, "Body")).decode
        return self._decode


def cut(document: dict[str, Any], tree: Tree) -> dict[str, Any]:
    """``document`` with only the fields ``tree`` keeps (see :data:`Tree`)."""
    return {
        name: _cut_value(document[name], node) for name, node in tree.items() if name in document
    }


def _cut_value(value: Any, node: Any) -> Any:
    if node is None:
        return value
    if type(node) is list:
        return [_cut_value(item, node[0]) for item in value] if type(value) is list else value
    return cut(value, node) if type(value) is dict else value


def _tree(shape: Shape) -> Any:
    """The projection of the fields ``shape`` declares."""
    if isinstance(shape, Obj):
        return {name: _tree(field) for name, field in shape.fields.items()}
    if isinstance(shape, Arr):
        return [_tree(shape.item)]
    return None


def _keep(tree: Tree, path: str) -> None:
    """Add the dotted ``path`` to ``tree`` (its last name kept whole)."""
    *parents, last = path.split(".")
    node = tree
    for name in parents:
        child = node.setdefault(name, {})
        if child is None:
            return  # kept whole already
        if type(child) is not dict:
            raise ValueError(f"{path}: a path cannot go through an array")
        node = child
    node[last] = None


def _typed_dict(tree: Tree, name: str) -> Any:
    """The TypedDict msgspec decodes ``tree`` into (fields optional; objects may be null)."""
    from typing import TypedDict

    fields = {key: _node_type(node, f"{name}_{key}") for key, node in tree.items()}
    return TypedDict(name, fields, total=False)  # type: ignore[operator]


def _node_type(node: Any, name: str) -> Any:
    if node is None:
        return Any
    if type(node) is list:
        return list[_node_type(node[0], name)] | None  # type: ignore[misc]
    return _typed_dict(node, name) | None
