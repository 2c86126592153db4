"""The learner's training thread, without ROS.

Transitions arrive on another thread (``submit``) and wait in a queue; the training thread moves
them into the buffers, runs updates at the update-to-data ratio under the update-rate cap
(``UpdatePacer``), and publishes weights and writes checkpoints when due: checkpoints every
``checkpoint_period_updates`` updates or ``checkpoint_period_s`` seconds, whichever comes first,
when anything changed, updates or not (with ``updates_per_transition`` 0 the data still reaches
the disk). A transition that does
not fit the buffers is counted and reported, never stored in part. Any other exception stops the
thread and is kept in ``failure``: a learner that no longer learns must not look alive.
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from typing import Any, Callable, Optional, Tuple

from ..formats.types import Transition
from .delivery import LearnerInbox
from .learner import Learner, UpdatePacer, fewest_log_records_held

__all__ = ["LearnerThread"]


class LearnerThread:
    def __init__(self, learner: Learner, *, checkpoint_dir: str, publish_weights: Callable[[], None],
                 logger: Any, on_reject: Callable[[str], None], inbox: Optional[LearnerInbox] = None,
                 after_checkpoint: Optional[Callable[[], Any]] = None) -> None:
        """``publish_weights`` is called on the training thread when weights are due (take ``lock``
        to read them); ``logger`` (``.info``, ``.error``: rclpy's or ``logging``'s) gets checkpoint
        lines and the thread's death, ``on_reject`` each rejection's text. ``inbox`` (the node's
        ``rl.delivery.LearnerInbox``) learns which logged transitions reached the buffers; each
        checkpoint records it and lets the log drop what every checkpoint on disk holds."""
        self.learner = learner
        self.inbox = inbox
        self.after_checkpoint = after_checkpoint  # e.g. give the save's temporary memory back
        self.checkpoint_dir = checkpoint_dir
        self.publish_weights, self.logger, self.on_reject = publish_weights, logger, on_reject
        self.lock = threading.Lock()  # held around every use of the learner
        self.queue: collections.deque = collections.deque()  # (transition, actor_id, origin in the log or None)
        self.pacer = UpdatePacer(learner.progress())
        self.rejected = 0
        self.last_rejection = ""
        self._reject_lock = threading.Lock()  # rejections come from the receiving and the training thread
        self.failure: Optional[str] = None  # the fatal error, once the thread died
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="learner-train", daemon=True)

    def start(self) -> None:
        self.thread.start()

    # -- from the receiving thread
    def submit(self, t: Transition, actor_id: str) -> bool:
        """Queue a transition for the buffers; a misfit is rejected (``admit``)."""
        if not self.admit(t, actor_id):
            return False
        self.enqueue(t, actor_id)
        return True

    def admit(self, t: Transition, actor_id: str) -> bool:
        """Whether ``t`` fits the buffers (shapes only: cheap, no lock); a misfit is counted and reported."""
        problem = self.learner.check_transition(t)
        if problem:
            self.reject(actor_id, problem)
        return not problem

    def enqueue(self, t: Transition, actor_id: str, origin: Optional[Tuple[int, str, str, int]] = None) -> None:
        """Queue an admitted transition; ``origin``: (log index, actor id, session, sequence
        number), in log order (``inbox.applied`` once it is in the buffers)."""
        self.queue.append((t, actor_id, origin))

    def reject(self, actor_id: str, problem: str) -> None:
        with self._reject_lock:
            self.rejected += 1
            self.last_rejection = text = f"rejected a transition from actor {actor_id!r}: {problem}"
        self.on_reject(text)

    def rejections(self) -> Tuple[int, str]:
        with self._reject_lock:
            return self.rejected, self.last_rejection

    def failed(self) -> bool:
        """The thread died (an error, not a stop)."""
        return self.failure is not None or (self.thread.ident is not None and not self.thread.is_alive()
                                            and not self._stop.is_set())

    # -- the thread
    def _run(self) -> None:
        try:
            self._train()
        except BaseException as exc:  # noqa: BLE001 - kept in failure; the owner stops
            self.failure = f"{type(exc).__name__}: {exc}"
            self.logger.error(f"training thread died: {self.failure}\n{traceback.format_exc()}")

    def add_queued(self) -> bool:
        """Move the queued transitions into the buffers; whether there were any."""
        worked = False
        while self.queue:
            t, actor_id, origin = self.queue.popleft()
            with self.lock:
                try:
                    self.learner.add(t)  # refuses a misfit whole (ValueError), stores nothing
                except (ValueError, KeyError, TypeError) as exc:
                    self.reject(actor_id, str(exc))
                if origin is not None and self.inbox is not None:
                    self.inbox.applied(*origin)  # stored, or refused for good: either way done with
            worked = True
        return worked

    def _train(self) -> None:
        while not self._stop.is_set():
            worked = self.add_queued()
            with self.lock:
                due = self.learner.updates_due()
                schedule = self.learner.config
            if due > 0:
                t0 = time.monotonic()
                with self.lock:
                    self.learner.train_step()
                worked = True
                pause = self.pacer.pause_s(schedule, t0, time.monotonic())  # the update-rate cap
                if pause > 0:
                    self._stop.wait(pause)
                if self.pacer.weights_due(schedule, time.monotonic()):
                    self.publish_weights()
            # this thread alone changes the progress: read without the lock
            if self.checkpoint_dir and self.pacer.checkpoint_due(schedule, self.learner.progress(), time.monotonic()):
                self.logger.info(f"checkpoint {self.checkpoint()}")
                worked = True
            if not worked:
                self._stop.wait(0.01)

    def checkpoint(self) -> str:
        with self.lock:
            if self.inbox is not None:
                self.learner.delivery_state = self.inbox.checkpoint_state()
            path = self.learner.save_checkpoint(self.checkpoint_dir)
            self.pacer.checkpointed(self.learner.progress())
        if self.inbox is not None:  # the log keeps what the oldest checkpoint on disk lacks
            self.inbox.prune(fewest_log_records_held(self.checkpoint_dir))
        if self.after_checkpoint is not None:
            self.after_checkpoint()
        return str(path)

    def stop(self, checkpoint: bool = True) -> Optional[str]:
        """Stop training and write a final checkpoint if anything changed since the last one (its
        path). None: nothing changed, no checkpoint_dir, ``checkpoint`` false, or the thread died (an update may have
        died halfway: the last checkpoint stands)."""
        failed = self.failed()
        self._stop.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=10.0)
        if not self.checkpoint_dir or not checkpoint or failed or self.failure is not None:
            return None
        if not self.thread.is_alive():
            self.add_queued()  # received but not yet stored: keep them too
        with self.lock:
            if not self.pacer.changed_since_checkpoint(self.learner.progress()):
                return None
        self.logger.info(f"writing the final checkpoint into {self.checkpoint_dir} (GBs of buffers take a while)")
        return self.checkpoint()
