"""Fixtures for tests that run real rclpy nodes on loopback DDS."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Kilted wheels) not installed; run scripts/setup.sh")


@pytest.fixture
def ros_context():
    """A fresh rclpy context per test; shut down even when the test fails."""
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def _spin_until(executor, predicate, timeout_s=10.0):
    """Spin ``executor`` until ``predicate()`` is true; return whether it became true."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


@pytest.fixture
def spin_until():
    """``spin_until(executor, predicate, timeout_s)``: spin until the predicate holds."""
    return _spin_until
