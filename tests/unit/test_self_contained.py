"""The repository is self-contained: nothing in it refers to documents outside it.

Every tracked file is read. A design document that is not in the repository (its name
or its numbered sections), the folder beside the checkout, and package docstrings that
promise something "(later)" all fail the test. One path outside is allowed, in the
benchmark only: ``../shared/bench/``, the peer benchmark shared with other
implementations (docs/benchmarks.md says why). ``.ci/run`` is the CI entry point the
workplace calls; it only says where CI runs and is left as it is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Spelled in pieces so that this file does not match itself.
OUTSIDE_DOCUMENT = ("DESIGN" + " §", "DESIGN" + ".md", "/work/" + "shared")
BESIDE = ".." + "/shared"
PEER_BENCHMARK = BESIDE + "/bench/"
#: Where the peer benchmark may be named.
BENCHMARK_FILES = ("bench/", "docs/benchmarks.md", "tests/unit/test_bench_smoke.py")
#: Files the test leaves alone (see the module docstring).
EXEMPT = frozenset({".ci/run", "tests/unit/test_self_contained.py"})


def _tracked() -> list[str]:
    """Every file git tracks (and new files not ignored), relative to the root."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in listed if (ROOT / name).is_file()]


def _text(name: str) -> str | None:
    try:
        return (ROOT / name).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary


def _outside_references(name: str, text: str) -> list[str]:
    """The lines of ``text`` that point outside the repository (allowances applied)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        outside = any(needle in line for needle in OUTSIDE_DOCUMENT)
        beside = BESIDE in line and not (
            name.startswith(BENCHMARK_FILES) and _only_the_peer_benchmark(line)
        )
        if outside or beside:
            found.append(f"{name}:{number}: {line.strip()}")
    return found


def _only_the_peer_benchmark(line: str) -> bool:
    """True if every mention of the folder beside is the folder itself or the benchmark."""
    rest = line
    while (at := rest.find(BESIDE)) >= 0:
        tail = rest[at:]
        if tail.startswith(BESIDE + "/") and not tail.startswith(PEER_BENCHMARK):
            return False
        rest = tail[len(BESIDE) :]
    return True


def test_no_file_refers_outside_the_repository() -> None:
    found = []
    for name in _tracked():
        text = None if name in EXEMPT else _text(name)
        if text is not None:
            found += _outside_references(name, text)
    assert found == []


def test_the_check_catches_each_kind_of_reference() -> None:
    assert _outside_references("src/valine/x.py", "see " + OUTSIDE_DOCUMENT[0] + "9")
    assert _outside_references("README.md", "read " + OUTSIDE_DOCUMENT[1])
    assert _outside_references("tests/x.py", BESIDE + "/bench/webhooks/loadgen.py")
    assert not _outside_references("bench/run.py", BESIDE + "/bench/webhooks/loadgen.py")
    assert _outside_references("bench/run.py", BESIDE + "/notes/plan.md")
    assert not _outside_references("docs/benchmarks.md", f"`{BESIDE}` beside the checkout")
    assert _outside_references("README.md", f"`{BESIDE}` beside the checkout")


def test_package_docstrings_are_current() -> None:
    stale = [
        init.relative_to(ROOT).as_posix()
        for init in (ROOT / "src" / "valine").rglob("__init__.py")
        if "(later)" in init.read_text()
    ]
    assert stale == []


def test_the_readme_maps_every_package_and_module() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```\nsrc/valine/\n")
    code_map = readme[start : readme.index("```\n", start + 4)]
    named = {word.strip(",:") for line in code_map.splitlines() for word in line.split()}
    source = ROOT / "src" / "valine"
    entries = [
        p.name + ("/" if p.is_dir() else "")
        for p in source.iterdir()
        if p.name not in {"__init__.py", "__pycache__", "py.typed"}
    ]
    assert [entry for entry in entries if entry not in named] == []
