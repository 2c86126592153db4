"""``hilserl bag2demos`` with ``reward:=classifier``: success from the stamped ``/reward/success``
verdicts, paired with the observation holding the judged frame, gives the same transitions as
the operator's marks when both say the same; a mux report carrying an observation's exact stamp
pairs with that observation also when the recorder logged it before the frame's verdict (the
converter's tick on those frames waits for the verdict, as the actor's does)."""

import numpy as np
import pytest
from bag_helpers import write_rosbags
from test_bag2demos_cli import SETUP, _header, recording

from hilserl.bag2demos import actor_config_for, convert_bag
from hilserl_core.formats import bags


def _with_verdicts(events, late=()):
    """Add a verdict per frame (success on the last one), logged 10 ms after the frame, or, for the
    frames in ``late``, 30 ms after it: after the mux's report (logged 20 ms after the frame)."""
    stamps = sorted({e[3]["header"]["stamp"]["sec"] * 10**9 + e[3]["header"]["stamp"]["nanosec"]
                     for e in events if e[0].endswith("image_cropped")})
    out = list(events)
    for k, t in enumerate(stamps):
        success = k == len(stamps) - 1
        out.append((bags.REWARD_SUCCESS_TOPIC, "sensor_msgs/msg/Joy", t + (30 if k in late else 10) * 1_000_000,
                    {"header": _header(t, ""), "axes": np.array([0.9 if success else 0.1], np.float32),
                     "buttons": np.array([int(success)], np.int32)}))
    return sorted(out, key=lambda e: e[2])


@pytest.mark.parametrize("late", [(), (1, 2, 5)], ids=["verdicts_first", "reports_first"])
def test_stamped_verdicts_give_the_transitions_the_marks_give(tmp_path, late):
    path = write_rosbags(tmp_path / "bag", _with_verdicts(recording(), late), custom_data={bags.KEY_SETUP: SETUP})
    actor = actor_config_for(SETUP)
    with bags.BagReader(path) as r:
        marks = convert_bag(r, actor, "marks")
    with bags.BagReader(path) as r:
        stamped = convert_bag(r, actor, "classifier")
    assert (stamped.episodes, stamped.successes, stamped.dropped_steps, stamped.unpaired_reports) == (1, 1, 0, 0)
    assert len(stamped.transitions) == len(marks.transitions) == 7
    for a, b in zip(marks.transitions, stamped.transitions):
        assert (a.reward, a.terminated, a.truncated, a.step) == (b.reward, b.terminated, b.truncated, b.step)
        assert np.array_equal(a.action, b.action) and a.info == b.info
        for k in a.observation:
            assert np.array_equal(a.observation[k], b.observation[k]) and np.array_equal(a.next_observation[k], b.next_observation[k])
    assert [t.reward for t in stamped.transitions] == [0.0] * 6 + [1.0]


def test_a_bag_with_the_old_unstamped_reward_is_refused_for_reward_classifier(tmp_path):
    events = recording() + [(bags.REWARD_SUCCESS_TOPIC, "std_msgs/msg/Bool", 1_700_000_000 * 10**9 + 5, {"data": False})]
    path = write_rosbags(tmp_path / "old", sorted(events, key=lambda e: e[2]), custom_data={bags.KEY_SETUP: SETUP})
    with bags.BagReader(path) as r, pytest.raises(bags.BagError, match="not the stamped sensor_msgs/msg/Joy"):
        convert_bag(r, actor_config_for(SETUP), "classifier")
