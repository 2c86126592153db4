"""Learner node: transitions in, policy weights out.

Receives transitions on ``/learner/transitions`` (safetensors payloads, see
hilserl_core.formats.wire), routes them into the demo and RL buffers (interventions into
both), runs RLPD updates on 50/50 demo/online batches in a training thread at the
update-to-data ratio, broadcasts the trainable policy weights on
``/learner/policy_weights`` (reliable, transient-local: a restarted actor gets the
newest at once) and checkpoints agents + buffers atomically. On start it resumes
from the newest checkpoint in ``checkpoint_dir`` that loads: a damaged newer one is
skipped with a WARN naming it and the error (and left on disk); when none loads it
starts fresh with an ERROR (diagnostics status ``checkpoint``). A checkpoint whose
buffers hold features of other encoder weights than ``encoder_weights`` stops the node
with a configuration error (exit status 2) instead: mixing unrelated features is never
silent, and starting fresh would bury the checkpoint; the same weights in another
``encoder_dtype`` resume with a WARN. A clean shutdown
(``close``) writes a final checkpoint whenever anything changed since the last one
(transitions received, demos added, updates), so data received before
``learning_starts`` or with ``updates_per_transition`` 0 is not lost.

A transition that does not fit the buffers (an actor configured for other arms or
cameras: wrong proprio size, missing camera, wrong action size, a non-finite value)
is rejected on arrival with an ERROR naming the actor, the key and the shape
(diagnostics status ``transitions``, counter ``rejected_transitions``); the node
keeps going. Any other exception in the training thread is logged with its
traceback, reported as ERROR (status ``learner``) and stops the node with exit
status ``EXIT_TRAINING_FAILED`` (3), no final checkpoint: a learner that no longer
learns must not look alive.

Live parameters: ``learner.updates_per_transition`` (UTD), ``learner.max_updates_per_s``,
``learner.weights_period_s``, ``log_period_s`` (a progress line on the console: updates and
transitions with their rates, buffer sizes, weights version, latest losses).
"""

from __future__ import annotations

import collections
import threading
import time
import traceback

import torch
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from hilserl_core.accel.allocator import configure_cpu_allocator
from hilserl_core.formats import tensorio, wire
from hilserl_core.rl.build import LearnerNodeConfig, build_learner
from hilserl_core.rl.learner import UpdatePacer, progress_line
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
        self.learner = build_learner(c)
        if c.checkpoint_dir:
            self._resume(c.checkpoint_dir)
        self.sequences = wire.SequenceTracker()
        # (transition, actor_id); filled by the subscription, drained by the training thread
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self.rejected_transitions = 0
        self._reject_lock = threading.Lock()  # rejections come from the subscription and the training thread
        self._last_rejection = ""  # newest rejection text, for diagnostics
        self._reported_rejections = 0
        self._failure = None  # the training thread's fatal error, once it died
        self._weights_pub = self.create_publisher(UInt8MultiArray, topics.POLICY_WEIGHTS, qos.LATCHED)
        self.create_subscription(UInt8MultiArray, topics.TRANSITIONS, self._on_transition, qos.TRANSITIONS)
        self.weights_bytes = 0
        self.pacer = UpdatePacer(self.learner.progress())
        self.publish_weights()  # actors start from the learner's initial (or resumed) policy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._train_loop, name="learner-train", daemon=True)
        self._thread.start()
        self._logged = (time.monotonic(), self.learner.counters())  # for the progress line's rates
        self.create_timer(1.0, self._report)

    def _resume(self, root: str) -> None:
        log = self.get_logger()
        path, skipped = self.learner.resume(root)
        for bad, why in skipped:
            log.warning(f"skipping checkpoint {bad}: it does not load ({why}); left on disk")
        if path is not None:
            log.info(f"resumed from {path}: {self.learner.counters()}")
            for note in self.learner.checkpoint_warnings:
                log.warning(note)
            level = diagnostics.WARN if skipped or self.learner.checkpoint_warnings else diagnostics.OK
            self.diag.report("checkpoint", level, "; ".join([f"resumed from {path}"] + self.learner.checkpoint_warnings),
                             skipped_checkpoints=len(skipped))
        elif skipped:
            text = (f"none of the {len(skipped)} checkpoint(s) in {root} loads; starting fresh "
                    f"(they are left on disk; newest: {skipped[0][0]}: {skipped[0][1]})")
            log.error(text)
            self.diag.report("checkpoint", diagnostics.ERROR, text, skipped_checkpoints=len(skipped))

    def _reject(self, actor_id: str, problem: str) -> None:
        """Count and log a transition that does not fit the buffers (callable from any thread)."""
        with self._reject_lock:
            self.rejected_transitions += 1
            self._last_rejection = text = f"rejected a transition from actor {actor_id!r}: {problem}"
            total = self.rejected_transitions
        self.get_logger().error(f"{text} ({total} rejected so far)", throttle_duration_sec=5.0)

    def _on_change(self, old: LearnerNodeConfig, new: LearnerNodeConfig) -> None:
        with self._lock:
            self.learner.config = new.learner

    def _on_transition(self, msg: UInt8MultiArray) -> None:
        # Anyone on the graph can publish here: a malformed payload is TensorIOError/ValueError;
        # any other exception from decoding is a decoder bug, reported the same way so the
        # learner keeps training instead of dying.
        try:
            t, actor_id, seq = wire.arrays_to_transition(*payload.decode(msg))
        except (tensorio.TensorIOError, ValueError) as exc:
            self.diag.report("transitions", diagnostics.ERROR, f"rejected a transition payload: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - last line of defence, see above
            self.get_logger().error(f"unexpected error decoding a transition payload:\n{traceback.format_exc()}",
                                    throttle_duration_sec=5.0)
            self.diag.report("transitions", diagnostics.ERROR,
                             f"rejected a transition payload: unexpected {type(exc).__name__} decoding it: {exc}")
            return
        lost = self.sequences.see(actor_id, seq)
        if lost:
            self.diag.report("transitions", diagnostics.WARN, f"{lost} transition(s) from {actor_id} lost before #{seq}",
                             lost_total=self.sequences.lost)
        problem = self.learner.check_transition(t)  # shapes only: cheap, no lock needed
        if problem:
            self._reject(actor_id, problem)
            self._report_rejections()
            return
        self._queue.append((t, actor_id))

    def _report_rejections(self) -> None:
        with self._reject_lock:
            total, text = self.rejected_transitions, self._last_rejection
        if total != self._reported_rejections:
            self._reported_rejections = total
            self.diag.report("transitions", diagnostics.ERROR, text, rejected_transitions=total)

    def publish_weights(self) -> None:
        with self._lock:
            state, version = self.learner.policy_weights()
            published_s = self.get_clock().now().nanoseconds * 1e-9  # lets receivers measure delivery time
            msg = payload.encode(*wire.weights_to_arrays(
                state, version, {"updates": self.learner.updates, "published_s": published_s}, float_dtype=self.conf.value.weights_dtype))
        self._weights_pub.publish(msg)
        self.weights_bytes = payload.payload_size(msg)
        self.pacer.weights_published(time.monotonic())

    def _train_loop(self) -> None:
        try:
            self._train()
        except BaseException as exc:  # noqa: BLE001 - reported, then the node stops (see _report)
            self._failure = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"training thread died: {self._failure}\n{traceback.format_exc()}")

    def _add_queued(self) -> bool:
        """Move the queued transitions into the buffers; whether there were any."""
        worked = False
        while self._queue:
            t, actor_id = self._queue.popleft()
            try:
                with self._lock:
                    self.learner.add(t)  # refuses a misfit whole (ValueError), stores nothing
            except (ValueError, KeyError, TypeError) as exc:
                self._reject(actor_id, str(exc))
            worked = True
        return worked

    def _train(self) -> None:
        while not self._stop.is_set():
            worked = self._add_queued()
            with self._lock:
                due = self.learner.updates_due()
                schedule = self.learner.config
            if due > 0:
                t0 = time.monotonic()
                with self._lock:
                    self.learner.train_step()
                worked = True
                pause = self.pacer.pause_s(schedule, t0, time.monotonic())  # the update-rate cap
                if pause > 0:
                    self._stop.wait(pause)
                if self.pacer.weights_due(schedule, time.monotonic()):
                    self.publish_weights()
                ck = self.conf.value.checkpoint_dir
                if ck and self.pacer.checkpoint_due(schedule, self.learner.updates):
                    with self._lock:
                        path = self.learner.save_checkpoint(ck)
                        self.pacer.checkpointed(self.learner.progress())
                    self.get_logger().info(f"checkpoint {path}")
            if not worked:
                self._stop.wait(0.01)

    def training_failed(self) -> bool:
        """The training thread died (an error, not a shutdown)."""
        return self._failure is not None or (not self._thread.is_alive() and not self._stop.is_set())

    def _report(self) -> None:
        L = self.learner
        self._report_rejections()  # the training thread's, too
        if self.training_failed():
            text = f"training thread died: {self._failure or 'exited'}; stopping the node"
            self.diag.report("learner", diagnostics.ERROR, text, publish_now=True, updates=L.updates,
                             transitions_received=L.transitions_received)
            self.get_logger().fatal(text)
            raise SystemExit(EXIT_TRAINING_FAILED)
        level = diagnostics.OK if L.ready() else diagnostics.WARN
        text = "training" if L.ready() else f"waiting for data ({L.transitions_received}/{L.config.learning_starts} transitions, demo buffer {len(L.buffers['demo'])})"
        self.diag.report("learner", level, text, updates=L.updates, weights_version=L.weights_version,
                         transitions_received=L.transitions_received, interventions_received=L.interventions_received,
                         weights_bytes=self.weights_bytes, lost_transitions=self.sequences.lost,
                         rejected_transitions=self.rejected_transitions,
                         **{f"{k}_buffer": len(b) for k, b in L.buffers.items()},
                         **{k: f"{v:.4g}" for k, v in L.last_metrics.items()})
        self._log_progress()

    def _log_progress(self) -> None:
        period = self.conf.value.log_period_s
        now, (then, before) = time.monotonic(), self._logged
        if period <= 0 or now - then < period:
            return
        L = self.learner
        with self._lock:
            counters, metrics = L.counters(), dict(L.last_metrics)
            sizes = {name: len(b) for name, b in L.buffers.items()}
        line = progress_line(counters, before, now - then, sizes, metrics)
        self.get_logger().info(line if L.ready() else f"{line} (waiting for {L.config.learning_starts} transitions)")
        self._logged = (now, counters)

    def close(self) -> None:
        """Stop training; write a final checkpoint if anything changed since the last one."""
        failed = self.training_failed()
        self._stop.set()
        self._thread.join(timeout=10.0)
        failed = failed or self._failure is not None
        ck = self.conf.value.checkpoint_dir
        if not ck:
            return
        if failed:  # an update may have died halfway: the last checkpoint stands
            self.get_logger().error(f"no final checkpoint: the training thread died ({self._failure})")
            return
        if not self._thread.is_alive():
            self._add_queued()  # received but not yet stored: keep them too
        with self._lock:
            if not self.pacer.changed_since_checkpoint(self.learner.progress()):
                return
            path = self.learner.save_checkpoint(ck)
            self.pacer.checkpointed(self.learner.progress())
        self.get_logger().info(f"final checkpoint {path}")


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = LearnerNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
