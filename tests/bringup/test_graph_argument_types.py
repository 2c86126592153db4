"""Every documented value of every graph argument resolves, and every hilserl node of the
resolved graph gets parameters of the types its configuration declares (a YAML 1.1 word such
as `off` once reached the simulator as the boolean false)."""

import pytest
import yaml

from hilserl.graph import _param_literal, available_graphs, load_graph
from hilserl.recording import _node_parameters
from hilserl_core.formats import config as cfg
from hilserl_core.rl.build import LearnerNodeConfig
from hilserl_core.robot.actor import ActorConfig
from hilserl_core.robot.spacemouse import SpaceMouseConfig
from hilserl_perception.crop_node import CropConfig
from hilserl_reward.reward_node import RewardConfig
from hilserl_sim.ros_sim_node import SimNodeConfig
from hilserl_teleop.metrics_rates_node import MetricsRatesConfig
from hilserl_teleop.mux_node import MuxNodeConfig

CONFIGS = {
    ("hilserl_sim", "sim_node"): SimNodeConfig,
    ("hilserl_perception", "crop_node"): CropConfig,
    ("hilserl_teleop", "mux_node"): MuxNodeConfig,
    ("hilserl_teleop", "spacemouse_node"): SpaceMouseConfig,
    ("hilserl_reward", "reward_node"): RewardConfig,
    ("hilserl_policy", "actor_node"): ActorConfig,
    ("hilserl_learner", "learner_node"): LearnerNodeConfig,
    ("hilserl_teleop", "workspace_marker_node"): MuxNodeConfig,  # the mux's parameters: it draws the mux's box
    ("hilserl_teleop", "metrics_rates_node"): MetricsRatesConfig,
    ("hilserl_robot", "franka_state_node"): "hilserl_core.robot.franka_state:FrankaStateConfig",
    ("hilserl_robot", "gripper_bridge_node"): "hilserl_core.robot.gripper_bridge:GripperBridgeConfig",
    ("hilserl_robot", "reset_node"): "hilserl_core.robot.reset_planner:ResetConfig",
    ("hilserl", "rviz_viewer"): None,  # viewers: start rviz2 / rqt, no parameter schema (hilserl.viewers)
    ("hilserl", "rqt_viewer"): None,
}


def _config_class(key):
    conf = CONFIGS.get(key)
    if isinstance(conf, str):  # "module:Class", imported when a graph runs it
        import importlib

        module, _, name = conf.partition(":")
        conf = getattr(importlib.import_module(module), name)
    return conf


def variants():
    for setup in available_graphs():
        g = load_graph(setup)
        yield setup, {}
        for arg, allowed in g.choices:
            for value in allowed:
                yield setup, {arg: str(value)}


@pytest.mark.parametrize("setup,override", list(variants()), ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}:={x}" for k, x in v.items()) or "defaults")
def test_every_choice_resolves_with_parameters_of_the_declared_types(setup, override):
    g = load_graph(setup, override)
    checked = 0
    for node in g.nodes:
        conf = _config_class((node.package, node.executable))
        if conf is None:
            assert not node.package.startswith("hilserl") or (node.package, node.executable) in CONFIGS, \
                f"{node.package}/{node.executable}: no configuration class known to this test"
            continue
        known = {s.name for s in cfg.describe(conf)}
        params = {k: v for k, v in _node_parameters(node).items() if k in known}
        cfg.from_mapping(conf, cfg.nest(params), source=f"{setup} {override} {node.fqn}")  # raises on a wrong type
        for k, v in node.parameters:  # what `-p name:=value` gives the node (ROS reads it as YAML 1.2)
            back = yaml.safe_load(_param_literal(v))
            assert type(back) is type(v) and back == v, f"{node.fqn}: -p {k}:={_param_literal(v)} reads back as {back!r}"
        checked += 1
    assert checked > 0
    for arg, value in override.items():
        assert str(dict(g.arguments)[arg]) == value


def test_operator_off_reaches_the_simulator_as_the_word():
    sim = next(n for n in load_graph("sim_single_arm", {"operator": "off"}).nodes if n.executable == "sim_node")
    assert dict(sim.parameters)["operator.mode"] == "off"


@pytest.mark.parametrize("setup,task,steps", [("sim_single_arm", "pick_cube", 100), ("sim_single_arm", "peg_insertion", 120),
                                              ("sim_single_arm", "pan_flip", 200), ("sim_dual_arm", "handover", 250)])
def test_episode_steps_auto_is_the_simulated_tasks_own_time_limit(setup, task, steps):
    from hilserl_sim.tasks import TASKS

    actor = next(n for n in load_graph(setup, {"task": task}).nodes if n.executable == "actor_node")
    assert actor.parameter_dict()["max_episode_steps"] == steps == round(TASKS[task].Config().time_limit_s * 10)
    actor = next(n for n in load_graph(setup, {"task": task, "episode_steps": "60"}).nodes if n.executable == "actor_node")
    assert actor.parameter_dict()["max_episode_steps"] == 60


@pytest.mark.parametrize("setup,task,grasp", [("sim_single_arm", "pick_cube", True), ("sim_single_arm", "peg_insertion", False),
                                              ("sim_single_arm", "pan_flip", False), ("sim_dual_arm", "handover", True)])
def test_grasp_critic_auto_is_off_where_the_task_holds_its_object_from_the_start(setup, task, grasp):
    graph = load_graph(setup, {"task": task})
    for exe in ("actor_node", "learner_node"):  # both sides agree
        assert next(n for n in graph.nodes if n.executable == exe).parameter_dict()["use_grasp_critic"] is grasp
    graph = load_graph(setup, {"task": task, "grasp_critic": "true"})
    assert next(n for n in graph.nodes if n.executable == "actor_node").parameter_dict()["use_grasp_critic"] is True
