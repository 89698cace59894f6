"""The layers of the code hold: the import-linter contracts in pyproject.toml are kept, and they do
catch an import that points back up (checked on a scratch copy of the tree)."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("translate", "training", "serving", "translate_cli")


def _lint(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml")], cwd=root, capture_output=True,
                          text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_the_layer_contracts_are_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_an_import_back_up_breaks_them(tmp_path):
    for p in PACKAGES:
        shutil.copytree(ROOT / p, tmp_path / p, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "translate" / "padding.py", "a") as f:  # a leaf reaching into the predictor
        f.write("\n\ndef _cycle():\n    from .predictor import Predictor  # noqa\n")
    with open(tmp_path / "training" / "loop.py", "a") as f:  # the trainers reaching into the service
        f.write("\n\ndef _up():\n    import serving.store  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "translate.padding -> translate.predictor" in r.stdout and "training.loop -> serving.store" in r.stdout
