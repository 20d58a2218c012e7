"""The AWS adapters cost nothing to import and never scan a DynamoDB table.

Importing ``valine.store.dynamodb`` or ``valine.queue.sqs`` must not load boto3 or
botocore (the Lambda cold start counts every import, docs/benchmarks.md; clients are built on
first use). And ``/status`` must stay flat as runs accumulate, so the DynamoDB adapter
reads through keys and indexes only: no Scan anywhere in its source.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import valine

SOURCES = Path(valine.__file__).parent
AWS_MODULES = ["valine.store.dynamodb", "valine.queue.sqs"]
SDK_PACKAGES = {"boto3", "botocore", "s3transfer"}


@pytest.mark.parametrize("module", AWS_MODULES)
def test_importing_an_aws_adapter_loads_no_aws_sdk(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SDK_PACKAGES)!r})\n"
        "print(loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCES.parent)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} imported {result.stdout.strip()}"


def _scan_uses(path: Path) -> list[str]:
    """Every place in ``path``'s code (docstrings and comments aside) that could be a Scan."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.lower() in {"scan", "parallel_scan"}:
            uses.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id.lower() == "scan":
            uses.append(f"line {node.lineno}: {node.id}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and node.value.strip().lower() in {"scan", "dynamodb.scan"}
        ):
            uses.append(f"line {node.lineno}: {node.value!r}")  # get_paginator("scan")...
    return uses


def test_the_dynamodb_adapter_never_scans() -> None:
    path = SOURCES / "store" / "dynamodb.py"
    assert _scan_uses(path) == []
    # The plain-text check the design asks for, too: no scan( call in the source at all.
    assert "scan(" not in path.read_text().lower()


def test_the_scan_detector_finds_scans(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may say Scan."""\n'
        "def f(client):\n"
        '    """Scan is mentioned here too."""\n'
        "    client.scan(TableName='t')\n"
        "    client.get_paginator('scan')\n"
        "    return client.query(ScanIndexForward=False)\n"
    )
    assert _scan_uses(sample) == ["line 4: .scan", "line 5: 'scan'"]
