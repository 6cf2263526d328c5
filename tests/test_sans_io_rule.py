"""The sans-I/O rule: protocol cores import no I/O, clock, thread or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src" / "gridmesh"
FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "selectors"}
CORES = ("wire", "topics.py", "protocols", "security")


def forbidden_imports(source: str) -> list[str]:
    """Top-level modules from FORBIDDEN that ``source`` imports, wherever the import is."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in FORBIDDEN]
    return found


def core_files() -> list[Path]:
    files: list[Path] = []
    for core in CORES:
        path = SOURCE / core
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
    return files


def test_the_checker_catches_every_form_of_forbidden_import() -> None:
    snippet = (
        "import os\n"
        "import asyncio.events\n"
        "from time import monotonic\n"
        "from random import Random\n"
        "if True:\n    import socket\n"
        "def f():\n    import threading\n"
        "from . import random\n"  # relative: a sibling module, allowed
        "import cbor2\n"
    )
    assert forbidden_imports(snippet) == [
        "os",
        "asyncio.events",
        "time",
        "random",
        "socket",
        "threading",
    ]


def test_protocol_cores_exist_and_are_checked() -> None:
    files = core_files()
    names = {path.relative_to(SOURCE).parts[0] for path in files}
    assert {"wire", "protocols"} <= names
    assert len(files) >= 8


def test_no_protocol_core_imports_io_clocks_or_global_randomness() -> None:
    offenders = {
        str(path.relative_to(SOURCE)): imports
        for path in core_files()
        if (imports := forbidden_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, f"sans-I/O rule broken (see docs/ARCHITECTURE.md): {offenders}"
