"""hilserl eval trace:=true: the step-by-step record of the policy alone (eval_trace.py)."""

import json

import numpy as np
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import JointState

from hilserl.eval_trace import EvalTrace, plot_trace, read_trace, summarize, summary_lines
from hilserl_core.robot.intervention import Source
from hilserl_interfaces.actions import ActionMsg, to_joy


def _pose(x, y, z):
    m = PoseStamped()
    m.pose.position.x, m.pose.position.y, m.pose.position.z = x, y, z
    return m


def _step(trace, arm, t, pos, width, action, gripper, source=Source.POLICY):
    trace.on_pose(arm, _pose(*pos))
    trace.on_gripper(arm, JointState(position=[width / 2, width / 2]))
    trace.on_executed(arm, to_joy(ActionMsg(np.asarray(action, float), gripper, t, source), executed=True))


def test_trace_rows_carry_the_episode_its_outcome_and_each_arms_state_and_action(tmp_path):
    trace = EvalTrace(tmp_path / "eval_trace.csv", ["left", "right"])
    _step(trace, "right", 97.0, (0.7, 0.0, 0.5), 0.0, [0] * 6, 1)  # the last episode's last step, reported late
    for arm in ("left", "right"):  # the mux holding the arms through the reset
        _step(trace, arm, 98.0, (0.5, 0.0, 0.3), 0.08, [0] * 6, 1, Source.HOLD)
    for k in range(10):  # episode 3, counted, failed: the right arm drives up into its limit and closes on nothing
        _step(trace, "left", 100.0 + 0.1 * k, (0.4, 0.0, 0.2 - 0.01 * k), 0.08, [0.1, 0, 0.5, 0, 0, 0], 1)
        _step(trace, "right", 100.0 + 0.1 * k, (0.3, 0.35, 0.3 + 0.02 * k), 0.0, [0, 0.95, -1.0, 0, 0, 0], 2)
    trace.end_episode(3, counted=True, success=False, steps=10)
    _step(trace, "left", 200.0, (0.5, 0.1, 0.1), 0.03, [0, 0, 0, 0, 0, 0], 2, Source.HOLD)
    trace.end_episode(4, counted=False, success=True, steps=1)
    trace.end_episode(5, counted=True, success=True, steps=5)  # nothing pending: nothing written
    trace.close()
    rows = read_trace(tmp_path / "eval_trace.csv")
    assert len(rows) == 21
    first = rows[0]
    assert (first["episode"], first["counted"], first["success"], first["arm"], first["t_s"]) == ("3", "1", "0", "left", "0.000")
    assert float(first["gripper_width_m"]) == 0.08 and first["source"] == "policy" and first["gripper_action"] == "1"
    assert rows[-1]["episode"] == "4" and rows[-1]["source"] == "hold" and rows[-1]["counted"] == "0"
    assert abs(float(rows[-2]["t_s"]) - 0.9) < 1e-6 and abs(float(rows[-2]["z"]) - 0.48) < 1e-6

    s = summarize(rows)  # counted policy steps only: the hold step of episode 4 is not in it
    assert s["left"]["steps"] == s["right"]["steps"] == 10
    assert s["right"]["axis_at_limit"][:3] == [0.0, 1.0, 1.0] and s["left"]["axis_at_limit"][2] == 0.0
    assert s["right"]["gripper_close_share"] == 1.0 and s["left"]["gripper_close_share"] == 0.0
    assert s["right"]["tcp_max_m"] == [0.3, 0.35, 0.48] and s["left"]["tcp_min_m"][2] == 0.11
    json.dumps(s)  # goes into eval.json
    assert "right: 10 policy steps" in "\n".join(summary_lines(s))
    png = plot_trace(rows, tmp_path / "eval_trace.png", "t")
    assert png is not None and png.stat().st_size > 10_000


def test_eval_refuses_unknown_options_and_names_trace_among_the_known(tmp_path):
    import pytest
    import yaml

    from hilserl.evaluate import run_eval
    from hilserl.graph import GraphError

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"setup": "sim_single_arm", "arguments": {"task": "pick_cube"}}))
    with pytest.raises(GraphError, match="unknown option.*trac:=.*trace"):
        run_eval(str(tmp_path), {"trac": "true"})
