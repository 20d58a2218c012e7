"""Lay out the Lambda functions' code directory, ``build/lambda/`` (``template.yaml`` CodeUri).

``sam build`` copies its CodeUri whole and offers no way to leave files out, so the
package is laid out here first: ``src/valine`` without the testing kit (the GitHub and
Discord stand-ins, thousands of lines no function runs) and without the two local
commands that need it (``valine demo`` and ``valine simulate``), plus
``src/requirements.txt`` (what ``sam build`` installs) and ``src/valine.toml`` if present
(the workflow rules). ``make deploy-check`` runs it before ``sam build``;
``tests/unit/test_lambda_package.py`` checks what it leaves out and that every handler
imports from it alone.

    .venv/bin/python scripts/lambda_package.py            # (re)write build/lambda/
    .venv/bin/python scripts/lambda_package.py DEST       # somewhere else
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
OUTPUT = ROOT / "build" / "lambda"
#: Paths under src/valine that no function runs and that the package leaves out.
LEFT_OUT = ("testing", "runtime/demo.py", "runtime/simulate.py")
#: Files next to the package that go with it when they exist.
BESIDE = ("requirements.txt", "valine.toml")


def _ignored(directory: str, names: list[str]) -> set[str]:
    """``shutil.copytree``'s filter: bytecode caches and the left-out paths."""
    relative = Path(directory).relative_to(SOURCE / "valine")
    out = {name for name in names if name == "__pycache__" or name.endswith(".pyc")}
    for name in names:
        if (relative / name).as_posix() in LEFT_OUT:
            out.add(name)
    return out


def package(destination: Path) -> Path:
    """Write the code directory into ``destination`` (emptied first); returns it."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(SOURCE / "valine", destination / "valine", ignore=_ignored)
    for name in BESIDE:
        if (SOURCE / name).is_file():
            shutil.copy2(SOURCE / name, destination / name)
    return destination


def main() -> None:
    """Lay out the package where the command line says (``build/lambda`` by default)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", nargs="?", type=Path, default=OUTPUT)
    args = parser.parse_args()
    print(f"lambda package: {package(args.destination)}")


if __name__ == "__main__":
    main()
