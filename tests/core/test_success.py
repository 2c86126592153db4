import pytest

from hilserl_core.vision.success import SuccessRule


def test_consecutive_frames_and_reset():
    r = SuccessRule(0.5, consecutive_frames=3)
    assert [r.update(p) for p in (0.9, 0.9, 0.4, 0.9, 0.9, 0.9, 0.95)] == [False, False, False, False, False, True, True]
    r.reset()
    assert not r.update(0.9)
    r.configure(0.95, 1)
    assert not r.update(0.9) and r.update(0.96)
    with pytest.raises(ValueError, match="threshold"):
        r.configure(1.0, 1)
    with pytest.raises(ValueError, match="consecutive_frames"):
        SuccessRule(0.5, 0)
