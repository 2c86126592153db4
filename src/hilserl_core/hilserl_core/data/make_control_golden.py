"""Regenerate control_golden.json from hilserl_core.robot.control (run after a deliberate change of the law).

    python -m hilserl_core.data.make_control_golden        # rewrites the file next to this script

The hand-checkable cases are also asserted with explicit numbers in
tests/core/test_control.py, so a wrong law cannot silently become golden.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hilserl_core.robot import control as C
from hilserl_core.robot import frames as F

SEED = 20250101
ATOL = 1e-9

SCHEMA = {
    "description": (
        "Golden vectors of the HIL-SERL control laws (hilserl_core/robot/control.py). Every implementation "
        "(Python simulator, C++ ros2_control controllers) must reproduce 'expected' from 'inputs' for every case."
    ),
    "conventions": (
        "Base-frame TCP poses. Positions in m; quaternions [x, y, z, w], unit norm; expected quaternions have the "
        "canonical sign (w > 0). Twists [vx, vy, vz, wx, wy, wz] (m/s, rad/s); wrenches [fx, fy, fz, tx, ty, tz] (N, N m)."
    ),
    "numbers": "Non-finite inputs are the strings \"NaN\", \"Infinity\", \"-Infinity\"; all other numbers are JSON numbers.",
    "comparison": (
        "Pass when every expected number matches within the top-level 'atol' (absolute). Quaternions ('quat' fields) "
        "compare up to sign (q and -q are one rotation): near w = 0, e.g. a gripper pointing straight down, rounding "
        "can flip the canonical sign."
    ),
    "top_level": {"schema": "this description", "atol": "float", "seed": "int used for the random cases", "cases": "list of case"},
    "case": {
        "name": "unique string",
        "function": (
            "one of limit_reference, impedance_wrench, clamp_wrench, wrench_watchdog, wrench_mode_wrench, "
            "integrate_twist_target"
        ),
        "description": "string (hand-checkable cases say why the answer is what it is)",
        "inputs": "object, per function below",
        "expected": "object, per function below",
    },
    "functions": {
        "limit_reference": {
            "inputs": "target_pos[3], target_quat[4], measured_pos[3], measured_quat[4], limit_m, limit_rad",
            "expected": "pos[3], quat[4]",
        },
        "impedance_wrench": {
            "inputs": (
                "target_pos[3], target_quat[4], measured_pos[3], measured_quat[4], measured_twist_base[6], params: "
                "{translational_stiffness_n_per_m[3], rotational_stiffness_nm_per_rad[3], translational_damping_ns_per_m[3], "
                "rotational_damping_nms_per_rad[3], reference_limit_m, reference_limit_rad}"
            ),
            "expected": "wrench[6] in base axes at the TCP (reference limiting applied first)",
        },
        "clamp_wrench": {
            "inputs": "wrench[6], params: {max_force_n, max_torque_nm, watchdog_timeout_s, max_future_stamp_s}",
            "expected": "wrench[6]",
        },
        "wrench_watchdog": {
            "inputs": (
                "params: {max_force_n, max_torque_nm, watchdog_timeout_s, max_future_stamp_s}; events: list of "
                "{op: 'command', wrench[6], stamp_s, now_s (optional: absent = offered without a clock, "
                "no future_stamp check)} or {op: 'output', now_s}, applied in order to one fresh watchdog"
            ),
            "expected": (
                "results: one per event; for 'command' {accepted: bool, reason: '' or one of malformed, "
                "non_finite_wrench, non_finite_stamp, future_stamp, out_of_order_stamp}; for 'output' {wrench[6]}"
            ),
        },
        "wrench_mode_wrench": {
            "inputs": (
                "anchor_pos[3], anchor_quat[4], measured_pos[3], measured_quat[4], measured_twist_base[6], "
                "wrench_ee[6] (feed-forward, current EE axes, at the TCP), params: as impedance_wrench"
            ),
            "expected": (
                "wrench[6] in base axes at the TCP: impedance_wrench toward the anchor + the feed-forward wrench "
                "rotated to base axes; or error: 'non_finite' when an input has NaN/Inf"
            ),
        },
        "integrate_twist_target": {
            "inputs": (
                "measured_pos[3], measured_quat[4], action[6] (normalised twist in the current EE frame), linear_step_m, "
                "angular_step_rad, box: null or {min_position_m[3], max_position_m[3], orientation_reference_quat[4] or null, "
                "orientation_limit_rad[3] or null}"
            ),
            "expected": "pos[3], quat[4]; or error: 'non_finite' when the command must be rejected",
        },
    },
}


def enc(x):
    """JSON-safe list/number with non-finite numbers as strings."""
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        v = float(a)
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    return [enc(v) for v in a]


def rot(axis, angle):
    axis = np.asarray(axis, float)
    return F.rotvec_to_quat(axis / np.linalg.norm(axis) * angle)


def imp_params_json(p: C.ImpedanceParams):
    return {
        "translational_stiffness_n_per_m": enc(p.translational_stiffness_n_per_m),
        "rotational_stiffness_nm_per_rad": enc(p.rotational_stiffness_nm_per_rad),
        "translational_damping_ns_per_m": enc(p.translational_damping_ns_per_m),
        "rotational_damping_nms_per_rad": enc(p.rotational_damping_nms_per_rad),
        "reference_limit_m": p.reference_limit_m,
        "reference_limit_rad": p.reference_limit_rad,
    }


def wrench_params_json(p: C.WrenchParams):
    return {
        "max_force_n": p.max_force_n,
        "max_torque_nm": p.max_torque_nm,
        "watchdog_timeout_s": p.watchdog_timeout_s,
        "max_future_stamp_s": p.max_future_stamp_s,
    }


def build():
    rng = np.random.default_rng(SEED)
    cases = []
    I = np.array([0.0, 0, 0, 1])
    down = rot([1, 0, 0], math.pi)  # gripper pointing down: EE z = base -z

    def rand_quat():
        q = rng.normal(size=4)
        return F.quat_normalize(q)

    # ---- limit_reference
    def lr(name, desc, tp, tq, mp, mq, lm, lrad):
        pos, quat = C.limit_reference(tp, tq, mp, mq, lm, lrad)
        cases.append({"name": name, "function": "limit_reference", "description": desc,
                      "inputs": {"target_pos": enc(tp), "target_quat": enc(tq), "measured_pos": enc(mp),
                                 "measured_quat": enc(mq), "limit_m": lm, "limit_rad": lrad},
                      "expected": {"pos": enc(pos), "quat": enc(quat)}})

    lr("limit_translation_inside", "1 cm error, 2 cm limit: target unchanged", [0.51, 0, 0.3], I, [0.5, 0, 0.3], I, 0.02, 0.1)
    lr("limit_translation_clipped", "(0.3, 0, 0.4) m error (norm 0.5) clipped to 0.02 along it: (0.012, 0, 0.016)",
       [0.8, 0, 0.7], I, [0.5, 0, 0.3], I, 0.02, 0.1)
    lr("limit_rotation_90deg_z_clipped", "90 deg about z clipped to 0.1 rad: quat [0, 0, sin 0.05, cos 0.05]",
       [0, 0, 0], rot([0, 0, 1], math.pi / 2), [0, 0, 0], I, 0.02, 0.1)
    lr("limit_rotation_90deg_x_from_down_clipped", "gripper down, target 90 deg more about base x: 0.1 rad about base x",
       [0.4, 0.1, 0.2], F.quat_multiply(rot([1, 0, 0], math.pi / 2), down), [0.4, 0.1, 0.2], down, 0.02, 0.1)
    lr("limit_both_clipped", "5 cm along -y and 0.5 rad about y, limits 1 cm / 0.2 rad",
       [0.5, -0.05, 0.3], rot([0, 1, 0], 0.5), [0.5, 0, 0.3], I, 0.01, 0.2)
    lr("limit_rotation_inside_negative_sign", "0.05 rad inside 0.1 rad limit, target given as -q: returned canonical",
       [0, 0, 0], -rot([0, 1, 1], 0.05), [0, 0, 0], I, 0.02, 0.1)
    for i in range(5):
        lr(f"limit_random_{i}", "random", rng.uniform(-1, 1, 3), rand_quat(), rng.uniform(-1, 1, 3), rand_quat(),
           float(rng.uniform(0.005, 0.1)), float(rng.uniform(0.05, 0.5)))

    # ---- impedance_wrench
    def iw(name, desc, tp, tq, mp, mq, tw, params):
        wr = C.impedance_wrench(tp, tq, mp, mq, tw, params)
        cases.append({"name": name, "function": "impedance_wrench", "description": desc,
                      "inputs": {"target_pos": enc(tp), "target_quat": enc(tq), "measured_pos": enc(mp),
                                 "measured_quat": enc(mq), "measured_twist_base": enc(tw), "params": imp_params_json(params)},
                      "expected": {"wrench": enc(wr)}})

    z6 = np.zeros(6)
    p1 = C.ImpedanceParams(1000.0, 100.0, 0.02, 0.1)
    iw("impedance_translation_inside", "1 cm along x, K 1000 N/m, at rest: F = (10, 0, 0) N",
       [0.51, 0, 0.3], I, [0.5, 0, 0.3], I, z6, p1)
    iw("impedance_translation_far_clipped", "target 1 m away along z, limit 2 cm, K 2000: F = (0, 0, 40) N",
       [0.5, 0, 1.3], I, [0.5, 0, 0.3], I, z6, C.ImpedanceParams(2000.0, 100.0, 0.02, 0.1))
    iw("impedance_rotation_90deg_clipped", "90 deg about z, limit 0.1 rad, Kr 100: torque z = 10 N m",
       [0, 0, 0], rot([0, 0, 1], math.pi / 2), [0, 0, 0], I, z6, p1)
    iw("impedance_damping_only", "at target, twist (0.1, 0, 0, 0, 0, 0.2), K 400/25 -> D 40/10: F = (-4, 0, 0, 0, 0, -2)",
       [0.5, 0, 0.3], down, [0.5, 0, 0.3], down, [0.1, 0, 0, 0, 0, 0.2], C.ImpedanceParams(400.0, 25.0, 0.02, 0.1))
    iw("impedance_anisotropic", "errors (1 cm, 1 cm, 1 cm) with K (1000, 2000, 500): F = (10, 20, 5) N",
       [0.51, 0.01, 0.31], down, [0.5, 0, 0.3], down, z6,
       C.ImpedanceParams([1000.0, 2000.0, 500.0], [50.0, 60.0, 70.0], 0.05, 0.1, [10.0, 10.0, 10.0], [1.0, 1.0, 1.0]))
    for i in range(5):
        params = C.ImpedanceParams(rng.uniform(100, 3000, 3), rng.uniform(10, 300, 3), float(rng.uniform(0.005, 0.05)),
                                   float(rng.uniform(0.05, 0.5)))
        iw(f"impedance_random_{i}", "random", rng.uniform(-1, 1, 3), rand_quat(), rng.uniform(-1, 1, 3), rand_quat(),
           rng.normal(0, 0.3, 6), params)

    # ---- clamp_wrench
    wp = C.WrenchParams(30.0, 5.0, 0.25)

    def cw(name, desc, w, params=wp):
        cases.append({"name": name, "function": "clamp_wrench", "description": desc,
                      "inputs": {"wrench": enc(w), "params": wrench_params_json(params)},
                      "expected": {"wrench": enc(C.clamp_wrench(w, params))}})

    cw("clamp_inside", "inside both limits: unchanged", [10, -5, 3, 1, 0, -2])
    cw("clamp_force", "force (30, 0, 40) N (norm 50) to 30 N: (18, 0, 24), torque untouched", [30, 0, 40, 1, 1, 1])
    cw("clamp_torque", "torque (0, 6, 8) N m (norm 10) to 5: (0, 3, 4)", [1, 2, 3, 0, 6, 8])
    cw("clamp_both", "force and torque clamped independently", [-100, 100, 0, 0, 0, -20])
    cw("clamp_zero_limits", "zero limits give a zero wrench", [1, 2, 3, 4, 5, 6], C.WrenchParams(0.0, 0.0, 0.1))
    for i in range(3):
        cw(f"clamp_random_{i}", "random", rng.normal(0, 30, 6))

    # ---- wrench_watchdog
    def wd(name, desc, events, params=wp):
        dog = C.WrenchWatchdog(params)
        results, ev_json = [], []
        for ev in events:
            if ev[0] == "command":  # ("command", wrench, stamp_s) without a clock, or (..., now_s)
                now = ev[3] if len(ev) > 3 else None
                ok = dog.command(ev[1], ev[2], now)
                results.append({"accepted": ok, "reason": "" if ok else dog.last_rejection_code})
                ev_json.append({"op": "command", "wrench": enc(ev[1]), "stamp_s": enc(ev[2])})
                if now is not None:
                    ev_json[-1]["now_s"] = enc(now)
            else:
                results.append({"wrench": enc(dog.output(ev[1]))})
                ev_json.append({"op": "output", "now_s": enc(ev[1])})
        cases.append({"name": name, "function": "wrench_watchdog", "description": desc,
                      "inputs": {"params": wrench_params_json(params), "events": ev_json},
                      "expected": {"results": results}})

    w1 = [1.0, 2.0, 3.0, 0.1, 0.2, 0.3]
    wd("watchdog_timeout", "zero before any command; held while age <= 0.25 s (inclusive); zero after",
       [("output", 0.0), ("command", w1, 1.0), ("output", 1.0), ("output", 1.1), ("output", 1.25), ("output", 1.2501)])
    wd("watchdog_nan_rejected", "NaN command rejected and output zeroed at once; the next valid command is used",
       [("command", w1, 0.0), ("output", 0.05), ("command", [np.nan, 0, 0, 0, 0, 0], 0.06), ("output", 0.07),
        ("command", [0, 0, 5, 0, 0, 0], 0.08), ("output", 0.09)])
    wd("watchdog_inf_and_bad_stamp", "Inf wrench and Inf stamp rejected",
       [("command", [0, 0, np.inf, 0, 0, 0], 0.0), ("command", w1, np.inf), ("output", 0.0)])
    wd("watchdog_clamps", "commands are clamped on the way in: force (60, 0, 80) -> (18, 0, 24)",
       [("command", [60, 0, 80, 0, 0, 0], 0.0), ("output", 0.1)])
    wd("watchdog_out_of_order", "a command older than the last accepted one is rejected (fail-safe zero)",
       [("command", w1, 2.0), ("command", [5, 5, 5, 0, 0, 0], 1.9), ("output", 2.0), ("command", [0, 1, 0, 0, 0, 0], 2.0),
        ("output", 2.1)])
    wd("watchdog_future_stamp_rejected",
       "30 N stamped 60 s ahead of the controller clock (max_future_stamp_s 0.05) is rejected and never applied; "
       "a command 0.02 s ahead is accepted; correctly stamped follow-ups are not refused as out of order",
       [("command", [30, 0, 0, 0, 0, 0], 160.0, 100.0), ("output", 100.0), ("command", [10, 0, 0, 0, 0, 0], 100.02, 100.0),
        ("output", 100.0), ("output", 100.2), ("command", [0, 5, 0, 0, 0, 0], 100.3, 100.3), ("output", 100.3),
        ("output", 159.0)])
    wd("watchdog_future_stamp_tolerance_inclusive",
       "max_future_stamp_s 0.0625: exactly 0.0625 s ahead is accepted, 0.125 s ahead is rejected (fail-safe zero)",
       [("command", w1, 2.0625, 2.0), ("output", 2.0), ("command", w1, 2.125, 2.0), ("output", 2.0)],
       C.WrenchParams(30.0, 5.0, 0.25, 0.0625))
    wd("watchdog_future_stamp_zero_tolerance",
       "max_future_stamp_s 0: a stamp equal to now is accepted, one 0.25 s ahead is rejected",
       [("command", w1, 1.0, 1.0), ("output", 1.0), ("command", w1, 1.5, 1.25), ("output", 1.25)],
       C.WrenchParams(30.0, 5.0, 0.25, 0.0))
    wd("watchdog_future_stamp_non_finite_clock", "a NaN or Inf controller clock vouches for no stamp: rejected",
       [("command", w1, 1.0, np.nan), ("command", w1, 1.0, np.inf), ("command", w1, 1.0, -np.inf), ("output", 1.0)])
    wd("watchdog_output_never_applies_future_stamp",
       "offered without a clock (no future_stamp check), a command stamped 5 s ahead is held but output only "
       "once now is within max_future_stamp_s (0.05) of its stamp",
       [("command", w1, 10.0), ("output", 5.0), ("output", 9.9), ("output", 9.96), ("output", 10.1), ("output", 10.3)])

    # ---- integrate_twist_target
    def it(name, desc, mp, mq, a, ls, angs, box):
        inputs = {"measured_pos": enc(mp), "measured_quat": enc(mq), "action": enc(a), "linear_step_m": ls,
                  "angular_step_rad": angs, "box": None if box is None else {
                      "min_position_m": enc(box.min_position_m), "max_position_m": enc(box.max_position_m),
                      "orientation_reference_quat": None if box.orientation_reference_quat is None else enc(box.orientation_reference_quat),
                      "orientation_limit_rad": None if box.orientation_limit_rad is None else enc(box.orientation_limit_rad)}}
        try:
            pos, quat = C.integrate_twist_target(mp, mq, a, ls, angs, box)
            expected = {"pos": enc(pos), "quat": enc(quat)}
        except C.NonFiniteCommandError:
            expected = {"error": "non_finite"}
        cases.append({"name": name, "function": "integrate_twist_target", "description": desc,
                      "inputs": inputs, "expected": expected})

    box = C.WorkspaceBox([0.3, -0.3, 0.05], [0.7, 0.3, 0.5])
    obox = C.WorkspaceBox([0.3, -0.3, 0.05], [0.7, 0.3, 0.5], down, [0.2, 0.2, 0.5])
    it("integrate_identity_x", "EE aligned with base, +x full scale, 1 cm step: +1 cm base x",
       [0.5, 0, 0.3], I, [1, 0, 0, 0, 0, 0], 0.01, 0.05, box)
    it("integrate_yawed_x", "EE yawed 90 deg: EE +x is base +y", [0.5, 0, 0.3], rot([0, 0, 1], math.pi / 2),
       [1, 0, 0, 0, 0, 0], 0.01, 0.05, box)
    it("integrate_down_z", "gripper down: EE +z (approach) is base -z; half scale = 5 mm", [0.5, 0, 0.3], down,
       [0, 0, 0.5, 0, 0, 0], 0.01, 0.05, box)
    it("integrate_down_yaw", "gripper down, EE wz = 1, 0.1 rad step: q = q_down * rotz(0.1), i.e. base -z by 0.1",
       [0.5, 0, 0.3], down, [0, 0, 0, 0, 0, 1], 0.01, 0.1, box)
    it("integrate_action_clipped", "action 3 and -2 clip to 1 and -1", [0.5, 0, 0.3], I, [3, -2, 0, 0, 0, 0], 0.01, 0.05, box)
    it("integrate_box_clip_position", "measured at the x max, +x pushes out: held at 0.7", [0.7, 0, 0.3], I,
       [1, 0, 0, 0, 0, 0], 0.02, 0.05, box)
    it("integrate_box_clip_orientation", "gripper down tilted 0.19 rad about base x, +0.05 rad more: clipped to 0.2",
       [0.5, 0, 0.3], F.quat_multiply(down, rot([1, 0, 0], 0.19)), [0, 0, 0, 1, 0, 0], 0.01, 0.05, obox)
    it("integrate_nan_rejected", "NaN in the action", [0.5, 0, 0.3], I, [np.nan, 0, 0, 0, 0, 0], 0.01, 0.05, box)
    it("integrate_inf_rejected", "Inf in the action", [0.5, 0, 0.3], I, [0, 0, 0, 0, -np.inf, 0], 0.01, 0.05, box)
    it("integrate_no_box", "no box: free integration", [2.0, 0, 0.3], rot([0, 1, 0], 0.3), [1, 1, 1, 1, 1, 1], 0.01, 0.05, None)
    for i in range(5):
        mq = F.quat_multiply(down, F.rotvec_to_quat(rng.uniform(-0.3, 0.3, 3)))
        it(f"integrate_random_{i}", "random", rng.uniform([0.3, -0.3, 0.05], [0.7, 0.3, 0.5]), mq,
           rng.uniform(-1, 1, 6), 0.02, 0.1, obox if i % 2 else box)

    # ---- wrench_mode_wrench (after every other random case, so adding it changed none of theirs)
    def wm(name, desc, ap, aq, mp, mq, tw, w_ee, params):
        try:
            expected = {"wrench": enc(C.wrench_mode_wrench(ap, aq, mp, mq, tw, w_ee, params))}
        except C.NonFiniteCommandError:
            expected = {"error": "non_finite"}
        cases.append({"name": name, "function": "wrench_mode_wrench", "description": desc,
                      "inputs": {"anchor_pos": enc(ap), "anchor_quat": enc(aq), "measured_pos": enc(mp),
                                 "measured_quat": enc(mq), "measured_twist_base": enc(tw), "wrench_ee": enc(w_ee),
                                 "params": imp_params_json(params)},
                      "expected": expected})

    def zeta(k, ratio):
        return 2.0 * ratio * np.sqrt(np.broadcast_to(np.asarray(k, float), (3,)))

    # The simulator's wrench-mode defaults (ArmControlConfig.wrench_*): K 100 N/m, 3 N m/rad, damping ratio 0.3,
    # reference limits 0.1 m, 0.5 rad.
    pw = C.ImpedanceParams(100.0, 3.0, 0.1, 0.5, zeta(100.0, 0.3), zeta(3.0, 0.3))
    yaw90 = rot([0, 0, 1], math.pi / 2)
    wm("wrench_mode_zero_feedforward_holds_anchor", "no feed-forward, 5 cm from the anchor along x, K 100: F = (5, 0, 0) N",
       [0.55, 0, 0.3], down, [0.5, 0, 0.3], down, z6, z6, pw)
    wm("wrench_mode_far_anchor_clipped", "anchor 1 m away along -y, limit 0.1 m, K 100: F = (0, -10, 0) N at most",
       [0.5, -1.0, 0.3], down, [0.5, 0, 0.3], down, z6, z6, pw)
    wm("wrench_mode_feedforward_gripper_down", "at the anchor, gripper down: EE (0, 0, 10 N, 0, 0, 1 N m) is base (0, 0, -10, 0, 0, -1)",
       [0.5, 0, 0.3], down, [0.5, 0, 0.3], down, z6, [0, 0, 10, 0, 0, 1], pw)
    wm("wrench_mode_feedforward_plus_spring_and_damping",
       "EE yawed 90 deg: EE +x force is base +y; plus the spring 2 cm along x (2 N) and damping of 0.1 m/s along y "
       "(D = 2 * 0.3 * 10 = 6: -0.6 N)",
       [0.52, 0, 0.3], yaw90, [0.5, 0, 0.3], yaw90, [0, 0.1, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0], pw)
    wm("wrench_mode_rotation_clipped", "anchor 90 deg about z, limit 0.5 rad, Kr 3: torque z = 1.5 N m, plus 0.5 N m feed-forward",
       [0.5, 0, 0.3], yaw90, [0.5, 0, 0.3], I, z6, [0, 0, 0, 0, 0, 0.5], pw)
    wm("wrench_mode_nan_feedforward_rejected", "NaN in the feed-forward wrench", [0.5, 0, 0.3], I, [0.5, 0, 0.3], I, z6,
       [np.nan, 0, 0, 0, 0, 0], pw)
    wm("wrench_mode_nan_twist_rejected", "NaN in the measured twist", [0.5, 0, 0.3], I, [0.5, 0, 0.3], I,
       [0, 0, 0, np.nan, 0, 0], z6, pw)
    for i in range(4):
        params = C.ImpedanceParams(rng.uniform(10, 500, 3), rng.uniform(1, 30, 3), float(rng.uniform(0.02, 0.2)),
                                   float(rng.uniform(0.1, 0.8)), rng.uniform(0, 20, 3), rng.uniform(0, 3, 3))
        wm(f"wrench_mode_random_{i}", "random", rng.uniform(-1, 1, 3), rand_quat(), rng.uniform(-1, 1, 3), rand_quat(),
           rng.normal(0, 0.3, 6), rng.normal(0, 10, 6), params)

    return {"schema": SCHEMA, "atol": ATOL, "seed": SEED, "cases": cases}


def main(path: Path = C.GOLDEN_PATH) -> None:
    data = build()
    names = [c["name"] for c in data["cases"]]
    assert len(names) == len(set(names)), "case names must be unique"
    text = json.dumps(data, indent=1, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {len(names)} cases to {path}")


if __name__ == "__main__":
    main()
