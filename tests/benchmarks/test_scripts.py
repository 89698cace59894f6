"""Every benchmark runs as a user runs it, ``python -m benchmarks.NAME`` from the checkout's root, and no code
of the project reaches its own packages by editing the import path."""
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name not in ("harness", "judges"))  # libraries of the scripts
#: the project's own code, benchmarks and tests included
PROJECT = ("translate", "training", "serving", "translate_cli", "benchmarks", "tests", "docs")


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_benchmark_parses_its_arguments_as_a_module(name):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("usage:"), proc.stdout[-2000:] + proc.stderr[-2000:]


def test_no_code_of_the_project_edits_the_import_path():
    edit = re.compile(r"\bsys\.path\s*(\.(insert|append|extend)\s*\(|(\[[^]]*\])?\s*(\+=|=[^=]))")
    found = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
             for top in PROJECT for path in sorted((ROOT / top).rglob("*.py"))
             for i, line in enumerate(path.read_text().splitlines(), 1) if edit.search(line)]
    assert not found, "\n".join(found)
