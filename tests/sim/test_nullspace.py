"""The sim's nullspace posture torque is the C++ controller's (law::nullspace_torque):
tau0 = K_ns (q_posture - q) - D_ns dq projected by N = I - J^T (J J^T + lambda^2 I)^-1 J,
with the same default damping lambda (nullspace_pinv_damping)."""

import dataclasses
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from hilserl_sim import model
from hilserl_sim.robot import ArmControlConfig
from hilserl_sim.sim import Simulator

CPP_PARAMS = Path(__file__).resolve().parents[2] / "src" / "hilserl_controllers" / "src" / "cartesian_impedance_controller_parameters.yaml"


def _field(name):
    return next(f for f in dataclasses.fields(ArmControlConfig) if f.name == name)


def test_pinv_damping_default_and_range_are_the_cpp_controllers():
    spec = yaml.safe_load(CPP_PARAMS.read_text())["hilserl_cartesian_impedance_controller"]["nullspace_pinv_damping"]
    f = _field("nullspace_pinv_damping")
    assert f.default == pytest.approx(spec["default_value"])
    assert [f.metadata["low"], f.metadata["high"]] == pytest.approx(spec["validation"]["bounds<>"])
    assert f.metadata["description"]


def test_posture_stiffness_and_damping_defaults_are_the_cpp_controllers():
    k = yaml.safe_load(CPP_PARAMS.read_text())["hilserl_cartesian_impedance_controller"]
    assert _field("nullspace_stiffness").default == pytest.approx(k["nullspace_stiffness_nm_per_rad"]["default_value"])
    # the sim damps the posture with D = 2 sqrt(K), i.e. the C++ nullspace_damping_ratio at its default
    assert k["nullspace_damping_ratio"]["default_value"] == pytest.approx(1.0)


def _damped_pinv(A, lam):
    """franka_example_controllers' pseudoInverse(A, damped=true): V diag(s / (s^2 + lambda^2)) U^T."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    return Vt.T @ np.diag(s / (s**2 + lam**2)) @ U.T


@pytest.mark.parametrize("lam", [None, 0.05])
def test_arm_torque_is_the_damped_svd_nullspace_projection(lam):
    """At rest on target (no Cartesian wrench), with a posture 0.3 rad away, the joint torques the
    arm commands are N tau0 + bias, N = I - J^T pinv_damped(J^T) computed by SVD; by default
    with the C++ controller's lambda."""
    if lam is None:
        cfg = ArmControlConfig()
        lam = yaml.safe_load(CPP_PARAMS.read_text())["hilserl_cartesian_impedance_controller"]["nullspace_pinv_damping"]["default_value"]
    else:
        cfg = ArmControlConfig(nullspace_pinv_damping=lam)
    sim = Simulator(model.compile_scene(model.build_scene_spec(n_arms=1)), ("arm",), arm_configs={"arm": cfg})
    try:
        arm, d = sim.arms["arm"], sim.data
        arm.q_null = d.qpos[arm.q_sl] + 0.3 * np.array([1, -1, 1, 1, -1, 1, 1])
        mujoco.mj_forward(sim.model, d)
        arm.compute_torques()
        J = arm.jacobian()
        tau0 = cfg.nullspace_stiffness * (arm.q_null - d.qpos[arm.q_sl])  # qd = 0
        N = np.eye(7) - J.T @ _damped_pinv(J.T, lam)
        expected = N @ tau0 + d.qfrc_bias[arm.d_sl]
        np.testing.assert_allclose(d.ctrl[arm.a_sl], expected, atol=1e-9)
    finally:
        sim.close()
