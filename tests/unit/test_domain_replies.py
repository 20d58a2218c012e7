"""The use cases speak the domain; only ``valine.discord`` speaks Discord's wire format.

A scan of the core's and the use cases' code (docstrings and comments aside) fails on
any sign of Discord's interaction or message format: the keys of a message body, the
ephemeral flag spelled ``1 << 6``, a callback type in a ``{"type": n}`` document, the
constants' names. (A bare 64 is not flagged: the use cases have other 64s.) And
the renderer is checked against what the use cases mean: a private reply is ephemeral,
a button comes back as the custom id the router parses, every message mentions nobody.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import valine
from valine.core.replies import Button, Card, Deferred, Message, Reply, Style, notice
from valine.discord.render import (
    EPHEMERAL,
    MAX_ROWS,
    ROW_WIDTH,
    custom_id,
    interaction_response,
    message_body,
)

SOURCES = Path(valine.__file__).parent
#: Keys of Discord's message bodies and interaction responses.
WIRE_KEYS = {
    "components",
    "custom_id",
    "allowed_mentions",
    "flags",
    "embeds",
    "content",
    "nonce",
    "enforce_nonce",
}
#: Names the wire format's constants went by.
WIRE_NAMES = {
    "EPHEMERAL",
    "CHANNEL_MESSAGE",
    "DEFERRED",
    "UPDATE_MESSAGE",
    "DEFERRED_CHANNEL_MESSAGE",
    "BUTTON_PRIMARY",
    "BUTTON_SUCCESS",
    "BUTTON_DANGER",
}


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def wire_format_in(source: str) -> list[str]:
    """Every place in ``source`` that spells Discord's interaction or message format."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            if node.value in WIRE_KEYS:
                found.append(f"line {node.lineno}: {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.LShift):
            left, right = node.left, node.right
            if ast.unparse(left) == "1" and ast.unparse(right) == "6":
                found.append(f"line {node.lineno}: 1 << 6 (the ephemeral flag)")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                is_type = isinstance(key, ast.Constant) and key.value == "type"
                if is_type and isinstance(value, ast.Constant) and isinstance(value.value, int):
                    found.append(f"line {node.lineno}: {{'type': {value.value}}}")
        elif isinstance(node, ast.Name | ast.alias):
            name = node.id if isinstance(node, ast.Name) else (node.asname or node.name)
            if name.split(".")[-1] in WIRE_NAMES:
                found.append(f"line {node.lineno}: {name}")
    return found


DOMAIN_MODULES = sorted(p for p in (*SOURCES.glob("core/*.py"), *SOURCES.glob("usecases/*.py")))


@pytest.mark.parametrize("path", DOMAIN_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_core_and_the_use_cases_never_spell_discords_wire_format(path: Path) -> None:
    assert wire_format_in(path.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        'answer = {"type": 4, "data": {"content": "hi"}}',
        "flags = 1 << 6",
        'row = {"components": []}',
        "from valine.discord.render import EPHEMERAL",
        "kind = CHANNEL_MESSAGE",
    ],
)
def test_the_scan_finds_each_kind_of_wire_format(snippet: str) -> None:
    assert wire_format_in(snippet), snippet


def test_the_scan_leaves_docstrings_alone() -> None:
    assert wire_format_in('def f():\n    """Sets "components" and flags 64."""\n') == []


_TEXT = st.text(max_size=40)
_BUTTONS = st.builds(
    Button,
    action=st.sampled_from(["approve", "ship", "ship-confirm", "cancel", "retry"]),
    run_id=st.from_regex(r"r[0-9]{8}-[a-z0-9]{6}", fullmatch=True),
    label=_TEXT,
    style=st.sampled_from(list(Style)),
    issue=st.none() | st.integers(1, 99_999),
)
_MESSAGES = st.builds(
    Message,
    text=_TEXT,
    cards=st.lists(st.builds(Card, _TEXT, _TEXT, st.integers(0, 0xFFFFFF)), max_size=3).map(tuple),
    rows=st.lists(st.lists(_BUTTONS, max_size=7).map(tuple), max_size=7).map(tuple),
)


@given(message=_MESSAGES, private=st.booleans())
def test_a_reply_renders_as_discord_expects(message: Message, private: bool) -> None:
    response = interaction_response(Reply(message, private=private))
    assert response["type"] == 4
    data = response["data"]
    assert data["content"] == message.text
    assert data["allowed_mentions"] == {"parse": []}
    assert bool(data.get("flags", 0) & EPHEMERAL) is private
    assert [e["title"] for e in data["embeds"]] == [c.title for c in message.cards]
    rows = data["components"]
    assert len(rows) <= MAX_ROWS
    assert all(row["type"] == 1 and 1 <= len(row["components"]) <= ROW_WIDTH for row in rows)
    shown = [b for row in rows for b in row["components"]]
    wanted = [b for row in message.rows[:MAX_ROWS] for b in row[:ROW_WIDTH]]
    assert [b["custom_id"] for b in shown] == [custom_id(b) for b in wanted]
    assert all(b["type"] == 2 and b["style"] in (1, 3, 4) for b in shown)


@given(button=_BUTTONS)
def test_a_buttons_custom_id_names_its_action_run_and_issue(button: Button) -> None:
    parts = custom_id(button).split(":")
    assert parts[:2] == [button.action, button.run_id]
    assert parts[2:] == ([str(button.issue)] if button.issue else [])


def test_a_deferred_answer_and_a_notice() -> None:
    assert interaction_response(Deferred()) == {"type": 5}
    body = interaction_response(notice("only you"))["data"]
    assert body["flags"] == EPHEMERAL and body["content"] == "only you"
    assert message_body(Message("everyone")).get("flags") is None
