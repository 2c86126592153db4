"""franka_robot_state_broadcaster's state -> current_pose / current_twist / external_wrench:
column-major O_T_EE, the wrench moved from the stiffness frame to the TCP, the twist
estimated from poses, and the message fields read by duck typing (golden vectors)."""

from types import SimpleNamespace as NS

import numpy as np
import pytest

from hilserl_core.robot import frames
from hilserl_core.robot.franka_state import (
    FrankaSample,
    FrankaStateConfig,
    FrankaStateConverter,
    FrankaStateError,
    TwistEstimator,
    column_major_from_pose,
    pose_from_column_major,
    robot_mode_problem,
    sample_from_msg,
    wrench_at_ee,
)

# Franka's "ready" pose: the hand points down (pi about base x), TCP 0.307 m ahead, 0.487 m up.
READY_O_T_EE = [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0.307, 0.0, 0.487, 1]
# 90 degrees about base z, at (0.4, -0.1, 0.3): columns are the rotated axes (0,1,0), (-1,0,0), (0,0,1).
YAW90_O_T_EE = [0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1, 0, 0.4, -0.1, 0.3, 1]


def test_column_major_golden_vectors():
    p, q = pose_from_column_major(READY_O_T_EE)
    assert np.allclose(p, [0.307, 0.0, 0.487])
    assert np.allclose(q, [1, 0, 0, 0])  # [x, y, z, w]: pi about x
    p, q = pose_from_column_major(YAW90_O_T_EE)
    assert np.allclose(p, [0.4, -0.1, 0.3])
    s = np.sqrt(0.5)
    assert np.allclose(q, [0, 0, s, s])
    assert q[3] >= 0  # canonical sign


def test_column_major_round_trip_random_poses():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.normal(size=3)
        q = frames.quat_normalize(rng.normal(size=4))
        p2, q2 = pose_from_column_major(column_major_from_pose(p, q))
        assert np.allclose(p2, p) and frames.quat_angle(q, q2) < 1e-9


def test_row_major_or_broken_matrices_are_refused():
    row_major = np.array(YAW90_O_T_EE, dtype=float).reshape(4, 4).T.reshape(16)  # translation in the last row
    with pytest.raises(FrankaStateError, match="last row"):
        pose_from_column_major(row_major)
    scaled = list(READY_O_T_EE)
    scaled[0] = 2.0
    with pytest.raises(FrankaStateError, match="not a rotation"):
        pose_from_column_major(scaled)
    reflected = list(READY_O_T_EE)
    reflected[10] = 1.0  # det -1
    with pytest.raises(FrankaStateError, match="not a rotation"):
        pose_from_column_major(reflected)
    nan = list(READY_O_T_EE)
    nan[12] = float("nan")
    with pytest.raises(FrankaStateError, match="NaN"):
        pose_from_column_major(nan)
    with pytest.raises(FrankaStateError):
        pose_from_column_major([1, 2, 3])


def test_wrench_moved_from_stiffness_frame_to_tcp():
    q_down = np.array([1.0, 0, 0, 0])  # EE z axis points down in base axes
    w_k = np.array([5.0, 0, 0, 0, 0, 0])
    # K 0.1 m along EE z = 0.1 m below the TCP: r = (0, 0, -0.1); tau = r x f = (0, -0.5, 0)
    assert np.allclose(wrench_at_ee(w_k, q_down, [0, 0, 0.1]), [5, 0, 0, 0, -0.5, 0])
    # default stiffness frame (EE_T_K = identity): unchanged, same sign and axes as franka's
    w = np.array([1.0, -2.0, -9.81, 0.1, 0.2, 0.3])
    assert np.array_equal(wrench_at_ee(w, q_down, [0, 0, 0]), w)
    # a force along the lever arm makes no torque
    assert np.allclose(wrench_at_ee([0, 0, -10, 0, 0, 0], q_down, [0, 0, 0.1]), [0, 0, -10, 0, 0, 0])
    with pytest.raises(FrankaStateError):
        wrench_at_ee([np.inf, 0, 0, 0, 0, 0], q_down, [0, 0, 0])


def test_twist_from_poses_constant_velocity_exact_without_filter():
    est = TwistEstimator(time_constant_s=0.0, max_gap_s=0.1)
    v, w = np.array([0.1, -0.05, 0.02]), np.array([0.0, 0.0, 0.5])
    q0 = np.array([1.0, 0, 0, 0])
    out = None
    for k in range(50):
        t = 10.0 + k * 0.001
        p = np.array([0.4, 0, 0.3]) + v * (t - 10.0)
        q = frames.quat_multiply(frames.rotvec_to_quat(w * (t - 10.0)), q0)  # spatial angular velocity (base axes)
        out = est.update(t, p, q)
        if k == 0:
            assert np.array_equal(out, np.zeros(6))  # nothing known from one sample
    assert np.allclose(out, np.concatenate([v, w]), atol=1e-9)


def test_twist_filter_gap_and_duplicates():
    est = TwistEstimator(time_constant_s=0.01, max_gap_s=0.05)
    v = np.array([0.2, 0, 0])
    for k in range(11):  # 10 steps of 1 ms: first-order response 1 - (1 - a)^10, a = 0.001 / 0.011
        out = est.update(k * 0.001, v * k * 0.001, [0, 0, 0, 1])
    a = 0.001 / 0.011
    assert np.isclose(out[0], 0.2 * (1 - (1 - a) ** 10))
    for k in range(11, 300):
        out = est.update(k * 0.001, v * k * 0.001, [0, 0, 0, 1])
    assert np.isclose(out[0], 0.2, atol=1e-6)
    before = out.copy()
    assert np.array_equal(est.update(0.299, [9, 9, 9], [0, 0, 0, 1]), before)  # time did not advance: ignored
    assert est.ignored == 1
    assert np.array_equal(est.update(1.0, [0, 0, 0], [0, 0, 0, 1]), np.zeros(6))  # gap: restart at zero
    assert est.restarts == 1
    with pytest.raises(ValueError):
        TwistEstimator(-1.0)


def _robot_state(pos, quat, wrench, time_s=1.0, ee_t_k=(0, 0, 0), mode=2, stamp=(5, 0)):
    """A stand-in with franka_msgs/FrankaRobotState's fields (franka_ros2 >= 1.0)."""
    vec = lambda x, y, z: NS(x=x, y=y, z=z)  # noqa: E731
    header = NS(stamp=NS(sec=stamp[0], nanosec=stamp[1]), frame_id="fr3_link0")
    pose = NS(position=vec(*pos), orientation=NS(x=quat[0], y=quat[1], z=quat[2], w=quat[3]))
    return NS(
        header=header,
        o_t_ee=NS(header=header, pose=pose),
        ee_t_k=NS(header=header, pose=NS(position=vec(*ee_t_k), orientation=NS(x=0, y=0, z=0, w=1))),
        o_f_ext_hat_k=NS(header=header, wrench=NS(force=vec(*wrench[:3]), torque=vec(*wrench[3:]))),
        o_dp_ee_d=None, time=time_s, robot_mode=mode,
    )


def test_sample_from_franka_robot_state():
    s = sample_from_msg(_robot_state([0.3, 0.1, 0.4], [1, 0, 0, 0], [1, 2, 3, 4, 5, 6], time_s=12.5, ee_t_k=(0, 0, 0.05)))
    assert s.time_s == 12.5 and s.robot_mode == 2
    assert np.allclose(s.position, [0.3, 0.1, 0.4]) and np.allclose(s.quat, [1, 0, 0, 0])
    assert np.allclose(s.wrench_k, [1, 2, 3, 4, 5, 6]) and np.allclose(s.ee_t_k_position, [0, 0, 0.05])
    # robot time 0 (not filled): the header stamp
    assert sample_from_msg(_robot_state([0, 0, 0], [0, 0, 0, 1], [0] * 6, time_s=0.0, stamp=(7, 500_000_000))).time_s == 7.5


def test_sample_from_old_franka_state_column_major():
    eetk = column_major_from_pose([0, 0, 0.1], [0, 0, 0, 1])
    msg = NS(O_T_EE=READY_O_T_EE, O_F_ext_hat_K=[0, 0, -9.81, 0, 0, 0], EE_T_K=eetk, time=3.0, robot_mode=4)
    s = sample_from_msg(msg)
    assert np.allclose(s.position, [0.307, 0, 0.487]) and np.allclose(s.quat, [1, 0, 0, 0])
    assert np.allclose(s.ee_t_k_position, [0, 0, 0.1]) and s.time_s == 3.0 and s.robot_mode == 4
    with pytest.raises(FrankaStateError, match="not a franka robot state"):
        sample_from_msg(NS(pose=None))


def test_converter_publishes_the_newest_and_rejects_bad_samples():
    conv = FrankaStateConverter(FrankaStateConfig(twist_filter_time_constant_s=0.0, stale_after_s=0.2))
    assert not conv.fresh(0.0)
    q = np.array([0.0, 0.0, 0.0, -2.0])  # unnormalised, negative w: published normalised, canonical
    out = conv.on_sample(FrankaSample(1.0, np.array([0.5, 0, 0.3]), q, np.array([0, 0, -5.0, 0, 0, 0]), np.zeros(3)), now_s=100.0)
    assert np.allclose(out.quat, [0, 0, 0, 1]) and np.allclose(out.wrench, [0, 0, -5, 0, 0, 0])
    out = conv.on_sample(FrankaSample(1.01, np.array([0.501, 0, 0.3]), q, np.zeros(6), np.zeros(3)), now_s=100.01)
    assert np.allclose(out.twist, [0.1, 0, 0, 0, 0, 0])
    assert conv.fresh(100.2) and not conv.fresh(100.3)
    bad = conv.on_sample(FrankaSample(1.02, np.array([np.nan, 0, 0]), q, np.zeros(6), np.zeros(3)), now_s=100.02)
    assert bad is None and conv.rejected == 1 and "NaN" in conv.last_error
    assert conv.on_sample(FrankaSample(1.03, np.zeros(3), np.zeros(4), np.zeros(6), np.zeros(3)), 100.03) is None
    assert conv.rejected == 2 and "zero" in conv.last_error
    assert np.allclose(conv.latest.position, [0.501, 0, 0.3])  # the last good sample stays the newest


def test_robot_mode_problem():
    assert robot_mode_problem(None) == "" and robot_mode_problem(2) == "" and robot_mode_problem(1) == ""
    assert "reflex" in robot_mode_problem(4) and "user stopped" in robot_mode_problem(5)
