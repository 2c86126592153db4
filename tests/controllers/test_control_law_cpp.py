"""The C++ control law (hilserl_controllers/control_law) against the Python reference's golden vectors.

Compiles ``control_law.cpp`` with ``golden_test.cpp`` and ``control_law_test.cpp``
using the system ``g++ -std=c++17 -O2`` (no ROS, no CMake needed), rewrites
``hilserl_core/data/control_golden.json`` in the flat format the C++ program
reads (``test/golden_to_flat.py``), and requires every case to pass. A second
test perturbs expected values and requires the C++ program to report exactly
that case as failing, so this test can fail.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "hilserl_controllers"
GOLDEN_JSON = ROOT / "src" / "hilserl_core" / "hilserl_core" / "data" / "control_golden.json"
CXX = shutil.which("g++")

pytestmark = pytest.mark.skipif(CXX is None, reason="g++ is not installed: the C++ control law cannot be compiled here")


def _load_converter():
    spec = importlib.util.spec_from_file_location("golden_to_flat", PKG / "test" / "golden_to_flat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden_to_flat = _load_converter()


def _compile(args, cwd):
    proc = subprocess.run([CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"g++ {' '.join(args)} failed:\n{proc.stderr}"


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """Paths of the compiled golden_test and control_law_test programs."""
    out = tmp_path_factory.mktemp("control_law_cpp")
    inc = f"-I{PKG / 'include'}"
    _compile([inc, "-c", str(PKG / "src" / "control_law.cpp"), "-o", str(out / "control_law.o")], out)
    jobs = {
        "golden_test": [inc, str(PKG / "test" / "golden_test.cpp"), str(out / "control_law.o"), "-o", str(out / "golden_test")],
        "control_law_test": [
            inc,
            str(PKG / "test" / "control_law_test.cpp"),
            str(out / "control_law.o"),
            "-o",
            str(out / "control_law_test"),
        ],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(_compile, args, out) for args in jobs.values()]:
            f.result()
    return {name: out / name for name in jobs} | {"dir": out}


def _run_golden(programs, golden: dict, name: str):
    flat = programs["dir"] / f"{name}.txt"
    flat.write_text(golden_to_flat.convert(golden), encoding="utf-8")
    return subprocess.run([str(programs["golden_test"]), str(flat)], capture_output=True, text=True, timeout=60)


def _per_function(stdout: str) -> dict:
    return {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^function (\w+): (\d+) passed, (\d+) failed$", stdout, re.M)}


def _golden() -> dict:
    return json.loads(GOLDEN_JSON.read_text(encoding="utf-8"))


def test_every_golden_case_passes(programs):
    golden = _golden()
    proc = _run_golden(programs, golden, "golden")
    counts = _per_function(proc.stdout)
    print("\nC++ control_law vs control_golden.json (atol %g):" % golden["atol"])
    for function, (passed, failed) in sorted(counts.items()):
        print(f"  {function:24s} {passed:3d} passed, {failed} failed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = Counter(c["function"] for c in golden["cases"])
    assert {f: p for f, (p, _) in counts.items()} == dict(expected), "every case of every function must have run"
    assert f"{len(golden['cases'])} passed, 0 failed" in proc.stdout


def _first(golden, function):
    return next(c for c in golden["cases"] if c["function"] == function and "error" not in c["expected"])


def _bump_wrench(golden):
    case = _first(golden, "impedance_wrench")
    case["expected"]["wrench"][0] += 1e-6  # 1000x the tolerance
    return case["name"]


def _bump_quat(golden):
    case = _first(golden, "integrate_twist_target")
    case["expected"]["quat"][1] += 1e-6
    return case["name"]


def _flip_reason(golden):
    case = next(c for c in golden["cases"] if c["name"] == "watchdog_out_of_order")
    case["expected"]["results"][1]["reason"] = "non_finite_stamp"
    return case["name"]


def _expect_rejection_accepted(golden):
    case = next(c for c in golden["cases"] if c["function"] == "integrate_twist_target" and "error" in c["expected"])
    case["expected"] = {"pos": [0.5, 0.0, 0.3], "quat": [0.0, 0.0, 0.0, 1.0]}
    return case["name"]


@pytest.mark.parametrize("perturb", [_bump_wrench, _bump_quat, _flip_reason, _expect_rejection_accepted])
def test_a_perturbed_expectation_is_reported_as_failing(programs, perturb):
    golden = copy.deepcopy(_golden())
    name = perturb(golden)
    proc = _run_golden(programs, golden, f"perturbed_{perturb.__name__}")
    assert proc.returncode != 0, "the C++ check must fail when an expected value is wrong:\n" + proc.stdout
    failing = re.findall(r"^FAIL (\S+)", proc.stdout, re.M)
    assert failing == [name], proc.stdout
    assert f"{len(golden['cases']) - 1} passed, 1 failed" in proc.stdout


def test_flat_format_round_trips_non_finite_numbers():
    text = golden_to_flat.convert(_golden())
    assert text.startswith(f"hilserl_control_golden {golden_to_flat.FORMAT_VERSION}\n")
    assert " nan " in text and (" inf" in text or " -inf" in text), "NaN/Inf inputs must reach the C++ side"
    with pytest.raises(ValueError):
        golden_to_flat.case_lines({"name": "x", "function": "clamp_wrench", "inputs": {"wrench": ["nan?"]}, "expected": {}})


def test_joint_space_and_property_checks(programs):
    proc = subprocess.run([str(programs["control_law_test"])], capture_output=True, text=True, timeout=60)
    print("\n" + proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^[1-9]\d* passed, 0 failed$", proc.stdout, re.M)


# The controller plugins cannot be compiled here (no rclcpp/ros2_control), so at least check that their
# generate_parameter_library schemas are complete and declare every parameter the sources read.
_SCHEMAS = {
    "cartesian_impedance_controller": "hilserl_cartesian_impedance_controller",
    "wrench_controller": "hilserl_wrench_controller",
}


def _shared_template_fields():
    """Fields the parameter templates of franka_arm.hpp (impedance_from_parameters, ...) read from a Params struct."""
    header = (PKG / "include" / "hilserl_controllers" / "franka_arm.hpp").read_text(encoding="utf-8")
    return set(re.findall(r"\bp\.(\w+_\w+)", header))


@pytest.mark.parametrize("controller", sorted(_SCHEMAS))
def test_parameter_schema_declares_what_the_controller_reads(controller):
    yaml = pytest.importorskip("yaml")
    schema = yaml.safe_load((PKG / "src" / f"{controller}_parameters.yaml").read_text(encoding="utf-8"))
    assert list(schema) == [_SCHEMAS[controller]], "the top-level key is the C++ namespace the header uses"
    params = schema[_SCHEMAS[controller]]
    for name, spec in params.items():
        assert spec["type"] in {"bool", "int", "double", "string", "double_array", "string_array"}, name
        assert "default_value" in spec and spec.get("description", "").strip(), f"{name}: default and description"
        if spec["type"] in ("int", "double", "double_array"):
            assert spec.get("validation"), f"{name}: numeric parameters need a range"
    source = (PKG / "src" / f"{controller}.cpp").read_text(encoding="utf-8")
    used = set(re.findall(r"\bparams_\.(\w+)", source)) | set(re.findall(r"\bp\.(\w+_\w+)", source))
    assert used, "the controller reads its parameters through params_ / p"
    # Both controllers pass their Params to the shared templates of franka_arm.hpp, so both declare those fields.
    assert "impedance_from_parameters(params_" in source and "joint_space_from_parameters(params_" in source
    shared = _shared_template_fields()
    assert len(shared) >= 10, shared
    used |= shared
    assert used <= set(params), f"read but not declared in the schema: {sorted(used - set(params))}"
