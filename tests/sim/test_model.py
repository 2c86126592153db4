"""hilserl_sim models: Franka kinematics from the DH table, assets, scenes, cameras."""

import math

import mujoco
import numpy as np
import pytest

from hilserl_core.robot import frames
from hilserl_sim import model
from hilserl_sim.sim import Simulator

# Franka's published modified-DH table (a, d, alpha) and the flange/TCP offsets.
DH = [(0.0, 0.333, 0.0), (0.0, 0.0, -math.pi / 2), (0.0, 0.316, math.pi / 2), (0.0825, 0.0, math.pi / 2),
      (-0.0825, 0.384, -math.pi / 2), (0.0, 0.0, math.pi / 2), (0.088, 0.0, math.pi / 2)]


def _craig(a, d, alpha, theta):
    ca, sa, ct, st = math.cos(alpha), math.sin(alpha), math.cos(theta), math.sin(theta)
    return np.array([[ct, -st, 0, a], [st * ca, ct * ca, -sa, -d * sa], [st * sa, ct * sa, ca, d * ca], [0, 0, 0, 1]])


def dh_tcp(q):
    T = np.eye(4)
    for (a, d, alpha), th in zip(DH, q):
        T = T @ _craig(a, d, alpha, th)
    T = T @ _craig(0, 0.107, 0, 0)  # flange
    T = T @ _craig(0, 0, 0, -math.pi / 4)  # hand rotated -45 deg about z
    T = T @ _craig(0, 0.1034, 0, 0)  # TCP
    return T


@pytest.fixture(scope="module")
def single():
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), model.DEFAULT_ARMS[1])
    yield sim
    sim.close()


def test_tcp_matches_franka_dh_table(single):
    rng = np.random.default_rng(0)
    arm = single.arms["arm"]
    lo, hi = single.model.jnt_range[:7].T
    for _ in range(20):
        q = rng.uniform(lo, hi)
        single.data.qpos[arm.qadr] = q
        mujoco.mj_kinematics(single.model, single.data)
        pos, quat = arm.tcp_pose()
        T = dh_tcp(q)
        np.testing.assert_allclose(pos, T[:3, 3], atol=1e-9)
        np.testing.assert_allclose(frames.quat_to_matrix(quat), T[:3, :3], atol=1e-7)


def test_joint_limits_and_torque_limits_are_franka_datasheet(single):
    m = single.model
    np.testing.assert_allclose(m.jnt_range[3], [-3.0718, -0.0698])
    np.testing.assert_allclose(m.jnt_range[5], [-0.0175, 3.7525])
    np.testing.assert_allclose(single.arms["arm"].tau_limit, [87, 87, 87, 87, 12, 12, 12])
    assert 15.0 < m.body_subtreemass[m.body("arm/link0").id] < 20.0  # Panda + hand is about 18 kg


def test_quaternion_boundary_round_trip_matches_mujoco():
    rng = np.random.default_rng(1)
    for _ in range(10):
        q = frames.quat_normalize(rng.normal(size=4))
        R_mj = np.empty(9)
        mujoco.mju_quat2Mat(R_mj, model.quat_mj_from_xyzw(q))
        np.testing.assert_allclose(R_mj.reshape(3, 3), frames.quat_to_matrix(q), atol=1e-12)
        np.testing.assert_allclose(model.quat_xyzw_from_mj(model.quat_mj_from_xyzw(q)), q)


def test_missing_asset_error_names_the_path():
    with pytest.raises(model.MissingAssetError) as err:
        model.asset_path("no_such_robot.xml")
    assert "no_such_robot.xml" in str(err.value) and "assets" in str(err.value)


def test_dual_scene_arms_face_each_other():
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=2)), model.DEFAULT_ARMS[2])
    try:
        left, right = sim.arms["left"], sim.arms["right"]
        # Same joint angles -> same TCP pose in each arm's own base frame ...
        np.testing.assert_allclose(left.tcp_pose()[0], right.tcp_pose()[0], atol=1e-9)
        # ... and mirrored in the world: the right base is 1 m away, turned 180 deg.
        np.testing.assert_allclose(right.p_wb, [1.0, 0.0, 0.0], atol=1e-9)
        np.testing.assert_allclose(right.R_wb[:2, 0], [-1.0, 0.0], atol=1e-6)
        assert set(sim.camera_names()) == {"left/wrist", "left/front", "right/wrist", "right/front"}
    finally:
        sim.close()


def test_cameras_render_requested_views_only(single):
    imgs = single.render(["arm/wrist"])
    assert list(imgs) == ["arm/wrist"]
    img = imgs["arm/wrist"]
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and img.std() > 5
    front = single.render(["arm/front"])["arm/front"]
    assert not np.array_equal(front, img)
    with pytest.raises(KeyError, match="valid"):
        single.render(["arm/elbow"])
