"""The benchmark scripts run and end with the JSON line their issues ask for (tiny settings)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_learner_throughput_prints_the_required_json_keys():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "learner_throughput.py"), "--threads", "1", "--repeats", "1",
         "--block", "2", "--warmup", "1", "--compute-dtype", "auto"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    lines = out.strip().splitlines()
    result = json.loads(lines[-1])
    for key in ("updates_per_s_2_critics", "updates_per_s_10_critics", "bytes_per_transition"):
        assert result[key] > 0, key
    assert result["bytes_per_transition"] <= 60_000
    assert "reproduce" in result and any(line.startswith("headline: 2 critics") for line in lines)
