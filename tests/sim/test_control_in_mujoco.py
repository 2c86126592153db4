"""The hilserl_core control law running in MuJoCo: reference limiting, watchdog, bad commands."""


import mujoco
import numpy as np
import pytest

from hilserl_sim import model
from hilserl_sim.robot import ArmControlConfig
from hilserl_sim.sim import Simulator
from hilserl_sim.tasks import down_quat


def _sim_with_wall(config: ArmControlConfig, wall_x: float):
    """One arm and a rigid wall (fixed box) whose face is at base x = wall_x."""
    spec = model.build_scene_spec(n_arms=1)
    wall = spec.worldbody.add_geom()
    wall.type = mujoco.mjtGeom.mjGEOM_BOX
    wall.size = [0.05, 0.3, 0.3]
    wall.pos = [wall_x + 0.05, 0.0, 0.3]
    wall.contype, wall.conaffinity = 1, 3
    wall.solref = [0.002, 1.0]  # stiff: a "rigid" wall
    wall.friction = [0.0, 0.0, 0.0]
    wall.condim = 1
    wall.name = "wall"
    return Simulator(model.compile_scene(spec), ("arm",), arm_configs={"arm": config})


@pytest.mark.parametrize("limit_m", [0.01, 0.02])
def test_reference_limiting_bounds_wall_force_to_stiffness_times_limit(limit_m):
    k = 2000.0
    sim = _sim_with_wall(ArmControlConfig(translational_stiffness=k, reference_limit_m=limit_m), wall_x=0.6)
    try:
        arm = sim.arms["arm"]
        pos, quat = arm.tcp_pose()
        target = np.array([0.95, pos[1], pos[2]])  # 35 cm "inside" the wall: unlimited, 700 N
        forces = []
        for _ in range(15):
            arm.command_pose(target, quat, stamp_s=sim.time)
            sim.step()
            forces.append(arm.state().wrench[0])
        # At rest the robot pushes the wall (+x) with K * limit: O_F_ext_hat_K reads +x.
        f = np.mean(forces[-5:])
        assert f == pytest.approx(k * limit_m, rel=0.08), forces
        assert arm.state().position[0] > 0.55  # it reached the wall
    finally:
        sim.close()


def test_tracks_a_pose_in_free_space():
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",))
    try:
        arm = sim.arms["arm"]
        goal = np.array([0.5, 0.1, 0.3])
        goal_q = down_quat(0.3)
        for _ in range(20):
            arm.command_pose(goal, goal_q, stamp_s=sim.time)
            sim.step()
        st = arm.state()
        assert np.linalg.norm(st.position - goal) < 0.002
        assert abs(abs(np.dot(st.quat, goal_q)) - 1.0) < 1e-4
        assert np.linalg.norm(st.twist) < 0.01
    finally:
        sim.close()


def test_watchdog_zeroes_the_feedforward_wrench_after_the_timeout():
    cfg = ArmControlConfig(mode="wrench", wrench_timeout_s=0.2, max_force_n=30.0)
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",), arm_configs={"arm": cfg})
    try:
        arm = sim.arms["arm"]
        assert arm.command_wrench([0, 0, -20.0, 0, 0, 0], stamp_s=sim.time)
        sim.step(0.1)
        assert np.linalg.norm(arm.last_ff_wrench_base[:3]) == pytest.approx(20.0, rel=1e-6)
        z_pushed = arm.state().position[2]
        sim.step(0.15)  # 0.25 s after the command > 0.2 s timeout
        np.testing.assert_array_equal(arm.last_ff_wrench_base, np.zeros(6))
        assert arm.watchdog.is_stale(sim.time)
        # The arm moved up under -z_ee (= +z base) force, then the holding impedance takes over again.
        assert z_pushed > arm.target_pos[2] + 0.005
    finally:
        sim.close()


def test_a_wrench_stamped_in_the_future_is_refused_and_correct_ones_still_apply():
    cfg = ArmControlConfig(mode="wrench", wrench_timeout_s=0.2, max_force_n=30.0)
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",), arm_configs={"arm": cfg})
    try:
        arm = sim.arms["arm"]
        assert not arm.command_wrench([0, 0, -20.0, 0, 0, 0], stamp_s=sim.time + 60.0)  # a clock 60 s ahead
        assert "ahead of the controller clock" in arm.diagnostics()["last_reason"]
        sim.step(0.05)
        np.testing.assert_array_equal(arm.last_ff_wrench_base, np.zeros(6))
        assert arm.command_wrench([0, 0, -20.0, 0, 0, 0], stamp_s=sim.time)  # not locked out as "out of order"
        sim.step(0.05)
        assert np.linalg.norm(arm.last_ff_wrench_base[:3]) == pytest.approx(20.0, rel=1e-6)
    finally:
        sim.close()


def test_wrench_is_clamped_to_the_configured_norm():
    cfg = ArmControlConfig(mode="wrench", max_force_n=10.0, max_torque_nm=1.0)
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",), arm_configs={"arm": cfg})
    try:
        arm = sim.arms["arm"]
        assert arm.command_wrench([100.0, 0, 0, 0, 0, 50.0], stamp_s=sim.time)
        sim.step(0.002)
        assert np.linalg.norm(arm.last_ff_wrench_base[:3]) == pytest.approx(10.0)
        assert np.linalg.norm(arm.last_ff_wrench_base[3:]) == pytest.approx(1.0)
        assert "clamped" in arm.diagnostics()["last_reason"]
    finally:
        sim.close()


@pytest.mark.parametrize(
    "bad, reason",
    [
        (([np.nan, 0.0, 0.3], [1.0, 0, 0, 0]), "NaN/Inf"),
        (([0.5, 0.0, np.inf], [1.0, 0, 0, 0]), "NaN/Inf"),
        (([0.5, 0.0, 0.3], [0.0, 0, 0, 0]), "quaternion norm"),
        (([5.0, 0.0, 0.3], [1.0, 0, 0, 0]), "outside"),
        (([0.5, 0.0], [1.0, 0, 0, 0]), "malformed"),
    ],
)
def test_bad_pose_commands_hold_the_current_pose_with_a_reason(bad, reason):
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",))
    try:
        arm = sim.arms["arm"]
        start = arm.state().position
        assert arm.command_pose(*bad, stamp_s=sim.time) is False
        for _ in range(5):
            sim.step()
        d = arm.diagnostics()
        assert d["holding"] and reason in d["last_reason"]
        assert np.linalg.norm(arm.state().position - start) < 0.003
        assert np.all(np.isfinite(sim.data.qpos))
    finally:
        sim.close()


def test_stale_pose_command_holds_and_a_fresh_one_resumes():
    cfg = ArmControlConfig(pose_timeout_s=0.3)
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",), arm_configs={"arm": cfg})
    try:
        arm = sim.arms["arm"]
        p0, q0 = arm.tcp_pose()
        arm.command_pose(p0 + [0.0, 0.0, 0.3], q0, stamp_s=sim.time)
        sim.step()  # starts moving up (at most ~0.5 m/s: reference limiting)
        sim.step(0.25)  # no new command for > 0.3 s
        d = arm.diagnostics()
        assert d["holding"] and "stale" in d["last_reason"]
        held = arm.target_pos.copy()
        assert p0[2] + 0.02 < held[2] < p0[2] + 0.25  # it held where it was when the command went stale
        sim.step(0.3)
        assert arm.state().position[2] == pytest.approx(held[2], abs=0.01)  # and stays there
        # A command stamped in the past beyond the timeout is rejected as stale on arrival.
        assert not arm.command_pose(p0, q0, stamp_s=sim.time - 1.0)
        assert arm.command_pose(p0, q0, stamp_s=sim.time)
        assert not arm.diagnostics()["holding"]
    finally:
        sim.close()


def test_bad_wrench_and_gripper_commands_are_rejected_without_crashing():
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",),
                    arm_configs={"arm": ArmControlConfig(mode="wrench")})
    try:
        arm = sim.arms["arm"]
        assert not arm.command_wrench([np.nan, 0, 0, 0, 0, 0])
        assert "NaN/Inf" in arm.diagnostics()["last_reason"]
        assert not arm.command_wrench([1, 2, 3])
        assert not arm.command_gripper(float("nan"))
        assert not arm.command_gripper(0.5)
        assert "gripper" in arm.diagnostics()["last_reason"]
        sim.step()
        assert np.all(np.isfinite(sim.data.qpos))
        assert arm.command_gripper(0.02)
    finally:
        sim.close()


def test_wrench_mode_keeps_its_anchor_without_pose_commands():
    """The mux sends only target_wrench in wrench mode: no stale-pose hold, the wrench still acts."""
    cfg = ArmControlConfig(mode="wrench", pose_timeout_s=0.2, wrench_timeout_s=0.25)
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",), arm_configs={"arm": cfg})
    try:
        arm = sim.arms["arm"]
        sim.step(0.5)  # no pose command for longer than pose_timeout_s
        assert arm.command_wrench([10.0, 0, 0, 0, 0, 0], stamp_s=sim.time)
        sim.step(0.05)
        assert not arm.diagnostics()["holding"]
        assert np.linalg.norm(arm.last_ff_wrench_base[:3]) == pytest.approx(10.0)
    finally:
        sim.close()
