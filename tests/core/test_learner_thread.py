"""The learner's training thread without ROS: queue -> buffers, updates at the UTD ratio, weights
and checkpoints when due, rejections counted, a final checkpoint only when something changed, a
dead thread reported and never checkpointed."""

import dataclasses
import logging
import threading
import time

import numpy as np

from hilserl_core.rl.learner import latest_checkpoint
from hilserl_core.rl.learner_thread import LearnerThread

from test_learner import make_learner, transitions


def wait_for(pred, timeout_s=30.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def make_thread(L, root="", **kw):
    published, rejected = [], []
    lt = LearnerThread(L, checkpoint_dir=str(root), publish_weights=lambda: published.append(L.weights_version),
                       logger=logging.getLogger("test_learner_thread"), on_reject=rejected.append, **kw)
    return lt, published, rejected


def test_queued_transitions_are_stored_and_trained_on_and_weights_go_out():
    L = make_learner(updates_per_transition=1.0, weights_period_s=0.05, checkpoint_period_updates=0)
    lt, published, rejected = make_thread(L)
    lt.start()
    for t in transitions(12):
        assert lt.submit(t, "actor_a")
    assert wait_for(lambda: L.updates >= 8)  # learning_starts 4, one update per transition after
    assert len(L.buffers["rl"]) == 12 and published and not rejected
    assert lt.stop() is None  # no checkpoint_dir: nothing written
    assert not lt.thread.is_alive() and not lt.failed()


def test_a_misfit_is_rejected_on_arrival_or_in_the_thread_and_counted():
    L = make_learner(updates_per_transition=0.0)
    lt, _, rejected = make_thread(L)
    good = transitions(2)[0]
    misfit = dataclasses.replace(good, observation={"proprio": np.zeros(11, np.float32)})
    assert not lt.submit(misfit, "two_arms")
    assert lt.rejections() == (1, rejected[0]) and "two_arms" in rejected[0] and "(11,)" in rejected[0]
    lt.queue.append((misfit, "queued_directly", None))  # past the cheap check: the buffers refuse it whole
    lt.queue.append((good, "actor_a", None))
    assert lt.add_queued()
    assert lt.rejected == 2 and "queued_directly" in lt.last_rejection and len(L.buffers["rl"]) == 1


def test_checkpoints_when_due_and_a_final_one_only_when_something_changed(tmp_path):
    L = make_learner(updates_per_transition=1.0, checkpoint_period_updates=3, weights_period_s=3600.0)
    lt, _, _ = make_thread(L, tmp_path)
    lt.start()
    for t in transitions(8):
        lt.submit(t, "a")
    assert wait_for(lambda: latest_checkpoint(tmp_path) is not None)
    assert wait_for(lambda: L.updates >= 4)
    final = lt.stop()
    assert final is not None and str(latest_checkpoint(tmp_path)) == final
    # nothing changed since: no second final checkpoint
    lt2, _, _ = make_thread(L, tmp_path)
    assert lt2.stop() is None


def test_no_final_checkpoint_when_told_so(tmp_path):
    """hilserl eval's learner serves a copy of a checkpoint: whatever it received, it writes nothing."""
    L = make_learner(updates_per_transition=0.0, checkpoint_period_updates=0)
    lt, _, _ = make_thread(L, tmp_path)
    lt.start()
    for t in transitions(5):
        lt.submit(t, "a")
    assert wait_for(lambda: len(L.buffers["rl"]) == 5)
    assert lt.stop(checkpoint=False) is None and latest_checkpoint(tmp_path) is None


def test_a_dead_thread_is_reported_and_writes_no_final_checkpoint(tmp_path):
    L = make_learner(updates_per_transition=1.0)
    boom = threading.Event()

    def broken_step():
        boom.set()
        raise RuntimeError("the update broke")

    L.train_step = broken_step
    lt, _, _ = make_thread(L, tmp_path)
    lt.start()
    for t in transitions(6):
        lt.submit(t, "a")
    assert wait_for(lambda: lt.failed())
    assert boom.is_set() and lt.failure == "RuntimeError: the update broke"
    assert lt.stop() is None and latest_checkpoint(tmp_path) is None


def test_checkpoints_on_a_time_period_without_updates_and_only_when_something_changed(tmp_path):
    # data collection: no updates at all, yet what was received reaches the disk every checkpoint_period_s
    L = make_learner(updates_per_transition=0.0, checkpoint_period_updates=2000, checkpoint_period_s=0.3,
                     keep_checkpoints=10)
    lt, _, _ = make_thread(L, tmp_path)
    lt.start()
    ts = transitions(6)
    for t in ts[:4]:
        lt.submit(t, "a")
    assert wait_for(lambda: latest_checkpoint(tmp_path) is not None, 10)
    assert wait_for(lambda: latest_checkpoint(tmp_path).name == "ckpt_000000000_000000004_000000000", 10)
    written = sorted(tmp_path.glob("ckpt_*"))
    time.sleep(1.0)  # three periods with nothing new: no new checkpoint
    assert sorted(tmp_path.glob("ckpt_*")) == written
    lt.submit(ts[4], "a")
    assert wait_for(lambda: latest_checkpoint(tmp_path).name == "ckpt_000000000_000000005_000000000", 10)
    assert L.updates == 0
    assert lt.stop() is None  # everything is on disk already
