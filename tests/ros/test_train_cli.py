"""`hilserl train` and `hilserl eval` as a user runs them (processes, the simulated arm): a short
run writes its record, a second call resumes it, evaluation reports the policy alone."""

import csv
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def hilserl(*args, timeout=300):
    env = dict(os.environ, HILSERL_EXECUTOR="single")
    return subprocess.run([sys.executable, "-m", "hilserl.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def test_train_writes_its_record_resumes_and_eval_reports(tmp_path):
    run = tmp_path / "run"
    first = hilserl("train", "sim_single_arm", "steps:=120", f"run:={run}", "demos:=none", "progress_s:=5")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "step budget reached" in first.stdout
    rows = list(csv.DictReader(open(run / "episodes.csv")))
    assert rows and int(rows[-1]["env_steps"]) >= 120
    assert [int(r["env_steps"]) for r in rows] == sorted(int(r["env_steps"]) for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == int(rows[-1]["env_steps"]) and summary["episodes"] == len(rows)
    assert (run / "training.png").read_bytes()[:4] == b"\x89PNG" and (run / "config.yaml").is_file()
    assert any((run / "checkpoints").iterdir()), "no checkpoint at the end of the run"
    # the same run again with a larger budget resumes: the table goes on, the learner loads its checkpoint
    second = hilserl("train", "sim_single_arm", "steps:=240", f"run:={run}", "demos:=none", "progress_s:=5")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"resuming at {rows[-1]['env_steps']} env steps" in second.stdout
    more = list(csv.DictReader(open(run / "episodes.csv")))
    assert len(more) > len(rows) and int(more[-1]["env_steps"]) >= 240
    assert "resumed from" in (run / "graph.log").read_text()
    ev = hilserl("eval", str(run), "episodes:=2", "scripted:=false", "trace:=true")
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    result = json.loads((run / "eval.json").read_text())
    assert result["policy"]["episodes"] == 2 and 0.0 <= result["policy"]["success_rate"] <= 1.0
    # how far each failed episode got, by the simulator's report on the same episode
    reached = result["policy"]["failures_reached"]
    assert set(reached) <= {"none", "grasped"} and sum(reached.values()) == 2 - result["policy"]["successes"], reached
    assert "policy alone:" in ev.stdout
    # every episode counts from the first scene on (the actor waits for the checkpoint's weights), and
    # the trace holds each counted step of the arm
    trace = list(csv.DictReader(open(run / "eval_trace.csv")))
    counted = [r for r in trace if r["counted"] == "1"]
    assert sorted({r["episode"] for r in counted}) == ["1", "2"], sorted({(r["episode"], r["counted"]) for r in trace})
    assert {r["arm"] for r in counted} == {"left"} and all(r["source"] in ("policy", "hold") for r in counted)
    policy_steps = sum(r["source"] == "policy" for r in counted)
    assert policy_steps >= 0.9 * len(counted)  # not the holds through the resets
    assert result["trace"]["left"]["steps"] == policy_steps and (run / "eval_trace.png").is_file()
