"""The training run's record: the episode table survives a restart, the figures say what the
episodes say, the plot is written; the evaluation's confidence interval."""

import json
from pathlib import Path
import pytest

from hilserl.evaluate import wilson_interval
from hilserl.runlog import EpisodeRow, RunLog, plot_run, rolling


def row(i, success, intervened, steps=50):
    return EpisodeRow(env_steps=steps * i, wall_s=5.0 * i, episode=i, success=int(success), steps=steps,
                      intervened_steps=intervened, alone=int(intervened == 0), duration_s=steps / 10,
                      episode_return=float(success), weights_version=i, updates=10 * i)


def test_the_table_is_appended_and_read_back_for_a_resumed_run(tmp_path):
    log = RunLog(tmp_path)
    assert log.env_steps == 0 and log.figures()["success_rate"] is None
    for i in range(1, 5):
        log.add(row(i, success=i % 2 == 0, intervened=0 if i > 2 else 10))
    again = RunLog(tmp_path)
    assert again.rows == log.rows and again.env_steps == 200 and again.wall_s == 20.0
    f = again.figures()
    assert f["success_rate"] == 0.5 and f["alone_success_rate"] == 0.5 and f["alone_episodes"] == 2
    assert f["intervention_rate"] == pytest.approx(20 / 200) and f["cycle_time_s"] == pytest.approx(5.0)


def test_rolling_mean_over_a_window():
    assert rolling([1, 0, 1, 1], window=2) == [1.0, 0.5, 0.5, 1.0]


def test_plot_is_a_png(tmp_path):
    assert plot_run([], tmp_path / "none.png") is None
    path = plot_run([row(i, i > 3, max(0, 20 - 4 * i)) for i in range(1, 10)], tmp_path / "training.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wilson_interval_is_sane_at_the_edges():
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and 0.92 < lo < 0.93
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_compare_table_and_methods():
    from hilserl.compare import METHODS, table
    from hilserl.graph import load_graph, with_node_parameters

    assert set(METHODS) == {"hil-serl", "rlpd", "rl", "bc", "hg-dagger"}
    for method, (graph_args, node_params) in METHODS.items():  # every method resolves to a graph
        g = load_graph("sim_single_arm", {k: v for k, v in graph_args.items() if k != "demos"})
        for executable, changes in node_params.items():
            g = with_node_parameters(g, executable, changes)
        learner = next(n for n in g.nodes if n.executable == "learner_node")
        assert ("learner.algorithm", "bc") in learner.parameters if "bc" in method or "dagger" in method else True
    md = table({"bc": [{"success_rate": 0.5, "cycle_time_s": 6.0, "env_steps": 100, "wall_clock_s": 60.0},
                       {"success_rate": 0.0, "cycle_time_s": None, "env_steps": 100, "wall_clock_s": 120.0}]}, "t")
    assert "| bc | 0.25 | 0.50, 0.00 | 6.0 | 100 | 1.5 |" in md


def test_the_evaluation_graph_runs_the_policy_alone_deterministic_or_sampled(tmp_path):
    from hilserl.evaluate import eval_graph

    for deterministic in (True, False):
        g = eval_graph("sim_single_arm", {"task": "peg_insertion", "lockstep": "true"}, tmp_path, 1000, deterministic)
        nodes = {n.executable: n.parameter_dict() for n in g.nodes}
        assert nodes["actor_node"]["deterministic"] is deterministic and nodes["actor_node"]["grasp_epsilon"] == 0.0
        assert nodes["actor_node"]["await_weights"] is True  # no episode before the checkpoint's weights: all count
        assert nodes["sim_node"]["operator.mode"] == "off" and nodes["sim_node"]["seed"] == 1000
        assert nodes["sim_node"]["lockstep"] is True  # the run's own arguments, pace included
        assert nodes["learner_node"]["learner.updates_per_transition"] == 0.0  # serves weights, never trains
        assert nodes["learner_node"]["final_checkpoint"] is False  # nor writes GBs into its copy on the way out


def test_the_evaluation_graph_keeps_the_runs_own_node_parameters_under_its_own(tmp_path):
    from hilserl.evaluate import eval_graph
    from hilserl.graph import GraphError, load_graph, with_run_node_parameters

    run_params = {"learner_node": {"agent.discount": 0.99, "learner.updates_per_transition": 2.0},
                  "actor_node": {"agent.num_spatial_kernels": 4}}
    g = eval_graph("sim_single_arm", {"task": "pick_cube"}, tmp_path, 1000, True, run_params)
    nodes = {n.executable: n.parameter_dict() for n in g.nodes}
    assert nodes["learner_node"]["agent.discount"] == 0.99 and nodes["actor_node"]["agent.num_spatial_kernels"] == 4
    assert nodes["learner_node"]["learner.updates_per_transition"] == 0.0  # evaluation's own setting wins
    with pytest.raises(GraphError, match="runs no such executable.*learner_node"):
        with_run_node_parameters(load_graph("sim_single_arm"), {"learnr_node": {"agent.discount": 0.99}})


def test_compare_keeps_an_evaluation_only_of_the_runs_newest_checkpoint(tmp_path):
    from hilserl.compare import _evaluated

    run = tmp_path / "rlpd-seed0"
    assert not _evaluated(run, 20, 1000)  # nothing there
    (run / "checkpoints" / "ckpt_000000010_000000010_000000000").mkdir(parents=True)
    (run / "checkpoints" / "ckpt_000000010_000000010_000000000" / "learner.json").write_text("{}")
    ev = {"checkpoint": "ckpt_000000010_000000010_000000000", "seed": 1000, "deterministic": True, "policy": {"episodes": 20}}
    (run / "eval.json").write_text(json.dumps(ev))
    assert _evaluated(run, 20, 1000)
    assert not _evaluated(run, 50, 1000)  # other episode count
    assert not _evaluated(run, 20, 1100)  # other seeds
    (run / "checkpoints" / "ckpt_000000020_000000020_000000000").mkdir()  # trained on since
    (run / "checkpoints" / "ckpt_000000020_000000020_000000000" / "learner.json").write_text("{}")
    assert not _evaluated(run, 20, 1000)


def test_compare_runs_every_method_at_a_seed_before_the_next_and_goes_on_where_it_stopped(tmp_path, monkeypatch):
    """compare's own bookkeeping (training and evaluation replaced by writers of their files: each
    is tested on its own, and a real compare takes hours)."""
    import hilserl.evaluate
    import hilserl.train
    from hilserl.compare import run_compare

    order = []

    def train(setup, args, say, node_params):
        run = tmp_path / args["run"]
        order.append(("train", run.name))
        ckpt = run / "checkpoints" / "ckpt_000000010_000000010_000000000"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "learner.json").write_text("{}")
        (run / "summary.json").write_text(json.dumps({"env_steps": 10, "wall_clock_s": 6.0}))
        return 0

    def evaluate(run, args, say):
        order.append(("eval", Path(run).name))
        Path(run, "eval.json").write_text(json.dumps({
            "checkpoint": "ckpt_000000010_000000010_000000000", "seed": int(args["seed"]),
            "deterministic": True, "policy": {"episodes": int(args["episodes"]), "success_rate": 0.5, "cycle_time_s": 3.0}}))

    monkeypatch.setattr(hilserl.train, "run_train", train)
    monkeypatch.setattr(hilserl.evaluate, "run_eval", evaluate)
    monkeypatch.chdir(tmp_path)
    args = {"task": "pick_cube", "seeds": "2", "episodes": "4", "methods": "rlpd,bc", "run": "cmp"}
    assert run_compare("sim_single_arm", args, say=lambda _: None) == 0
    assert [name for what, name in order if what == "train"] == ["rlpd-seed0", "bc-seed0", "rlpd-seed1", "bc-seed1"]
    assert "| bc | 0.50 | 0.50, 0.50 |" in (tmp_path / "cmp" / "table.md").read_text()
    order.clear()
    assert run_compare("sim_single_arm", args, say=lambda _: None) == 0  # again: nothing evaluated twice
    assert [what for what, _ in order] == ["train"] * 4
    # the table holds every evaluated run in the directory, not only this invocation's methods and seeds
    (tmp_path / "cmp" / "rl-seed0").mkdir()  # started, never evaluated: not in the table
    assert run_compare("sim_single_arm", {**args, "seeds": "1", "methods": "rlpd"}, say=lambda _: None) == 0
    md = (tmp_path / "cmp" / "table.md").read_text()
    assert "| rlpd | 0.50 | 0.50, 0.50 |" in md and "| bc | 0.50 | 0.50, 0.50 |" in md and "| rl |" not in md
    assert md.index("| rlpd |") < md.index("| bc |") and "2 seed(s)" in md


def test_compare_first_seed_runs_only_the_later_seeds_and_refuses_empty_ranges(tmp_path, monkeypatch):
    import hilserl.evaluate
    import hilserl.train
    from hilserl.compare import run_compare
    from hilserl.graph import GraphError

    trained, evaluated = [], []

    def train(setup, args, say, node_params):
        trained.append((args["run"], args["seed"]))
        return hilserl.train.INTERRUPTED  # stop before the evaluation: only the order matters here

    monkeypatch.setattr(hilserl.train, "run_train", train)
    monkeypatch.setattr(hilserl.evaluate, "run_eval", lambda run, args, say: evaluated.append(run))
    monkeypatch.chdir(tmp_path)
    args = {"task": "pick_cube", "seeds": "2", "first_seed": "1", "methods": "hil-serl", "run": "cmp"}
    assert run_compare("sim_single_arm", args, say=lambda _: None) == hilserl.train.INTERRUPTED
    assert trained == [("cmp/hil-serl-seed1", "1")] and evaluated == []  # seed 0 is not started
    for bad in ({"seeds": "0"}, {"first_seed": "-1"}, {"episodes": "0"}):
        with pytest.raises(GraphError, match="at least"):
            run_compare("sim_single_arm", {**args, **bad}, say=lambda _: None)
    assert len(trained) == 1


def test_compare_stops_without_evaluating_a_run_whose_training_was_interrupted(tmp_path, monkeypatch):
    import hilserl.evaluate
    import hilserl.train
    from hilserl.compare import run_compare

    evaluated = []
    monkeypatch.setattr(hilserl.train, "run_train", lambda setup, args, say, node_params: hilserl.train.INTERRUPTED)
    monkeypatch.setattr(hilserl.evaluate, "run_eval", lambda run, args, say: evaluated.append(run))
    monkeypatch.chdir(tmp_path)
    said = []
    status = run_compare("sim_single_arm", {"task": "pick_cube", "seeds": "1", "methods": "rlpd", "run": "cmp"}, say=said.append)
    assert status == hilserl.train.INTERRUPTED and evaluated == [] and not (tmp_path / "cmp" / "table.md").exists()
    assert "interrupted" in said[-1]


def test_eval_tallies_failed_episodes_by_the_simulators_report_on_the_same_episode():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from hilserl.evaluate import furthest_stages, sim_reached

    def report(episode, last):
        return DiagnosticArray(status=[DiagnosticStatus(name="/sim: sim", message=f"task handover, episode {episode}",
                                                        values=[KeyValue(key="last_episode", value=str(episode - 1)),
                                                                KeyValue(key="last_episode_reached", value=last)])])

    reached = {}
    for episode, last in ((1, "-"), (2, "none"), (3, "bar lifted"), (4, "success"), (5, "bar lifted")):
        reached.update(sim_reached(report(episode, last)))
    assert reached == {1: "none", 2: "bar lifted", 3: "success", 4: "bar lifted"}
    assert furthest_stages([(2, False), (3, True), (4, False)], reached) == {"bar lifted": 2}
    # reports that do not match the actor's episodes give no tally rather than a wrong one
    assert furthest_stages([(2, True)], reached) is None  # the simulator saw no success there
    assert furthest_stages([(5, False)], reached) is None  # no report yet
