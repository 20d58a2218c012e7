"""Validate GraphQL documents against GitHub's published GraphQL schema, via Node.

The schema is GitHub's own: the ``@octokit/graphql-schema`` npm package (pinned in
tests/material/package.json, installed by ``make material``), whose ``validate(document)``
runs graphql-js's validation rules against it. One ``node`` process
(tests/material/validate_graphql.mjs) checks a whole batch; loading the 5 MB schema
takes a few hundred milliseconds, so batch what you can.

An item is a document, or a request body ``{"query": ..., "variables": {...}}`` exactly
as a client posts it: then the variables are also coerced to their declared types as
GitHub would (unknown input fields, missing required ones, wrong scalar types).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from helpers import run_node

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / ".cache/material/node_modules/@octokit/graphql-schema"
#: The introspection result ``validate`` builds its schema from.
SCHEMA_JSON = PACKAGE / "schema.json"
SCRIPT = ROOT / "tests/material/validate_graphql.mjs"
#: Seconds one batch may take (loading the schema takes well under one).
TIMEOUT = 60

GraphQLItem = str | Mapping[str, Any]


def _require_material() -> None:
    if not (PACKAGE / "index.js").exists() or not SCHEMA_JSON.exists():
        pytest.fail(
            f"GitHub's GraphQL schema is missing at {PACKAGE}: run `make material` "
            "(make test does it)"
        )


def validate(items: Sequence[GraphQLItem]) -> list[list[str]]:
    """GitHub's validation errors of each item, in order (``[]`` means valid), one node run."""
    if not items:
        return []
    _require_material()
    request = [item if isinstance(item, str) else dict(item) for item in items]
    answers = run_node(
        SCRIPT, [str(PACKAGE / "index.js")], request, "GitHub's GraphQL validation", TIMEOUT
    )
    if not isinstance(answers, list) or len(answers) != len(items):
        pytest.fail(f"{SCRIPT.name} answered {len(answers)} results for {len(items)} items")
    return [[str(message) for message in answer] for answer in answers]


@cache
def github_schema() -> dict[str, Any]:
    """GitHub's schema as introspection JSON (``__schema``), loaded once."""
    _require_material()
    schema: dict[str, Any] = json.loads(SCHEMA_JSON.read_text())["__schema"]
    return schema


def type_text(reference: Mapping[str, Any]) -> str:
    """An introspection type reference written as in a document: ``[ID!]!``."""
    if reference["kind"] == "NON_NULL":
        return type_text(reference["ofType"]) + "!"
    if reference["kind"] == "LIST":
        return "[" + type_text(reference["ofType"]) + "]"
    return str(reference["name"])
