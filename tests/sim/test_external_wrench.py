"""external_wrench is franka's O_F_ext_hat_K: the wrench the robot exerts on the environment,
at the TCP, base axes ("forces applied by the robot to the environment are positive, while
forces applied by the environment on the robot are negative", libfranka robot_state.h).
Contacts on every body rigidly attached to the hand count."""

import math

import mujoco
import numpy as np
import pytest

from hilserl_sim import model
from hilserl_sim.env import ArmAction, TaskEnv
from hilserl_sim.robot import ArmControlConfig
from hilserl_sim.sim import Simulator

K = 2000.0
LIMIT_M = 0.02
TOOL_MASS_KG = 0.05
G = 9.81


def _tool_geom(body):
    g = body.add_geom()
    g.type = mujoco.mjtGeom.mjGEOM_BOX
    g.size = [0.04, 0.04, 0.02]
    g.mass = TOOL_MASS_KG
    g.contype, g.conaffinity = 2, 1  # touches the scene like the hand's own collision geoms
    return g


def _pressing_sim(attach: str) -> Simulator:
    """One arm over the table (top at z = 0), no posture stiffness (so the impedance force is
    all the arm applies), holding nothing, a tool welded as a joint-less child of the hand, or
    a free tool held by a weld equality, 3 cm below the TCP."""
    spec = model.build_scene_spec(n_arms=1)
    if attach == "child":
        tool = spec.body("arm/hand").add_body()
        tool.name = "tool"
        tool.pos = [0.0, 0.0, 0.1034 + 0.03]  # hand z points down; TCP at 0.1034
        _tool_geom(tool)
    elif attach == "weld":
        probe = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",))
        tcp = probe.data.site_xpos[probe.arms["arm"].site].copy()
        probe.close()
        tool = spec.worldbody.add_body()
        tool.name = "tool"
        tool.pos = list(tcp - [0.0, 0.0, 0.03])
        tool.add_freejoint()
        _tool_geom(tool)
        eq = spec.add_equality()
        eq.type, eq.objtype = mujoco.mjtEq.mjEQ_WELD, mujoco.mjtObj.mjOBJ_BODY
        eq.name1, eq.name2 = "tool", "arm/hand"
        eq.solref = [0.005, 1.0]
    cfg = ArmControlConfig(translational_stiffness=K, reference_limit_m=LIMIT_M, nullspace_stiffness=0.0)
    return Simulator(model.compile_scene(spec), ("arm",), arm_configs={"arm": cfg})


@pytest.mark.parametrize("attach", ["fingers", "child", "weld"])
def test_pressing_down_on_the_table_reads_negative_fz(attach):
    sim = _pressing_sim(attach)
    try:
        arm = sim.arms["arm"]
        arm.command_gripper(0.0)
        _, quat = arm.tcp_pose()
        for _ in range(40):  # target 5 cm below the TCP, reference-limited to 2 cm: K * limit = 40 N down
            pos, _ = arm.tcp_pose()
            arm.command_pose(pos + [0.0, 0.0, -0.05], quat, stamp_s=sim.time)
            sim.step()
        st = arm.state()
        assert st.position[2] < 0.06, st.position  # it reached the table (with whatever it holds)
        # The robot pushes the table down with K * limit (+ a free welded tool's weight): f_z < 0.
        extra = TOOL_MASS_KG * G if attach == "weld" else 0.0
        assert st.wrench[2] == pytest.approx(-(K * LIMIT_M + extra), rel=0.04), st.wrench
        assert np.linalg.norm(st.wrench[:2]) < 0.05 * K * LIMIT_M
        if attach != "fingers":
            assert sim.model.body("tool").id in arm.hand_bodies
        if attach == "weld":  # released: the tool's contacts are no longer the hand's
            sim.data.eq_active[0] = 0
            assert sim.model.body("tool").id not in arm.hand_bodies
    finally:
        sim.close()


def test_load_resting_in_the_welded_pan_reads_its_weight_up_and_its_moment():
    """pan_flip: the cake lies in the pan welded to the hand; the hand holds it up (+z) at the
    cake's lever arm from the TCP (torque r x f, the robot's wrench on the cake)."""
    env = TaskEnv("pan_flip", seed=0, cameras=())
    try:
        env.reset(3)
        name = env.arm_names[0]
        arm = env.sim.arms[name]
        for _ in range(5):
            env.step({name: ArmAction()}, render=False)
        m, d = env.sim.model, env.sim.data
        assert m.body("pan").id in arm.hand_bodies
        cake = m.body("cake").id
        mg = float(m.body_subtreemass[cake]) * G
        st = arm.state()
        assert np.linalg.norm(d.cvel[cake]) < 0.05  # at rest in the pan
        np.testing.assert_allclose(st.wrench[:3], [0.0, 0.0, mg], atol=0.03 * mg)
        r = arm.R_wb.T @ (d.xipos[cake] - d.site_xpos[arm.site])  # TCP -> cake centre of mass, base axes
        assert math.hypot(r[0], r[1]) > 0.005  # off-centre, so the moment is not trivially zero
        np.testing.assert_allclose(st.wrench[3:], np.cross(r, [0.0, 0.0, mg]), atol=0.05 * mg * 0.05)
    finally:
        env.close()


def test_pan_pressed_on_the_table_reads_negative_fz():
    env = TaskEnv("pan_flip", seed=0, cameras=())
    try:
        env.reset(3)
        name = env.arm_names[0]
        arm = env.sim.arms[name]
        m, d = env.sim.model, env.sim.data
        pan, table = m.body("pan").id, m.geom("table").id
        for _ in range(25):  # feed-forward force straight down (base -z), in EE axes
            R = env.sim.data.site_xmat[arm.site].reshape(3, 3)
            f_ee = (arm.R_wb.T @ R).T @ np.array([0.0, 0.0, -1.0])
            env.step({name: ArmAction(twist=np.concatenate([f_ee, np.zeros(3)]))}, render=False)
        touching = [i for i in range(d.ncon)
                    if {int(m.geom_bodyid[d.contact[i].geom1]), int(m.geom_bodyid[d.contact[i].geom2])} == {pan, 0}
                    and table in (d.contact[i].geom1, d.contact[i].geom2)]
        assert touching, "the pan does not touch the table"
        table_on_pan = np.zeros(3)
        f6 = np.zeros(6)
        for i in touching:  # force of the table on the pan, world axes
            mujoco.mj_contactForce(m, d, i, f6)
            f = d.contact[i].frame.reshape(3, 3).T @ f6[:3]  # geom1 on geom2
            table_on_pan += f if d.contact[i].geom1 == table else -f
        fz = arm.state().wrench[2]
        assert table_on_pan[2] > 5.0
        assert fz < -5.0 and fz <= -0.9 * table_on_pan[2], (fz, table_on_pan)
    finally:
        env.close()
