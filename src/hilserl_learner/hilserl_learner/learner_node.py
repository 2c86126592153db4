"""Learner node: transitions in, policy weights out.

Receives transitions on ``/learner/transitions`` (safetensors payloads, hilserl_core.formats.wire)
and hands them to the training thread (``hilserl_core.rl.learner_thread``): demo and RL buffers
(interventions into both), RLPD updates on 50/50 demo/online batches at the update-to-data ratio,
weights on ``/learner/policy_weights`` (reliable, transient-local: a restarted actor gets the newest
at once), atomic checkpoints of agents + buffers, and a final one on a clean shutdown when anything
changed. On start it resumes from the newest checkpoint in ``checkpoint_dir`` that loads
(``Learner.resume``): damaged ones are skipped with a WARN naming the file that did not load and
why; when checkpoints exist but none loads, the node refuses to start (a one-line configuration
error naming each one, exit 2) unless ``start_fresh`` is true (training starts from zero, the old
files stay on disk, a WARN names them); features of other encoder weights stop the node with a
configuration error (exit 2). Weight versions never repeat: the highest one is recorded in
``checkpoint_dir/weights_version.json`` before each publish, and a restarted learner goes on above
it, whichever checkpoint it resumed from (without a ``checkpoint_dir`` versions restart at 1).
A transition that does not fit the buffers is rejected with an ERROR naming the actor, the key and
the shape; a training thread that dies stops the node with exit status 3 and no final checkpoint.

``device`` (auto: the first CUDA GPU when torch sees one, else the CPU) holds the agents, the frozen
encoder and each sampled batch; the buffers stay in host memory. ``learner.storage: images`` keeps
uint8 images and encodes each batch on the device after a random shift (a GPU learner's setting);
``features`` (the default) encodes each transition once as it arrives.

Every ``learner.analysis_period_updates`` updates the learner takes the paper's training analysis
(Q variance around the policy's action, Eq. 1; the policy's mean and std): its figures go out with
the ``learner`` diagnostics (``rlpd/q_action_variance``, ``rlpd/policy_mean_abs``, ``rlpd/policy_std``,
``analysis_updates``) and on the progress line.

Live parameters: ``learner.updates_per_transition`` (UTD), ``learner.max_updates_per_s``,
``learner.weights_period_s``, ``log_period_s`` (a progress line on the console).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import traceback

import torch
from rclpy.node import Node
from std_msgs.msg import String, UInt8MultiArray

from hilserl_core.accel.allocator import configure_cpu_allocator, release_free_memory, resident_mb
from hilserl_core.formats import tensorio, wire
from hilserl_core.formats.config import ConfigError
from hilserl_core.rl.build import LearnerNodeConfig, build_learner
from hilserl_core.rl.delivery import LearnerInbox, TransitionLogError
from hilserl_core.rl.learner import progress_line
from hilserl_core.rl.learner_thread import LearnerThread
from hilserl_interfaces import diagnostics, payload, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

EXIT_TRAINING_FAILED = 3  # process exit status when the training thread died


class LearnerNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("learner", **node_kwargs)
        self.conf = NodeConfig(self, LearnerNodeConfig, on_change=self._on_change)
        c = self.conf.value
        torch.set_num_threads(c.torch_threads)
        # as benchmarks/learner_throughput.py measures it: large freed blocks stay in the heap
        if not configure_cpu_allocator():
            self.get_logger().info("glibc allocator not tuned (no glibc here)")
        self.diag = diagnostics.Diagnostics(self)
        self.learner = build_learner(c)  # on its device (parameter device; a CUDA one it lacks: configuration error)
        self._log_device(c)
        resumed = self._resume(c.checkpoint_dir, c.start_fresh) if c.checkpoint_dir else None
        demo_paths = [p for p in c.demo_paths if p]  # a graph passes [""] for "no demos"
        if demo_paths and resumed is None:
            for path, summary in self.learner.preload_demos(demo_paths):  # a bad file: configuration error
                self.get_logger().info(f"demos from {path}: {summary['episodes']} episodes, {summary['steps']} steps, "
                                       f"{summary['successes']} successes")
        elif demo_paths:
            self.get_logger().info(f"demo buffer restored from {resumed} ({len(self.learner.buffers['demo'])} transitions); "
                                   "demo_paths not read again")
        self.inbox = self._open_inbox(c.checkpoint_dir, resumed)
        if resumed is not None or self.inbox.restored_from_log:
            before = resident_mb()
            if release_free_memory():  # what loading and replaying needed once, not to be kept
                self.get_logger().info(f"start-up memory released: resident {before:.0f} -> {resident_mb():.0f} MB")
        self.session = secrets.token_hex(6)  # names this process in acknowledgements
        self._reported_rejections = 0
        self._weights_pub = self.create_publisher(UInt8MultiArray, topics.POLICY_WEIGHTS, qos.LATCHED)
        self._arrived = 0  # transition messages that reached this node, before any check (what DDS delivered)
        self._transitions_sub = self.create_subscription(UInt8MultiArray, topics.TRANSITIONS, self._on_transition,
                                                         qos.TRANSITIONS)
        self._acks_pub = self.create_publisher(String, topics.TRANSITION_ACKS, qos.ACKS)
        self.create_timer(0.2, self._acknowledge)
        self.weights_bytes = 0
        self.trainer = LearnerThread(self.learner, checkpoint_dir=c.checkpoint_dir, publish_weights=self.publish_weights,
                                     logger=self.get_logger(), on_reject=self._log_rejection, inbox=self.inbox,
                                     after_checkpoint=release_free_memory)
        self.publish_weights()  # actors start from the learner's initial (or resumed) policy
        self.trainer.start()
        self._logged = (time.monotonic(), self.learner.counters())  # for the progress line's rates
        self.create_timer(1.0, self._report)

    rejected_transitions = property(lambda self: self.trainer.rejected)

    def _log_device(self, c: LearnerNodeConfig) -> None:
        device = self.learner.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        how = ("uint8 images, random shift and frozen encoder per batch" if c.learner.storage == "images"
               else "frozen-encoder features")
        self.get_logger().info(f"training on {device} ({name}, device:={c.device}); replay buffers in host memory: {how}")

    def _resume(self, root: str, start_fresh: bool):
        """The checkpoint resumed from, or None. ConfigError when checkpoints exist but none loads,
        unless ``start_fresh``."""
        log = self.get_logger()
        path, skipped = self.learner.resume(root)  # also: weight versions go on above root's record
        if path is None and skipped and not start_fresh:
            raise ConfigError(
                f"none of the {len(skipped)} checkpoint(s) in {root} loads: "
                + "; ".join(why for _, why in skipped)  # each reason names its file
                + "; set start_fresh true to start training from zero (they stay on disk), or checkpoint_dir to another directory")
        for bad, why in skipped:
            log.warning(f"skipping checkpoint {bad}: it does not load ({why}); left on disk")
        if path is not None:
            log.info(f"resumed from {path}: {self.learner.counters()}")
            for note in self.learner.checkpoint_warnings:
                log.warning(note)
            level = diagnostics.WARN if skipped or self.learner.checkpoint_warnings else diagnostics.OK
            self.diag.report("checkpoint", level, "; ".join([f"resumed from {path}"] + self.learner.checkpoint_warnings),
                             skipped_checkpoints=len(skipped))
        elif skipped:  # start_fresh
            text = (f"none of the {len(skipped)} checkpoint(s) in {root} loads; start_fresh: training starts from zero "
                    f"(weights from v{self.learner.weights_version + 1}); left on disk: "
                    + ", ".join(bad.name for bad, _ in skipped))
            log.warning(text)
            self.diag.report("checkpoint", diagnostics.WARN, text, skipped_checkpoints=len(skipped))
        return path

    def _log_rejection(self, text: str) -> None:
        self.get_logger().error(f"{text} ({self.trainer.rejected} rejected so far)", throttle_duration_sec=5.0)

    def _on_change(self, old: LearnerNodeConfig, new: LearnerNodeConfig) -> None:
        with self.trainer.lock:
            self.learner.config = new.learner

    def _on_transition(self, msg: UInt8MultiArray) -> None:
        # Anyone on the graph can publish here: a malformed payload is TensorIOError/ValueError;
        # any other exception from decoding is a decoder bug, reported the same way so the
        # learner keeps training instead of dying.
        self._arrived += 1
        try:
            arrays, meta = payload.decode(msg)
            t, actor_id, seq = wire.arrays_to_transition(arrays, meta)
            session = wire.transition_session(meta)
        except (tensorio.TensorIOError, ValueError) as exc:
            self.diag.report("transitions", diagnostics.ERROR, f"rejected a transition payload: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - last line of defence, see above
            self.get_logger().error(f"unexpected error decoding a transition payload:\n{traceback.format_exc()}",
                                    throttle_duration_sec=5.0)
            self.diag.report("transitions", diagnostics.ERROR,
                             f"rejected a transition payload: unexpected {type(exc).__name__} decoding it: {exc}")
            return
        if self.inbox.is_duplicate(actor_id, session, seq):  # a resend of one already stored
            return
        if not self.trainer.admit(t, actor_id):  # it never fits: acknowledged (not resent), not logged or stored
            self.inbox.refused(actor_id, session, seq)
            self._report_rejections()
            return
        index = self.inbox.receive(payload.raw_bytes(msg), actor_id, session, seq)  # logged before queued
        self.trainer.enqueue(t, actor_id, (index, actor_id, session, seq))

    def _open_inbox(self, checkpoint_dir: str, resumed) -> LearnerInbox:
        """The transition log under checkpoint_dir; what it holds beyond the resumed checkpoint
        goes into the buffers now, before training starts."""
        inbox = LearnerInbox(os.path.join(checkpoint_dir, "transitions") if checkpoint_dir else None)
        log = self.get_logger()
        if inbox.log is not None and inbox.log.repaired:
            log.warning(f"transition log: {inbox.log.repaired} (a write cut short by a crash; never acknowledged, so resent)")
        inbox.restore(self.learner.delivery_state if resumed is not None else None)
        rejected = 0
        try:
            for rec in inbox.replay():
                t, _actor, _seq = wire.arrays_to_transition(*tensorio.from_bytes(rec.payload))
                try:
                    self.learner.add(t)
                except (ValueError, KeyError, TypeError):
                    rejected += 1
                inbox.applied(rec.index, rec.actor_id, rec.session, rec.seq)
        except (TransitionLogError, tensorio.TensorIOError, ValueError) as exc:
            raise ConfigError(f"transition log in {checkpoint_dir}: {exc}; move the damaged segment away to go on "
                              "without the transitions in it and after it") from exc
        if inbox.restored_from_log:
            log.info(f"took back {inbox.restored_from_log} transition(s) from the transition log that "
                     f"{resumed or 'no checkpoint'} did not hold" + (f" ({rejected} did not fit)" if rejected else ""))
        return inbox

    def _acknowledge(self) -> None:
        """Every 0.2 s: make the logged transitions durable, then tell the actors what they may forget."""
        self.inbox.sync()
        acks = self.inbox.acknowledgement(self.session)
        acks["updates_due"] = self.learner.updates_due()  # its backlog: an actor may wait for it (max_learner_backlog)
        self._acks_pub.publish(String(data=json.dumps(acks)))

    def _report_rejections(self) -> None:
        total, text = self.trainer.rejections()
        if total != self._reported_rejections:
            self._reported_rejections = total
            self.diag.report("transitions", diagnostics.ERROR, text, rejected_transitions=total)

    def publish_weights(self) -> None:
        with self.trainer.lock:
            # a version above every one published from checkpoint_dir, recorded there (durably) before it goes out
            state, version = self.learner.policy_weights()
            published_s = self.get_clock().now().nanoseconds * 1e-9  # lets receivers measure delivery time
            msg = payload.encode(*wire.weights_to_arrays(
                state, version, {"updates": self.learner.updates, "published_s": published_s}, float_dtype=self.conf.value.weights_dtype))
        self._weights_pub.publish(msg)
        self.weights_bytes = payload.payload_size(msg)
        self.trainer.pacer.weights_published(time.monotonic())

    def _report(self) -> None:
        L = self.learner
        self._report_rejections()  # the training thread's, too
        if self.trainer.failed():
            text = f"training thread died: {self.trainer.failure or 'exited'}; stopping the node"
            self.diag.report("learner", diagnostics.ERROR, text, publish_now=True, updates=L.updates,
                             transitions_received=L.transitions_received)
            self.get_logger().fatal(text)
            raise SystemExit(EXIT_TRAINING_FAILED)
        level = diagnostics.OK if L.ready() else diagnostics.WARN
        text = "training" if L.ready() else f"waiting for data ({L.transitions_received}/{L.config.learning_starts} transitions, demo buffer {len(L.buffers['demo'])})"
        self.diag.report("learner", level, text, updates=L.updates, weights_version=L.weights_version,
                         transitions_received=L.transitions_received, interventions_received=L.interventions_received,
                         weights_bytes=self.weights_bytes, transitions_arrived=self._arrived,
                         transition_publishers_matched=self._transitions_sub.get_publisher_count(),
                         lost_transitions=self.inbox.received.missing(),
                         duplicate_transitions=self.inbox.received.duplicates, restored_from_log=self.inbox.restored_from_log,
                         rejected_transitions=self.rejected_transitions,
                         **{f"{k}_buffer": len(b) for k, b in L.buffers.items()},
                         **{k: f"{v:.4g}" for k, v in L.last_metrics.items()},
                         # the training analysis (learner.analysis_period_updates) and the updates it was taken at
                         **({"analysis_updates": L.analysis_updates, **{k: f"{v:.4g}" for k, v in L.analysis.items()}}
                            if L.analysis else {}))
        self._log_progress()

    def _log_progress(self) -> None:
        period = self.conf.value.log_period_s
        now, (then, before) = time.monotonic(), self._logged
        if period <= 0 or now - then < period:
            return
        L = self.learner
        with self.trainer.lock:
            counters, metrics = L.counters(), {**L.last_metrics, **L.analysis}
            sizes = {name: len(b) for name, b in L.buffers.items()}
        line = progress_line(counters, before, now - then, sizes, metrics)
        if not L.ready():  # what DDS delivered and matched tells a silent actor from a lost link
            line += (f" (waiting for {L.config.learning_starts} transitions; {self._arrived} message(s) arrived, "
                     f"{self._transitions_sub.get_publisher_count()} publisher(s) matched on {topics.TRANSITIONS})")
        self.get_logger().info(line)
        self._logged = (now, counters)

    def training_failed(self) -> bool:
        return self.trainer.failed()

    def close(self) -> None:
        """Stop training; write a final checkpoint if anything changed since the last one."""
        failed = self.trainer.failed()
        path = self.trainer.stop(checkpoint=self.conf.value.final_checkpoint)
        if path is not None:
            self.get_logger().info(f"final checkpoint {path}")
        elif self.conf.value.checkpoint_dir and (failed or self.trainer.failure is not None):
            self.get_logger().error(f"no final checkpoint: the training thread died ({self.trainer.failure})")
        self.inbox.close()


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = LearnerNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
