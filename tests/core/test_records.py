"""``Record`` builds what ``typing.NamedTuple`` builds, minus the annotation checks.

The records (settings, requests, responses, interactions, routes) are declared with
``Record`` for the Discord PING's cold start; these tests hold it to ``NamedTuple``'s
behaviour: the same fields, defaults, methods, tuple values, ``_replace``, repr, pickling,
and the same refusals.
"""

from __future__ import annotations

import pickle
import typing
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.core.records import Record


class Point(Record):
    """A point."""

    x: int
    y: int = 0
    label: str | None = None

    def norm1(self) -> int:
        """The taxicab norm."""
        return abs(self.x) + abs(self.y)

    @property
    def origin(self) -> bool:
        """True at (0, 0)."""
        return self.x == 0 and self.y == 0


class TypedPoint(NamedTuple):
    """A point."""

    x: int
    y: int = 0
    label: str | None = None


def test_a_record_is_the_namedtuple_typing_would_build() -> None:
    point = Point(3, -4)
    assert isinstance(point, tuple)
    assert point == (3, -4, None) == TypedPoint(3, -4)
    assert Point._fields == TypedPoint._fields == ("x", "y", "label")
    assert Point._field_defaults == TypedPoint._field_defaults == {"y": 0, "label": None}
    assert repr(point) == "Point(x=3, y=-4, label=None)"
    assert point._replace(label="a") == Point(3, -4, "a")
    assert point._asdict() == {"x": 3, "y": -4, "label": None}
    assert (point.norm1(), point.origin, Point(0).origin) == (7, False, True)
    assert Point.__doc__ == "A point."
    assert Point.__qualname__ == "Point" and Point.__module__ == __name__
    assert Point.__annotations__ == {"x": "int", "y": "int", "label": "str | None"}
    assert typing.get_type_hints(Point) == typing.get_type_hints(TypedPoint)


def test_a_record_is_immutable_and_pickles() -> None:
    point = Point(1, 2, "p")
    with pytest.raises(AttributeError):
        point.x = 5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(point)) == point


def test_a_record_refuses_what_namedtuple_refuses() -> None:
    with pytest.raises(TypeError, match="without a default follows one with a default"):

        class Bad(Record):
            a: int = 1
            b: int  # type: ignore[misc]

    with pytest.raises(AttributeError, match="cannot overwrite NamedTuple attribute _replace"):

        class Clash(Record):
            a: int

            def _replace(self, **changes: Any) -> Clash:  # type: ignore[misc]
                return self

    with pytest.raises(TypeError, match="only base is Record"):

        class Mixed(Record, dict):  # type: ignore[misc]
            a: int


@given(
    st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), unique=True, max_size=12),
    st.integers(min_value=0, max_value=12),
    st.data(),
)
def test_any_record_matches_the_namedtuple_of_the_same_fields(
    names: list[str], defaulted: int, data: st.DataObject
) -> None:
    names = [n for n in names if not n.startswith("_") and n not in _KEYWORDS]
    defaulted = min(defaulted, len(names))
    defaults = {n: i for i, n in enumerate(names[len(names) - defaulted :])}
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__annotations__": dict.fromkeys(names, "int"),
        **defaults,
    }
    ours = type(Record)("R", (Record,), dict(namespace))
    theirs = NamedTuple("R", [(n, int) for n in names])  # type: ignore[misc]
    theirs.__new__.__defaults__ = tuple(defaults.values()) or None
    values = data.draw(st.lists(st.integers(), min_size=len(names), max_size=len(names)))
    given_count = data.draw(st.integers(min_value=len(names) - defaulted, max_value=len(names)))
    assert ours._fields == theirs._fields
    assert ours._field_defaults == defaults
    assert ours(*values[:given_count]) == theirs(*values[:given_count])
    assert repr(ours(*values)) == repr(theirs(*values))


_KEYWORDS = frozenset(__import__("keyword").kwlist)
