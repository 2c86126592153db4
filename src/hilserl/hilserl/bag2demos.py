"""``hilserl bag2demos BAG... -o FILE``: recorded episodes -> demo transitions for the learner.

The recorded messages are fed, in the order they were received, to the actor's own tick
(``hilserl_core.robot.actor_loop.ActorLoop``), converted with the actor's own functions
(``ARM_INPUTS``, ``msgconv.image_to_rgb``, ``actions.from_joy``): the same egocentric frames,
the same ticks (when every camera has a new frame, at most ``control_rate_hz``), the same
latest-sample staleness rule, the same dropped steps. Times are what the actor would see: a
message's header stamp for its sample time, its log time (when it was received) for "now".

What differs from the live actor is only what a recording lacks:

- **episodes** come from the operator's marks (``hilserl_core.robot.episode_marks``): an
  episode starts at the recording's start or a ``/episode/reset``; ``/episode/success`` ends it
  at the next observation as a success (terminal, reward 1), ``/episode/failure`` as a cut
  (truncated); one that reaches the next reset or the end unmarked ends truncated at its last
  step. ``reward:=sim`` takes success from the simulator's ``/sim/success`` instead, and
  ``reward:=classifier`` from ``/reward/success`` (the reward node's verdicts, or the sim's
  ground truth standing in for it, each stamped with the frame it judged): paired with the
  observation holding that frame, as the actor pairs them, and ending the episode at a
  success as the actor does (an episode mark then only starts or cuts episodes). With marks
  or ``/sim/success`` (unstamped), the success in force when an observation's frames are
  complete is that observation's verdict.
- **actions**: with no actor, the mux acts for the operator and stamps its report with its own
  time; a report pairs with the newest observation at or before it (within 1.5 control
  periods). A report carrying an observation's exact stamp (a bag recorded during training)
  pairs exactly: with that observation, also when it was logged before the converter's tick
  on those frames (with ``reward:=classifier`` the tick waits for the frame's verdict, which can
  be logged after the mux's answer to the live actor), never with the step before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Set

from hilserl_core.formats import bags, msgconv
from hilserl_core.formats.types import Transition, camera_key
from hilserl_core.robot.actor import ActorConfig
from hilserl_core.robot.actor_loop import ARM_INPUTS, ActorLoop, stamp_s, success_from_msg
from hilserl_core.robot.episode_cycle import EpisodePhase
from hilserl_core.robot.episode_marks import FAILURE_TOPIC, RESET_TOPIC, SUCCESS_TOPIC
from hilserl_core.robot.intervention import Source
from hilserl_interfaces import actions

__all__ = ["ConvertedBag", "convert_bag", "REWARD_SOURCES"]

REWARD_SOURCES = ("marks", "sim", "classifier")


@dataclass
class ConvertedBag:
    path: str
    transitions: List[Transition] = field(default_factory=list)
    episodes: int = 0
    successes: int = 0
    dropped_steps: int = 0
    unpaired_reports: int = 0  # mux reports that matched no observation (before the first one, or late)


def convert_bag(reader: bags.BagReader, actor: ActorConfig, reward: str = "marks", episode_offset: int = 0) -> ConvertedBag:
    """Demo transitions of one bag, assembled by the actor's tick (see the module doc)."""
    if reward not in REWARD_SOURCES:
        raise ValueError(f"reward:={reward}: expected one of {', '.join(REWARD_SOURCES)}")
    arms, cameras = list(actor.arms), list(actor.cameras)
    cam_keys = [camera_key(e) for e in cameras]
    arm_topics = {f"/{a}/{topic}": (a, name) for a in arms for name, (topic, _) in ARM_INPUTS.items()}
    image_topics = {bags.cropped_image_topic(*e.split("/", 1)): k for e, k in zip(cameras, cam_keys)}
    executed_topics = {f"/{a}/mux/executed": a for a in arms}
    needed = [*arm_topics, *image_topics, *executed_topics]
    success_topic = {"marks": SUCCESS_TOPIC, "sim": bags.SIM_SUCCESS_TOPIC, "classifier": bags.REWARD_SUCCESS_TOPIC}[reward]
    needed.append(success_topic)
    reader.require(needed, "for demo transitions")
    if reward == "classifier" and reader.topics[success_topic] != "sensor_msgs/msg/Joy":
        raise bags.BagError(f"{reader.path}: {success_topic} is {reader.topics[success_topic]}, not the stamped "
                            "sensor_msgs/msg/Joy (recorded before verdicts carried their frame's stamp); use reward:=marks or sim")
    period = 1.0 / actor.control_rate_hz
    loop = ActorLoop(arms, cam_keys, control_rate_hz=actor.control_rate_hz, max_episode_steps=actor.max_episode_steps,
                     max_input_age_s=actor.max_input_age_s, grasp_penalty=actor.grasp_penalty,
                     use_grasp_critic=actor.use_grasp_critic, reset_timeout_s=actor.reset_timeout_s)
    loop.recorder.episode_id = episode_offset
    out = ConvertedBag(str(reader.path))
    episode: List[Transition] = []
    success = False  # the reward signal the actor would read now
    paired: Set[str] = set()  # arms whose report for the pending observation came in
    early: Dict[str, actions.ActionMsg] = {}  # reports with the exact stamp of frames not ticked yet

    def finish(truncate_open: bool) -> None:
        """End the running episode; with ``truncate_open`` its last transition becomes a cut."""
        nonlocal episode
        if truncate_open and episode and not (episode[-1].terminated or episode[-1].truncated):
            episode[-1].truncated = True
        if episode:
            out.episodes += 1
            out.successes += int(episode[-1].terminated)
            out.transitions.extend(episode)
        episode = []

    def new_scene(now: float) -> None:
        nonlocal success
        if loop.cycle.phase is EpisodePhase.RUNNING:  # reset without an outcome mark: cut at the last step
            if not episode:  # nothing recorded (e.g. frames before the recording's first reset): no episode
                loop.recorder.episode_id -= 1
            finish(truncate_open=True)
            loop.join.clear()
            loop.cycle.episode_ended()
        loop.cycle.reset_requested(now)
        loop.cycle.scene_ready(now)
        success = False
        out.unpaired_reports += len(early)
        early.clear()

    def pair(arm: str, a: actions.ActionMsg) -> None:
        paired.add(arm)
        loop.on_executed(arm, loop.join.pending_stamp, a.action, a.gripper, Source(a.source))

    def step(now: float) -> None:
        """One tick of the actor, as when its frames came in (or a verdict it waited for)."""
        nonlocal success, paired
        tick = loop.tick(now)
        if tick.transition is not None:
            episode.append(tick.transition)
        if tick.summary is not None:
            finish(truncate_open=False)
            success = False
            out.unpaired_reports += len(early)
            early.clear()
        elif tick.observation is not None:
            loop.acted(tick.stamp_s)  # as if the actions went out: the mux reports pair with it
            paired = set()
            for arm, a in list(early.items()):  # reports that came before this tick, for these frames
                if abs(a.stamp_s - tick.stamp_s) <= 1e-6:
                    pair(arm, a)
                else:
                    out.unpaired_reports += 1
            early.clear()

    topics = [*needed, RESET_TOPIC, FAILURE_TOPIC, SUCCESS_TOPIC]
    first = True
    for m in reader.messages([t for t in dict.fromkeys(topics) if t in reader.topics]):
        now = m.time_s
        if first:
            new_scene(now)  # the recording starts with a scene ready for an episode
            first = False
        if m.topic in arm_topics:
            arm, name = arm_topics[m.topic]
            loop.put(f"{arm}/{name}", ARM_INPUTS[name][1](m.msg), stamp_s(m.msg.header.stamp, now))
        elif m.topic in executed_topics:
            arm, a = executed_topics[m.topic], actions.from_joy(m.msg)
            pending = loop.join.pending_stamp
            frames_at = loop.frames_stamp()
            if (frames_at is not None and abs(a.stamp_s - frames_at) <= 1e-6 and (pending is None or frames_at > pending + 1e-6)
                    and loop.cycle.phase in (EpisodePhase.WAITING, EpisodePhase.RUNNING)):
                early[arm] = a  # the exact stamp of the newest frames, whose tick is still to come: pair it there
                continue
            if pending is None or arm in paired or not (pending - 1e-6 <= a.stamp_s < pending + 1.5 * period):
                out.unpaired_reports += 1
                continue
            pair(arm, a)
        elif m.topic == RESET_TOPIC:
            new_scene(now)
        elif m.topic == FAILURE_TOPIC:
            loop.cycle.operator_signal()  # the next observation closes the episode as a cut
        elif m.topic == SUCCESS_TOPIC and reward == "marks":
            success = True
        elif m.topic == bags.SIM_SUCCESS_TOPIC and reward == "sim":
            success = bool(m.msg.data)
        elif m.topic == bags.REWARD_SUCCESS_TOPIC and reward == "classifier":
            try:
                verdict, _probability = success_from_msg(m.msg)
            except ValueError as exc:
                raise bags.BagError(f"{reader.path}: malformed {m.topic} at {now:.3f} s ({exc})") from None
            loop.put_success(verdict, stamp_s(m.msg.header.stamp, now))
            if loop.awaiting_reward:  # the actor's tick waits for this verdict
                step(now)
        elif m.topic in image_topics:
            loop.put("image/" + image_topics[m.topic], msgconv.image_to_rgb(m.msg), stamp_s(m.msg.header.stamp, now))
            if not loop.new_frames():
                continue
            if reward != "classifier":  # the success in force now is the verdict on these frames
                loop.put_success(success, loop.frames_stamp())
            step(now)
    if loop.cycle.phase is EpisodePhase.RUNNING:
        finish(truncate_open=True)
    out.dropped_steps = loop.recorder.dropped_steps
    return out


def actor_config_for(setup: str, arguments: Optional[Mapping[str, str]] = None) -> ActorConfig:
    """The actor's parameters in ``setup`` with these graph ``arguments`` (its params files and
    inline parameters), as the converter must assemble observations the way that actor does."""
    from hilserl_core.formats import config as cfg

    from .graph import GraphError, load_graph
    from .recording import _node_parameters

    known_args = dict(load_graph(setup).arguments)
    graph = load_graph(setup, {k: v for k, v in (arguments or {}).items() if k in known_args and k != "learning"})  # the actor is in it
    spec = next((n for n in graph.nodes if n.executable == "actor_node"), None)
    if spec is None:
        raise GraphError(f"setup {setup} has no actor node to take the observation settings from")
    known = {p.name for p in cfg.describe(ActorConfig)}
    params = {k: v for k, v in _node_parameters(spec).items() if k in known}
    return cfg.from_mapping(ActorConfig, cfg.nest(params), source=f"{setup}: actor parameters")


_OPTIONS = ("setup", "reward")


def _cmd_bag2demos(args) -> int:
    from hilserl_core.formats.demos import save_demos

    from .data_cli import DataError, _inputs_and_output, _say, _setup_of

    paths, opts, out = _inputs_and_output(args.bags, args.output, _OPTIONS, "bag2demos", "bag")
    setup = _setup_of(paths, opts.get("setup"))
    actor = actor_config_for(setup)
    reward = opts.get("reward", "marks")
    if reward not in REWARD_SOURCES:
        raise DataError(f"reward:={reward}: expected one of {', '.join(REWARD_SOURCES)}")
    results = []
    for path in paths:
        with bags.BagReader(Path(path)) as reader:
            reader.check_setup(setup, actor.arms, sorted({e.split("/", 1)[1] for e in actor.cameras}))
            r = convert_bag(reader, actor, reward, episode_offset=sum(x.episodes for x in results))
        _say(f"{path}: {r.episodes} episodes, {len(r.transitions)} steps, {r.successes} successes, "
             f"{r.dropped_steps} steps dropped (no executed action, a hold, or stale inputs)")
        results.append(r)
    transitions = [t for r in results for t in r.transitions]
    if not transitions:
        raise DataError(f"{', '.join(paths)}: no demo transitions (no episode with fresh inputs and executed actions)")
    meta = {"setup": setup, "arms": list(actor.arms), "cameras": list(actor.cameras), "reward": reward,
            "bags": [str(Path(p).resolve()) for p in paths], "control_rate_hz": actor.control_rate_hz}
    save_demos(out, transitions, meta)
    episodes, successes = sum(r.episodes for r in results), sum(r.successes for r in results)
    _say(f"wrote {out}: {episodes} episodes, {len(transitions)} steps, {successes} successes, "
         f"{sum(t.intervened for t in transitions)} intervened")
    return 0


def register(sub) -> None:
    from .data_cli import _guarded

    p = sub.add_parser("bag2demos", help="demo transitions for the learner's demo buffer from bags",
                       description="Turn recorded bags into demo transitions (learner.demo_paths), assembled as the "
                                   "actor assembles its observations.")
    p.add_argument("bags", nargs="*", metavar="BAG|name:=value",
                   help="bags, and options: setup:=NAME (default: the bag's), reward:=marks|sim|classifier")
    p.add_argument("-o", "--output", required=True, nargs="+", metavar="FILE",
                   help="demo file to write (must not exist); bags and options may follow it")
    p.set_defaults(func=_guarded(_cmd_bag2demos))
