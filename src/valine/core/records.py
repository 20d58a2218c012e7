"""``Record``: :class:`typing.NamedTuple` without its run-time check of each annotation.

Declared the same way, and to the type checker it *is* ``typing.NamedTuple``::

    class Request(Record):
        method: str
        headers: Mapping[str, str] = MappingProxyType({})

At run time the class is the same ``collections.namedtuple`` that ``typing.NamedTuple``
builds, with the class body's methods, docstring and defaults; what it skips is
``typing``'s check of each field's annotation, which -- in a module with ``from
__future__ import annotations``, where every annotation is a string -- compiles every one
into a ``ForwardRef``: ~4.7 M of the ~31 M instructions the Discord PING's cold start
spent in valine's own modules (docs/benchmarks.md). The annotations are kept as the strings the
class body holds (``typing.get_type_hints`` resolves them); mypy checks them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["Record"]

#: What a record's class body may not define (``typing.NamedTuple`` refuses them too).
_PROHIBITED = frozenset(
    {
        "__new__",
        "__init__",
        "__slots__",
        "__getnewargs__",
        "_fields",
        "_field_defaults",
        "_make",
        "_replace",
        "_asdict",
        "_source",
    }
)
#: ``collections.namedtuple``, called with names known at run time only.
_namedtuple: Callable[..., Any] = collections.namedtuple
#: What the class body holds that is not copied onto the record.
_SPECIAL = frozenset({"__module__", "__qualname__", "__annotations__"})


class _RecordMeta(type):
    """Builds each subclass of :class:`Record` as a ``collections.namedtuple``."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if not bases:  # Record itself
            return super().__new__(mcs, name, bases, namespace)
        if bases != (_Record,):
            raise TypeError(f"{name}: a record's only base is Record")
        fields = list(namespace.get("__annotations__", {}))
        defaults = [f for f in fields if f in namespace]
        if defaults != fields[len(fields) - len(defaults) :]:
            raise TypeError(f"{name}: a field without a default follows one with a default")
        record = _namedtuple(
            name,
            fields,
            defaults=[namespace[f] for f in defaults],
            module=namespace["__module__"],
        )
        record.__qualname__ = namespace.get("__qualname__", name)
        record.__annotations__ = dict(namespace.get("__annotations__", {}))
        for key, value in namespace.items():
            if key in _PROHIBITED:
                raise AttributeError(f"{name}: cannot overwrite NamedTuple attribute {key}")
            if key not in _SPECIAL and key not in fields:
                setattr(record, key, value)
        return record


class _Record(metaclass=_RecordMeta):
    """The base of the records (replaced by ``typing.NamedTuple`` for the type checker)."""


if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    Record = _Record
