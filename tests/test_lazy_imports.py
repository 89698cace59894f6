"""An import of the project's own modules inside a function is there only to keep a heavy import (torch,
ONNX Runtime, Ray, GDAL, the service) off a path that does not need it, and says so on its line:
``# lazy: <reason>`` (DESIGN.md, "The packages and their layers"). Every other import goes at the top."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("translate", "training", "serving", "translate_cli")


def function_level_project_imports(path: Path):
    """(line, statement) of each import of a project module inside a function of ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.ImportFrom):
                    names = [child.module or ""] if not child.level else ["."]
                else:
                    names = [a.name for a in child.names]
                if any(n == "." or n.split(".")[0] in PACKAGES for n in names):
                    text = "\n".join(lines[child.lineno - 1:child.end_lineno])
                    found.append((child.lineno, text))
            visit(child, inside)

    visit(ast.parse(source), False)
    return found


def modules():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", list(modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_function_level_import_of_the_project_says_why(path):
    missing = [f"{path.relative_to(ROOT)}:{line}: {text.strip()}"
               for line, text in function_level_project_imports(path) if "# lazy:" not in text]
    assert not missing, "function-level imports without a '# lazy: <reason>' comment:\n" + "\n".join(missing)


def test_the_check_sees_an_unexplained_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from translate import imageio\n    from . import x  # lazy: torch\n"
                 "    import json\n")
    assert [line for line, _ in function_level_project_imports(f)] == [4, 5]
