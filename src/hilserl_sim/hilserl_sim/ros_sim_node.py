"""Simulator node: the MuJoCo scene behind the real robot's topics.

Per arm namespace (``/left``, ``/right``) it publishes what franka_ros2 and the
camera drivers publish, with the same names and types:
``cameras/<cam>/image_raw`` (rgb8), ``current_pose`` (PoseStamped, arm base frame),
``current_twist``, ``external_wrench``, ``gripper/joint_states``; and accepts what
the controllers accept: ``target_pose``, ``target_wrench``, ``gripper/command``
(Float64, 0 open .. 1 closed). Inside, the same control law as the real
controllers runs at the physics rate (``hilserl_core.robot.control``). Bad commands
(NaN/Inf, out of range, stale) make the arm hold its pose; the reason shows in
diagnostics. A command watchdog holds the arm too: in pose mode a ``target_pose`` older than
``pose_timeout_s`` makes it hold the measured pose, in wrench mode the feed-forward wrench is
zeroed after ``wrench_timeout_s`` (``hilserl_sim.robot``). Single-publisher guard, as the hilserl
controllers have it (``control.SinglePublisherGuard``): while more than one node publishes on an
arm's ``target_pose``, ``target_wrench`` or ``gripper/command`` (the intervention mux must be the
only one), the arm holds the pose measured when that was seen, every command on that topic is
dropped, and the arm's diagnostic is ERROR naming the publishers; when the topic is back to one
publisher the status recovers and the next command is followed. ``/sim/reset`` (std_srvs/Trigger) starts a new randomized episode;
``/sim/success`` (std_msgs/Bool, with every camera frame) is the ground truth, for evaluation
and labelling. At each reset the node logs how far the ended episode got (the task's furthest
stage: for handover giver grasped, bar lifted, receiver grasped, success), also in
its ``sim`` diagnostic as ``last_episode`` and ``last_episode_reached``. With ``reward_source: sim`` the same truth stands in for the reward classifier
on ``/reward/success`` as the classifier publishes it (sensor_msgs/Joy stamped with the camera
frames it judges, ``hilserl_interfaces.topics.reward_success_msg``).

With ``operator.mode`` = ``assist`` or ``demo``, the ``scripted_operator`` node
(``hilserl_sim.operator`` behind ROS) is composed into this process: like a person
it sees the true scene, which no topic carries. It publishes ``spacenav/twist`` and
``spacenav/joy`` per arm like a person with a SpaceMouse: twist in base axes, button 0
closes and button 1 opens the gripper. In ``assist`` it watches ``policy/action`` and
takes over when the policy strays.

Recording without an actor (``hilserl record``, ``record_demos.launch.py``), nobody else
ends episodes: with ``operator.drives_episodes`` the operator does what a person recording
demonstrations does. It marks each attempt on ``/episode/success`` (the task succeeded) or
``/episode/failure`` (no success after ``operator.episode_limit_s`` of sim time), keeps
acting for ``operator.hold_after_mark_s`` so the recording shows the scene after the mark,
then resets the scene and publishes ``/episode/reset`` (std_msgs/Empty each;
``hilserl_core.robot.episode_marks``). A ``/episode/reset`` from someone else (the
recorder at its start, a person at the keyboard) resets the scene and starts a new
attempt; one that comes within 0.5 s of a reset is taken as the echo of it and ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Bool, Empty, Float64
from std_srvs.srv import Trigger

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import ConfigError, param
from hilserl_core.robot import episode_marks, frames
from hilserl_core.robot.control import SinglePublisherGuard
from hilserl_interfaces import actions, diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

from .env import ArmAction, TaskEnv
from .operator import OperatorConfig, ScriptedOperator
from .pacing import Pacer
from .robot import GRIPPER_MAX_WIDTH_M
from .tasks import TASKS, TaskError, task_names


@dataclass(frozen=True)
class OperatorNodeConfig:
    mode: str = param("off", "scripted SpaceMouse operator: off, assist (corrects a straying policy) or demo (full control)", choices=("off", "assist", "demo"))
    settings: OperatorConfig = field(default_factory=OperatorConfig)
    drives_episodes: bool = param(False, "recording without an actor: mark each attempt on /episode/success or /episode/failure, "
                                  "then reset the scene and publish /episode/reset, as a person recording demonstrations does")
    episode_limit_s: float = param(10.0, "drives_episodes: an attempt without success after this long (sim time) is marked a failure",
                                   units="s", low=1.0, high=600.0)
    hold_after_mark_s: float = param(1.5, "drives_episodes: how long the operator keeps acting after a mark before the reset",
                                     units="s", low=0.0, high=60.0)


@dataclass(frozen=True)
class SimNodeConfig:
    task: str = param("pick_cube", "task to simulate (pick_cube, peg_insertion, handover, pan_flip)")
    seed: int = param(0, "seed of the randomized resets", low=0)
    arms: Tuple[str, ...] = param(("left", "right"), "arm namespaces; a single-arm task uses the first")
    image_size: int = param(128, "side of the square raw camera images", units="px", low=32, high=1024)
    camera_rate_hz: float = param(10.0, "camera frame rate", units="Hz", low=1.0, high=60.0)
    state_rate_hz: float = param(100.0, "robot state rate; physics advances in steps of this period", units="Hz", low=10.0, high=1000.0)
    real_time_factor: float = param(1.0, "simulated seconds per wall-clock second at most (below 1: slower than real time)",
                                    low=0.05, high=1.0)
    lockstep: bool = param(False, "after each camera frame, wait until every arm's mux has executed an action for that frame "
                           "(mux/executed): a machine too slow for the control rate slows the simulation instead of the "
                           "policy seeing frames at a rate it will not see on the robot (hilserl_sim.pacing)")
    lockstep_timeout_s: float = param(60.0, "lockstep: with no action for a frame after this long (wall clock), simulated time "
                                      "follows the wall clock until an action answers a frame again (an actor that waits for "
                                      "the learner holds its action meanwhile)", units="s", low=0.1, high=600.0)
    reward_source: str = param("classifier", "who publishes /reward/success: classifier (the reward node) or sim (this node's ground truth stands in until a classifier is trained)", choices=("classifier", "sim"))
    operator: OperatorNodeConfig = field(default_factory=OperatorNodeConfig)


def gripper_closure_to_width(closure: float) -> float:
    """``gripper/command`` (0 open .. 1 closed) -> finger opening in metres."""
    return (1.0 - min(max(float(closure), 0.0), 1.0)) * GRIPPER_MAX_WIDTH_M


class SimNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("sim", **node_kwargs)
        self.conf = NodeConfig(self, SimNodeConfig)
        c = self.conf.value
        if c.task not in task_names():
            raise ConfigError(f"task '{c.task}' is not a simulated task; choose one of {', '.join(task_names())}")
        n_arms = TASKS[c.task].n_arms
        if len(c.arms) < n_arms:
            raise ConfigError(f"task '{c.task}' needs {n_arms} arm namespaces, parameter arms has {list(c.arms)}")
        try:
            self.env = TaskEnv(c.task, seed=c.seed, image_size=(c.image_size, c.image_size), arm_names=list(c.arms[:n_arms]))
        except TaskError as exc:
            raise ConfigError(str(exc)) from exc
        self.sim = self.env.sim
        self.diag = diagnostics.Diagnostics(self)
        self.arms = list(self.env.arm_names)
        self.cameras = list(self.env.cameras)  # "<arm>/<cam>"
        self.episode = 0
        self._reached, self._last_reached = 0, "-"  # this episode's furthest task stage (index + 1), the last one's name
        self._rng = np.random.default_rng(c.seed)
        self.env.reset(int(self._rng.integers(2**31)))
        self._pubs: Dict[str, Dict[str, object]] = {}
        # One guard per arm and command topic (single publisher), checked at 10 Hz and on every command.
        self._guarded = (topics.TARGET_POSE, topics.TARGET_WRENCH, topics.GRIPPER_COMMAND)
        self.command_guards: Dict[str, Dict[str, SinglePublisherGuard]] = {
            arm: {t: SinglePublisherGuard() for t in self._guarded} for arm in self.arms}
        self._conflicts: Dict[str, Dict[str, str]] = {arm: {} for arm in self.arms}  # arm -> topic -> who publishes
        for arm in self.arms:
            ns = f"/{arm}/"
            self._pubs[arm] = {
                "pose": self.create_publisher(PoseStamped, ns + topics.CURRENT_POSE, qos.SENSOR),
                "twist": self.create_publisher(TwistStamped, ns + topics.CURRENT_TWIST, qos.SENSOR),
                "wrench": self.create_publisher(WrenchStamped, ns + topics.EXTERNAL_WRENCH, qos.SENSOR),
                "gripper": self.create_publisher(JointState, ns + topics.GRIPPER_JOINT_STATES, qos.SENSOR),
            }
            self.create_subscription(PoseStamped, ns + topics.TARGET_POSE, lambda m, a=arm: self._on_target_pose(a, m), qos.COMMAND)
            self.create_subscription(WrenchStamped, ns + topics.TARGET_WRENCH, lambda m, a=arm: self._on_target_wrench(a, m), qos.COMMAND)
            self.create_subscription(Float64, ns + topics.GRIPPER_COMMAND, lambda m, a=arm: self._on_gripper(a, m), qos.COMMAND)
        self._image_pubs = {
            key: self.create_publisher(Image, f"/{key.split('/')[0]}/{topics.camera_raw(key.split('/')[1])}", qos.SENSOR)
            for key in self.cameras
        }
        self._success_pub = self.create_publisher(Bool, "/sim/success", qos.EVENTS)
        self._reward_pub = self.create_publisher(Joy, topics.REWARD_SUCCESS, qos.EVENTS) if c.reward_source == "sim" else None
        self.create_service(Trigger, "/sim/reset", self._on_reset)
        self.operator_node = None
        self.companion_nodes = []  # run_node spins these in this process's executor
        if c.operator.mode != "off":
            # Only its own name: the process's --ros-args (`-r __node:=sim` from ros2 run / launch) would
            # otherwise rename it to /sim too. Its settings are the sim node's operator.* parameters.
            self.operator_node = ScriptedOperatorNode(self, c.operator, context=node_kwargs.get("context"),
                                                      namespace=self.get_namespace(), use_global_arguments=False)
            self.companion_nodes.append(self.operator_node)
        self._camera_period = 1.0 / c.camera_rate_hz
        # /sim/reset sets MuJoCo's clock (sim.time) back to 0, so the camera schedule and the
        # real-time factor run on the simulated time summed over all episodes.
        self._sim_elapsed_s = 0.0
        self._next_camera_s = 0.0
        self._wall_start = time.monotonic()
        self.pacer = Pacer(1.0 / c.state_rate_hz, c.real_time_factor, c.lockstep, c.lockstep_timeout_s)
        if c.lockstep:
            for arm in self.arms:
                self.create_subscription(Joy, f"/{arm}/mux/executed", lambda m, a=arm: self._on_executed(a, m), qos.EVENTS)
        self.create_timer(1.0 / (c.state_rate_hz * c.real_time_factor), self._tick)
        self.create_timer(0.1, self._check_publishers)

    # -- single-publisher guard ---------------------------------------------------------
    def _check_publishers(self) -> None:
        for arm in self.arms:
            for topic in self._guarded:
                self._guard_accepts(arm, topic, command=False)

    def _guard_accepts(self, arm: str, topic: str, command: bool = True) -> bool:
        """Observe the publishers of ``/<arm>/<topic>`` now; False (arm held, command dropped) while more than one."""
        name = f"/{arm}/{topic}"
        guard = self.command_guards[arm][topic]
        event = guard.observe(self.count_publishers(name))
        if event == SinglePublisherGuard.CONFLICT:
            who = ", ".join(sorted("/" + "/".join(x for x in (i.node_namespace.strip("/"), i.node_name) if x)
                                   for i in self.get_publishers_info_by_topic(name))) or "unnamed nodes"
            self._conflicts[arm][topic] = who
            text = (f"{guard.publishers} publishers on {name} ({who}): only the intervention mux may publish "
                    "there; holding the arm, dropping every command on it until one is left")
            self.sim.arms[arm].hold(f"single-publisher guard: {text}")
            self.get_logger().error(text)
            self._report()
        elif event == SinglePublisherGuard.CLEAR:
            self.get_logger().info(f"{name} has one publisher again ({guard.dropped} commands dropped in all): following it")
            self._conflicts[arm].pop(topic, None)
            self._report()
        return guard.accept() if command else not guard.conflict

    # -- commands ---------------------------------------------------------------------
    def _on_target_pose(self, arm: str, msg: PoseStamped) -> None:
        if not self._guard_accepts(arm, topics.TARGET_POSE):
            return
        pos, quat = msgconv.pose_to_arrays(msg.pose)
        self.sim.arms[arm].command_pose(pos, quat)  # stamped on arrival, in sim time

    def _on_target_wrench(self, arm: str, msg: WrenchStamped) -> None:
        if not self._guard_accepts(arm, topics.TARGET_WRENCH):
            return
        a = self.sim.arms[arm]
        if a.command_wrench(msgconv.vector6_from_wrench(msg.wrench)):
            a.holding = False  # as an accepted target_pose does: a hold (guard, bad command) ends with a valid command

    def _on_gripper(self, arm: str, msg: Float64) -> None:
        if not self._guard_accepts(arm, topics.GRIPPER_COMMAND):
            return
        a = self.sim.arms[arm]
        if not np.isfinite(msg.data):
            a.command_gripper(float("nan"))  # rejected and counted by the arm
            return
        a.command_gripper(gripper_closure_to_width(msg.data))

    def _on_executed(self, arm: str, msg: Joy) -> None:
        if self.pacer.executed(arm, msgconv.stamp_to_seconds(msg.header.stamp)):
            self._tick()  # the frame's action is in: simulate on at once (no latency)

    def _on_reset(self, request, response):
        self.reset_scene()
        response.success = True
        response.message = f"episode {self.episode} of {self.conf.value.task}"
        return response

    def _look(self) -> bool:
        """One look at the scene: keeps the episode's furthest stage and returns whether it
        succeeded (the task's last stage is success)."""
        stage = self.env.task.stage()
        self._reached = max(self._reached, stage)
        return stage == len(self.env.task.stage_names)

    def reset_scene(self) -> bool:
        """A new randomized episode (``/sim/reset``, or the operator driving a recording);
        returns whether the ended one succeeded."""
        task = self.env.task
        success = self._look()
        if self.episode > 0:  # (scene 0 is the one before the first reset)
            self._last_reached = task.stage_names[self._reached - 1] if self._reached else "none"
            self.get_logger().info(f"episode {self.episode} ended: {'success' if success else 'failure'}; furthest stage "
                                   f"{self._last_reached} ({self._reached} of {', '.join(task.stage_names)})")
        self._reached = 0
        self.episode += 1
        self.env.reset(int(self._rng.integers(2**31)))
        self._next_camera_s = self._sim_elapsed_s  # a frame (and success, operator step) of the new scene at the next tick
        self.pacer.scene_reset()
        if self.operator_node is not None:
            self.operator_node.episode_ended(success)
        self._report(publish_now=True)  # how far the ended episode got, for every episode (hilserl eval counts them)
        return success

    # -- the loop -------------------------------------------------------------------------
    def _tick(self) -> None:
        c, pacer = self.conf.value, self.pacer
        if pacer.check_timeout(time.monotonic()):
            self.get_logger().warning(f"lockstep: no action for the frame at sim time {self._sim_elapsed_s:.2f} s after "
                                      f"{c.lockstep_timeout_s:g} s; simulated time follows the wall clock until an action "
                                      "answers a frame again")
        steps = pacer.steps_due(time.monotonic(), self._sim_elapsed_s)
        for _ in range(steps):
            t0 = self.sim.time
            self.sim.step(duration_s=1.0 / c.state_rate_hz)
            self._sim_elapsed_s += self.sim.time - t0
            if self._sim_elapsed_s >= self._next_camera_s:
                break  # the frame comes before the next step (and, in lockstep, the action for it)
        if not steps:
            return
        stamp = self.get_clock().now().to_msg()
        for arm in self.arms:
            self._publish_state(arm, stamp)
        if self._sim_elapsed_s >= self._next_camera_s:
            self._next_camera_s = self._sim_elapsed_s + self._camera_period - 1e-9
            images = self.sim.render(self.cameras)
            for key, rgb in images.items():
                msg = Image()
                msg.header.stamp, msg.header.frame_id = stamp, key.replace("/", "_") + "_camera"
                msgconv.fill_image(msg, rgb, "rgb8")
                self._image_pubs[key].publish(msg)
            success = self._look()
            self._success_pub.publish(Bool(data=success))
            if self._reward_pub is not None:  # the verdict on these frames: their stamp
                self._reward_pub.publish(topics.reward_success_msg(success, float(success), stamp))
            if self.operator_node is not None:
                self.operator_node.step()  # at the camera rate, in sim time, like a person watching
            pacer.frame(time.monotonic(), self._sim_elapsed_s, msgconv.stamp_to_seconds(stamp), self.arms)
            self._report()

    def _publish_state(self, arm: str, stamp) -> None:
        st = self.sim.arm_state(arm)
        p, t, w = topics.arm_state_msgs(stamp, f"{arm}_base", st.position, st.quat, st.twist, st.wrench)
        j = JointState()
        j.header = p.header
        j.name = [f"{arm}_finger_joint1", f"{arm}_finger_joint2"]
        j.position = [float(x) for x in st.gripper_position]
        j.velocity = [float(x) for x in st.gripper_velocity]
        j.effort = [float(x) for x in st.gripper_effort]
        pubs = self._pubs[arm]
        pubs["pose"].publish(p)
        pubs["twist"].publish(t)
        pubs["wrench"].publish(w)
        pubs["gripper"].publish(j)

    def _report(self, publish_now: bool = False) -> None:
        c = self.conf.value
        wall = time.monotonic() - self._wall_start
        rtf = self._sim_elapsed_s / wall if wall > 0 else 0.0
        for arm in self.arms:
            d = self.sim.arms[arm].diagnostics()
            level = diagnostics.WARN if d["holding"] else diagnostics.OK
            if d["holding"]:
                message = d["last_reason"] or "holding"
            else:
                message = "tracking" + (f" (last hold or rejection: {d['last_reason']})" if d["last_reason"] else "")
            conflicts = self._conflicts[arm]
            if conflicts:
                level = diagnostics.ERROR
                message = "holding: more than one publisher on " + "; ".join(
                    f"/{arm}/{t} ({who})" for t, who in conflicts.items()) + ": only the intervention mux may publish there"
            dropped = sum(g.dropped for g in self.command_guards[arm].values())
            self.diag.report(f"arm {arm}", level, message, mode=d["mode"], dropped_by_guard=dropped,
                             **{k: v for k, v in d["reason_counts"].items()})
        slow = rtf < 0.8 * c.real_time_factor and not c.lockstep  # lockstep slows it on purpose
        self.diag.report("sim", diagnostics.WARN if slow else diagnostics.OK, f"task {self.conf.value.task}, episode {self.episode}",
                         publish_now=publish_now,
                         real_time_factor=f"{rtf:.2f}", sim_time_s=f"{self._sim_elapsed_s:.1f}",
                         episode_time_s=f"{self.sim.time:.1f}", lockstep=self.pacer.state, lockstep_waits=self.pacer.waits, lockstep_timeouts=self.pacer.timeouts,
                         last_episode=self.episode - 1, last_episode_reached=self._last_reached)

    def close(self) -> None:
        self.sim.close()


class ScriptedOperatorNode(Node):
    """``scripted_operator``: a person with a SpaceMouse per arm, for unattended HIL runs.

    Composed into the simulator's process (it reads the true scene from the shared
    simulator, as a person looks at the robot); it acts only through ``spacenav/twist``
    and ``spacenav/joy``, and watches ``policy/action`` to decide when to intervene.
    """

    def __init__(self, sim_node: SimNode, config: OperatorNodeConfig, **node_kwargs):
        super().__init__("scripted_operator", **node_kwargs)
        self.sim_node = sim_node
        self.env, self.sim, self.arms = sim_node.env, sim_node.sim, sim_node.arms
        self.mode = config.mode
        self.config = config
        self._marked_at_s = None  # sim time of this attempt's success/failure mark (drives_episodes)
        self.marks = {kind: 0 for kind in episode_marks.MARK_TOPICS.values()}
        if config.drives_episodes:
            self._mark_pubs = {kind: self.create_publisher(Empty, topic, qos.EVENTS)
                               for topic, kind in episode_marks.MARK_TOPICS.items()}
            self.create_subscription(Empty, episode_marks.RESET_TOPIC, self._on_reset_mark, qos.EVENTS)
        self.operator = ScriptedOperator(self.env, config.settings)
        self._policy: Dict[str, ArmAction] = {a: ArmAction() for a in self.arms}
        self._pubs = {}
        for arm in self.arms:
            ns = f"/{arm}/"
            self._pubs[arm] = (
                self.create_publisher(Twist, ns + topics.SPACENAV_TWIST, qos.COMMAND),
                self.create_publisher(Joy, ns + topics.SPACENAV_JOY, qos.COMMAND),
            )
            self.create_subscription(Joy, ns + topics.POLICY_ACTION, lambda m, a=arm: self._on_policy(a, m), qos.COMMAND)
        self.interventions = 0

    def _on_policy(self, arm: str, msg: Joy) -> None:
        try:
            a = actions.from_joy(msg)
        except ValueError:
            return
        self._policy[arm] = ArmAction(a.action, {0: 1.0, 2: -1.0}.get(a.gripper, 0.0))

    def episode_ended(self, success: bool) -> None:
        """The scene was reset: remember how the policy did (trust grows with success)."""
        self.operator.record_episode(success)
        self.operator.reset()
        self._marked_at_s = None

    # -- drives_episodes: the operator ends attempts and resets the scene
    def _mark(self, kind: str) -> None:
        self._mark_pubs[kind].publish(Empty())
        self.marks[kind] += 1

    def _on_reset_mark(self, _msg: Empty) -> None:
        if self.sim.time < 0.5:  # our own reset's echo, or a second request for the same one
            return
        self.sim_node.reset_scene()

    def _drive_episode(self) -> None:
        t, c = self.sim.time, self.config
        if self._marked_at_s is None:
            if self.env.task.success():
                self._marked_at_s = t
                self._mark(episode_marks.SUCCESS)
            elif t >= c.episode_limit_s:
                self._marked_at_s = t
                self._mark(episode_marks.FAILURE)
        elif t - self._marked_at_s >= c.hold_after_mark_s:
            self.sim_node.reset_scene()  # clears _marked_at_s
            self._mark(episode_marks.RESET)

    def step(self) -> None:
        # the operator looks at the scene (env.gripper_closed is what the gripper was told, read-only)
        # and acts only through the SpaceMouse topics, as a person would
        if self.config.drives_episodes:
            self._drive_episode()
        obs = {"state": {a: self.sim.arm_state(a) for a in self.arms}}
        if self.mode == "demo":
            out = self.operator.demonstrate(obs)
        else:
            _, _, out = self.operator.act(obs, self._policy)
        self.interventions += int(out.intervening)
        for arm in self.arms:
            twist_ee = out.twist[arm] if out.intervening else np.zeros(6)
            # A person pushes in the robot's base axes; the mux converts back to the EE action frame.
            R_base_ee = frames.quat_to_matrix(self.sim.arm_state(arm).quat)
            twist_base = frames.rotate_twist(R_base_ee, twist_ee)
            toggle = out.intervening and out.buttons[arm][0]
            closed = self.env.gripper_closed[arm]
            buttons = [int(toggle and not closed), int(toggle and closed)]  # 0 close, 1 open
            twist_pub, joy_pub = self._pubs[arm]
            twist_pub.publish(msgconv.fill_twist(Twist(), twist_base))
            joy = Joy()
            joy.header.stamp = self.get_clock().now().to_msg()
            joy.axes = [float(x) for x in twist_base]
            joy.buttons = buttons
            joy_pub.publish(joy)


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = SimNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
