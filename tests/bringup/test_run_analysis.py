"""The run directory's learner record: learner.csv and ee_positions.csv appended across a resume,
TensorBoard scalars that read back with their tags and env steps, analysis.png and visitation.png
drawn from synthetic rows."""

import numpy as np
import pytest

from hilserl.analysis import LearnerLog, PoseLog, Scalars, analysis_points, plot_analysis, plot_visitation
from hilserl.runlog import EpisodeRow, RunLog

PNG = b"\x89PNG\r\n\x1a\n"


def episode(i, success, intervened, steps=50):
    return EpisodeRow(env_steps=steps * i, wall_s=5.0 * i, episode=i, success=int(success), steps=steps,
                      intervened_steps=intervened, alone=int(intervened == 0), duration_s=steps / 10,
                      episode_return=float(success), weights_version=i, updates=10 * i)


def learner_values(i):
    """What the learner's diagnostics carry (strings), an analysis every second episode."""
    values = {"updates": str(100 * i), "transitions_received": str(50 * i), "weights_version": str(i),
              "rlpd/critic_loss": f"{1.0 / i:.4g}", "rlpd/temperature": "0.01", "lost_transitions": "0"}
    if i >= 2:
        taken = 100 * (i - i % 2)
        values.update({"analysis_updates": str(taken), "rlpd/q_action_variance": f"{1e-3 * taken:.4g}",
                       "rlpd/policy_mean_abs": "0.5", "rlpd/policy_std": f"{1.0 / taken:.4g}"})
    return values


def test_learner_log_keeps_figures_and_rates_and_a_resumed_run_appends(tmp_path):
    log = LearnerLog(tmp_path)
    rows = [log.add(50 * i, 5.0 * i, learner_values(i)) for i in range(1, 4)]
    assert rows[0]["updates_per_s"] is None and rows[1]["updates_per_s"] == pytest.approx(20.0)
    assert rows[0]["rlpd/q_action_variance"] is None and rows[2]["analysis_updates"] == 200
    assert rows[0]["rlpd/actor_loss"] is None  # not published (yet): an empty cell
    again = LearnerLog(tmp_path)
    assert again.rows == rows
    row = again.add(200, 20.0, learner_values(4))  # a new session: no rate across the restart
    assert row["updates_per_s"] is None and len(LearnerLog(tmp_path).rows) == 4
    assert [p["analysis_updates"] for p in analysis_points(LearnerLog(tmp_path).rows)] == [200, 400]


def test_tensorboard_scalars_read_back_with_tags_and_env_steps_across_a_resume(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    runlog = RunLog(tmp_path)
    for session in ((1, 2), (3, 4, 5, 6)):  # the second one resumes the run, seeing episode 2's analysis first
        learner = LearnerLog(tmp_path)
        scalars = Scalars(tmp_path, learner.rows[-1]["analysis_updates"] if learner.rows else None)
        assert scalars.available
        for i in session:
            row = episode(i, success=i % 2 == 0, intervened=0 if i > 2 else 10)
            runlog.add(row)
            scalars.episode(row, runlog)
            scalars.learner(learner.add(row.env_steps, row.wall_s, learner_values(i)))
        scalars.close()
    acc = accumulator.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"episode/success", "episode/return", "episode/intervention_rate", "episode/duration_s",
            "rolling/success_rate", "rolling/alone_success_rate", "rolling/intervention_rate", "rolling/cycle_time_s",
            "learner/updates", "learner/updates_per_s", "learner/rlpd/critic_loss", "learner/rlpd/temperature",
            "analysis/q_action_variance", "analysis/policy_mean_abs", "analysis/policy_std"} <= tags

    def series(tag):
        return [(e.step, pytest.approx(e.value, rel=1e-4)) for e in acc.Scalars(tag)]

    assert series("episode/success") == [(50, 0), (100, 1), (150, 0), (200, 1), (250, 0), (300, 1)]
    assert series("episode/intervention_rate") == [(50, 0.2), (100, 0.2), (150, 0), (200, 0), (250, 0), (300, 0)]
    assert series("rolling/alone_success_rate") == [(150, 0), (200, 0.5), (250, 1 / 3), (300, 0.5)]  # unassisted only
    assert [s for s, _ in series("learner/rlpd/critic_loss")] == [50, 100, 150, 200, 250, 300]
    # each analysis once, at the env steps of the first episode that saw it, also across the restart
    assert series("analysis/q_action_variance") == [(100, 0.2), (200, 0.4), (300, 0.6)]
    assert [s for s, _ in series("learner/updates_per_s")] == [100, 200, 250, 300]  # none across the restart


def test_pose_log_appends_and_reads_back_per_arm(tmp_path):
    poses = PoseLog(tmp_path)
    poses.add([("left", 0, (0.5, 0.0, 0.2)), ("right", 0, (0.4, -0.1, 0.3))])
    poses.close()
    poses = PoseLog(tmp_path)  # resumed
    poses.add([("left", 100, (0.51234567, 0.01, 0.25))])
    poses.close()
    with open(poses.path, "a") as f:
        f.write("left,200,0.5")  # cut short by a crash
    got = PoseLog.read(poses.path)
    assert sorted(got) == ["left", "right"]
    np.testing.assert_allclose(got["left"], [[0, 0.5, 0.0, 0.2], [100, 0.5123, 0.01, 0.25]])
    assert PoseLog.read(tmp_path / "none.csv") == {}


def test_analysis_and_visitation_plots_are_pngs(tmp_path):
    log = LearnerLog(tmp_path)
    assert plot_analysis([], tmp_path / "none.png") is None
    assert plot_analysis([log.add(50, 5.0, learner_values(1))], tmp_path / "none.png") is None  # no analysis yet
    rows = [log.add(50 * i, 5.0 * i, learner_values(i)) for i in range(2, 12)]
    assert plot_analysis(rows, tmp_path / "analysis.png", "t").read_bytes()[:8] == PNG
    rng = np.random.default_rng(0)
    steps = np.repeat(np.arange(0, 1000, 50), 20)
    spread = np.where(steps < 500, 0.1, 0.01)[:, None]  # early exploration, late a narrow path
    samples = {arm: np.column_stack([steps, 0.5 + spread * rng.standard_normal((len(steps), 3))]) for arm in ("left", "right")}
    assert plot_visitation({}, tmp_path / "none.png") is None
    assert plot_visitation(samples, tmp_path / "visitation.png", "t", total_steps=1000).read_bytes()[:8] == PNG
