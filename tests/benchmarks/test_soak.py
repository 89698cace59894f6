"""The soak's short form (benchmarks/soak.py): a couple of thousand requests, a tenth of them hostile or odd, with the
same events as the long one (a retraining job promoted mid-load, a model replica SIGKILLed), run as a user runs it;
its goals hold: no 5xx beyond the requests in flight at the kill, none lost, no answer from the wrong version."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_BOUND_S = 900  # a hang bound on a loaded 2-CPU machine, not a speed check


def test_the_short_soak_meets_its_goals(tmp_path):
    pytest.importorskip("ray.serve")
    out = tmp_path / "soak.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--requests", "1500", "--concurrency", "8",
                           "--quiet", "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=RUN_BOUND_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["requests"] >= 1500 and result["hostile"] > 0
    assert result["retraining"]["state"] == "succeeded", result["retraining"]
    assert result["killed_pid"] and result["events_s"]["killed"] is not None
    assert set(result["answers_by_version"]) == {"v0001", "v0002"}, result["answers_by_version"]  # the switch ran
    assert result["unexplained_5xx"] == 0, result["examples"]["unexplained_5xx"]
    assert result["lost"] == 0, result["examples"]["lost"]
    assert result["wrong_version"] == 0, result["examples"]["wrong_version"]
    assert result["unexpected_4xx"] == 0, result["examples"]["unexpected_4xx"]
    assert {m["process"] for m in result["memory"]} >= {"ModelServer", "Ingress"}
