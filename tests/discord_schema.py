"""Validate documents against Discord's own zod schemas (README "Testing"), through Node.

The schemas are the ``discord-api-spec`` npm package (generated from Discord's OpenAPI
description), installed with ``zod`` 4 by ``make material``. One ``node`` process checks a
whole batch: :func:`validate` for many documents against one schema, :func:`validate_each`
for ``(schema, document)`` pairs.

By default validation is *strict*: keys a schema does not know are reported (zod itself
silently drops them, which would let a misspelt field through).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import run_node

ROOT = Path(__file__).resolve().parents[1]
MATERIAL = ROOT / ".cache/material/node_modules"
SPEC = MATERIAL / "discord-api-spec/build/discord-api-spec.zod.js"
SCRIPT = ROOT / "tests/material/validate_discord.mjs"
#: Seconds one batch may take (loading the 330 kB schema module takes well under one).
TIMEOUT = 60


@dataclass(frozen=True)
class SchemaResult:
    """The outcome of one document against one schema."""

    schema: str
    ok: bool
    issues: list[dict[str, Any]] = field(default_factory=list)

    def explain(self) -> str:
        """A readable list of the issues, for assertion messages."""
        if self.ok:
            return f"{self.schema}: valid"
        lines = [
            f"  {'.'.join(str(p) for p in issue.get('path', [])) or '<root>'}: "
            f"{issue.get('message')} ({issue.get('code')})"
            for issue in self.issues
        ]
        return f"{self.schema}: invalid\n" + "\n".join(lines)


def validate(
    schema_name: str, documents: Iterable[Any], *, strict: bool = True
) -> list[SchemaResult]:
    """Check every document against the named export of ``discord-api-spec``'s zod build."""
    return validate_each([(schema_name, doc) for doc in documents], strict=strict)


def validate_each(items: Sequence[tuple[str, Any]], *, strict: bool = True) -> list[SchemaResult]:
    """Check each ``(schema_name, document)`` pair, all in one ``node`` run."""
    if not items:
        return []
    if not SPEC.exists() or not (MATERIAL / "zod").exists():
        pytest.fail(f"Discord schemas missing at {SPEC}: run `make material` (make test does it)")
    request = [
        {"schema": schema, "document": document, "strict": strict} for schema, document in items
    ]
    answers = run_node(SCRIPT, [str(SPEC)], request, "Discord's zod schemas", TIMEOUT)
    results = []
    for (schema, _), answer in zip(items, answers, strict=True):
        if "error" in answer:
            raise LookupError(f"{answer['error']} (not an export of discord-api-spec's zod build)")
        results.append(SchemaResult(schema, bool(answer["ok"]), list(answer["issues"])))
    return results
