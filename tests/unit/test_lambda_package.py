"""The Lambda functions' code directory leaves the testing kit out and still runs.

``scripts/lambda_package.py`` lays out what ``template.yaml``'s CodeUri points at. Here it
is laid out into a temporary directory and each function's handler is imported from it in
a fresh interpreter whose path holds the package and the installed dependencies only (not
``src/``), so a handler that needed a left-out module would fail to import.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("lambda_package", ROOT / "scripts/lambda_package.py")
assert _spec and _spec.loader
lambda_package = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lambda_package)


def _template() -> dict[str, Any]:
    """template.yaml as plain data (as tests/unit/test_template.py reads it)."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(ROOT / "template.yaml"))))


def test_code_uri_is_the_laid_out_package() -> None:
    code_uri = _template()["Globals"]["Function"]["CodeUri"]
    assert (ROOT / code_uri).resolve() == lambda_package.OUTPUT


def test_the_package_leaves_the_testing_kit_out(tmp_path: Path) -> None:
    out = lambda_package.package(tmp_path / "lambda")
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert not [f for f in files if f.startswith("valine/testing/")]
    assert "valine/runtime/demo.py" not in files
    assert "valine/runtime/simulate.py" not in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert "requirements.txt" in files
    # everything else of the source is there
    source = ROOT / "src" / "valine"
    expected = {
        "valine/" + p.relative_to(source).as_posix()
        for p in source.rglob("*.py")
        if "__pycache__" not in p.parts
        and not p.relative_to(source).as_posix().startswith("testing/")
        and p.name not in {"demo.py", "simulate.py"}
    }
    assert expected <= files


def test_every_handler_imports_from_the_package_alone(tmp_path: Path) -> None:
    out = lambda_package.package(tmp_path / "lambda")
    handlers = [
        resource["Properties"]["Handler"]
        for resource in _template()["Resources"].values()
        if resource.get("Type") == "AWS::Serverless::Function"
    ]
    assert len(handlers) == 5  # discord, github, worker, reconcile, outbox
    site = [p for p in sys.path if p.endswith("site-packages")]
    script = (
        "import importlib, json, sys\n"
        f"handlers = {handlers!r}\n"
        "for h in handlers:\n"
        "    module, _, name = h.rpartition('.')\n"
        "    assert callable(getattr(importlib.import_module(module), name))\n"
        "import valine\n"
        "print(json.dumps({'file': valine.__file__,"
        " 'testing': sorted(m for m in sys.modules if m.startswith('valine.testing'))}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        env={"PYTHONPATH": ":".join([str(out), *site]), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["file"]).is_relative_to(out)
    assert report["testing"] == []
