"""Defaults of the ros2_control controllers' parameters against the simulator and the Python law.

The plugins cannot be built here, but their parameters are declared once, in the
generate_parameter_library YAML next to the sources, and those defaults are what
the C++ controllers run with. The simulator (hilserl_sim.robot.ArmControlConfig)
is the reference for wrench mode: on the robot the WrenchController must hold the
arm the way the simulator does, or a policy trained in simulation meets a
different plant. hilserl_sim is only read here, never changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from hilserl_core.robot import control as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "hilserl_controllers" / "src"


def _defaults(controller: str, namespace: str) -> dict:
    schema = yaml.safe_load((SRC / f"{controller}_parameters.yaml").read_text(encoding="utf-8"))
    return {name: spec["default_value"] for name, spec in schema[namespace].items()}


WRENCH = _defaults("wrench_controller", "hilserl_wrench_controller")
IMPEDANCE = _defaults("cartesian_impedance_controller", "hilserl_cartesian_impedance_controller")


@pytest.fixture(scope="module")
def sim_config():
    robot = pytest.importorskip("hilserl_sim.robot", reason="hilserl_sim (MuJoCo) is not importable here")
    return robot.ArmControlConfig()


def _sim(config, name, fallback):
    """A simulator config default, or what the simulator hard-codes when it has no such field."""
    return getattr(config, name) if hasattr(config, name) else fallback


def test_wrench_controller_defaults_are_the_simulators_wrench_mode(sim_config):
    c = sim_config
    expected = {
        # Holding impedance toward the anchor (ArmControlConfig.wrench_*, via control.impedance_wrench).
        "translational_stiffness_n_per_m": [c.wrench_translational_stiffness] * 3,
        "rotational_stiffness_nm_per_rad": [c.wrench_rotational_stiffness] * 3,
        "translational_damping_ratio": c.wrench_damping_ratio,
        "rotational_damping_ratio": c.wrench_damping_ratio,
        "reference_limit_m": c.wrench_reference_limit_m,
        "reference_limit_rad": c.wrench_reference_limit_rad,
        # Feed-forward clamps and watchdog (control.WrenchParams built from the config).
        "max_force_n": c.max_force_n,
        "max_torque_nm": c.max_torque_nm,
        "watchdog_timeout_s": c.wrench_timeout_s,
        # The simulator leaves the future-stamp tolerance at the law's default.
        "max_future_stamp_s": _sim(c, "max_future_stamp_s", C.WrenchParams().max_future_stamp_s),
        # Nullspace posture: stiffness from the config; damping hard-coded as 2 sqrt(K) (ratio 1).
        "nullspace_stiffness_nm_per_rad": c.nullspace_stiffness,
        "nullspace_damping_ratio": _sim(c, "nullspace_damping_ratio", 1.0),
        "nullspace_pinv_damping": c.nullspace_pinv_damping,
    }
    got = {k: WRENCH[k] for k in expected}
    assert got == expected, "WrenchController defaults differ from the simulator's wrench mode"


def test_wrench_mode_defaults_match_the_wrench_mode_golden_params(sim_config):
    """The law the C++ controller applies with these defaults is the one the golden file pins (wrench_mode_* cases)."""
    c = sim_config
    golden = C.load_golden()
    case = next(x for x in golden["cases"] if x["name"] == "wrench_mode_zero_feedforward_holds_anchor")
    p = case["inputs"]["params"]
    k_t, k_r = c.wrench_translational_stiffness, c.wrench_rotational_stiffness
    assert p["translational_stiffness_n_per_m"] == [k_t] * 3 and p["rotational_stiffness_nm_per_rad"] == [k_r] * 3
    assert p["translational_damping_ns_per_m"] == pytest.approx([2 * c.wrench_damping_ratio * k_t**0.5] * 3, abs=1e-12)
    assert p["rotational_damping_nms_per_rad"] == pytest.approx([2 * c.wrench_damping_ratio * k_r**0.5] * 3, abs=1e-12)
    assert (p["reference_limit_m"], p["reference_limit_rad"]) == (c.wrench_reference_limit_m, c.wrench_reference_limit_rad)


def test_impedance_controller_defaults_are_the_simulators_pose_mode(sim_config):
    c = sim_config
    expected = {
        "translational_stiffness_n_per_m": [c.translational_stiffness] * 3,
        "rotational_stiffness_nm_per_rad": [c.rotational_stiffness] * 3,
        "translational_damping_ratio": c.damping_ratio,
        "rotational_damping_ratio": c.damping_ratio,
        "reference_limit_m": c.reference_limit_m,
        "reference_limit_rad": c.reference_limit_rad,
        "nullspace_stiffness_nm_per_rad": c.nullspace_stiffness,
        "nullspace_pinv_damping": c.nullspace_pinv_damping,
    }
    assert {k: IMPEDANCE[k] for k in expected} == expected


def test_both_controllers_share_the_joint_space_terms():
    """Same nullspace posture term, Coriolis, torque-rate limit and missed-tick budget in both modes."""
    shared = [
        "nullspace_stiffness_nm_per_rad",
        "nullspace_damping_ratio",
        "nullspace_pinv_damping",
        "compensate_coriolis",
        "max_torque_rate_nm_per_s",
        "max_consecutive_missed_ticks",
    ]
    assert {k: WRENCH[k] for k in shared} == {k: IMPEDANCE[k] for k in shared}
    assert WRENCH["max_consecutive_missed_ticks"] == 10  # 10 ms at 1 kHz


def test_wrench_limits_defaults_are_the_python_laws():
    """control_law.hpp's WrenchParams defaults are control.py's (control_law_test checks the C++ side)."""
    law = C.WrenchParams()
    assert (WRENCH["max_force_n"], WRENCH["max_torque_nm"], WRENCH["watchdog_timeout_s"], WRENCH["max_future_stamp_s"]) == (
        law.max_force_n,
        law.max_torque_nm,
        law.watchdog_timeout_s,
        law.max_future_stamp_s,
    )
    header = (ROOT / "src" / "hilserl_controllers" / "include" / "hilserl_controllers" / "control_law.hpp").read_text()
    assert f"double max_future_stamp_s = {law.max_future_stamp_s};" in header
