"""control.SinglePublisherGuard, the pure part of the simulator's and the controllers' single-publisher guard
(the C++ twin law::SinglePublisherGuard runs the same sequence in control_law_test.cpp)."""

import pytest

from hilserl_core.robot.control import SinglePublisherGuard

# (publishers observed, event, commands accepted after it): the sequence control_law_test.cpp repeats
SEQUENCE = [
    (0, "", True),  # nobody publishes yet: nothing to refuse
    (1, "", True),  # the mux
    (2, "conflict", False),  # a second publisher: hold, drop
    (3, "", False),
    (2, "", False),
    (1, "clear", True),  # back to one: follow it again
    (1, "", True),
    (2, "conflict", False),  # a second conflict is counted again
    (0, "clear", True),  # everyone gone: the watchdog holds the arm, the guard has nothing to say
]


def test_guard_sequence():
    g = SinglePublisherGuard()
    dropped = 0
    for n, event, accepts in SEQUENCE:
        assert g.observe(n) == event, (n, event)
        assert g.publishers == n and g.conflict == (not accepts)
        assert g.accept() == accepts
        dropped += not accepts
    assert g.conflicts == 2 and g.dropped == dropped == 4


def test_guard_refuses_a_negative_count():
    with pytest.raises(ValueError, match=">= 0"):
        SinglePublisherGuard().observe(-1)
