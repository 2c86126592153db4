"""Static checks of the workspace itself: the two-command contract, package
metadata that colcon and `ros2 run` rely on, and the no-ROS rule of hilserl_core."""

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _readme_quickstart_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S)
    assert block, "README.md needs a '## Quick start' section with a bash block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def test_ci_runs_exactly_the_readme_setup_and_test_commands():
    readme = _readme_quickstart_commands()
    assert readme[:2] == ["scripts/setup.sh", "scripts/test.sh"]
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert ci == readme[:2]


def _packages():
    return sorted(p.parent for p in SRC.glob("*/package.xml"))


def test_every_package_has_consistent_metadata():
    pkgs = _packages()
    assert pkgs, "no packages under src/"
    for pkg in pkgs:
        root = ET.parse(pkg / "package.xml").getroot()
        assert root.get("format") == "3", pkg
        assert root.findtext("name") == pkg.name, f"{pkg}/package.xml name must equal its directory"
        build_type = root.find("export/build_type").text
        if build_type == "ament_python":
            assert (pkg / "resource" / pkg.name).is_file(), f"{pkg}: missing ament index marker resource/{pkg.name}"
            cfg = (pkg / "setup.cfg").read_text()
            # Without this, console scripts land in bin/ where `ros2 run` does not look.
            assert f"install_scripts=$base/lib/{pkg.name}" in cfg, f"{pkg}/setup.cfg"
            assert (pkg / pkg.name / "__init__.py").is_file()


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("forbidden", ["rclpy", "rosidl_runtime_py", "std_msgs", "sensor_msgs", "geometry_msgs"])
def test_hilserl_core_imports_no_ros(forbidden):
    offenders = [
        str(p.relative_to(ROOT)) for p in (SRC / "hilserl_core").rglob("*.py") if forbidden in set(_imports(p))
    ]
    assert not offenders, f"hilserl_core must stay ROS-free; {forbidden} imported in {offenders}"


def _pickle_uses(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    if {"pickle", "cloudpickle", "dill"} & set(_imports(path)):
        yield "imports pickle"
    for node in ast.walk(tree):
        # torch.save/torch.load are pickle underneath
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("save", "load"):
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                yield f"torch.{node.func.attr} at line {node.lineno}"
        if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and getattr(node.value, "value", False) is True:
            yield f"allow_pickle=True at line {node.value.lineno}"


# The only files allowed to import pickle, each with its reason. They may only WRITE pickles
# (pickle.dumps); test_pickle_writers_never_read_a_pickle refuses any reading in them.
PICKLE_WRITERS = {
    # writes files laid out like the published resnet10_params.pkl (and malicious ones) for the
    # reader that never unpickles (hilserl_core.formats.flax_pickle); never loads one
    "tests/core/test_flax_pickle.py",
}


def test_no_pickle_on_disk_or_wire_in_our_sources():
    # docs/ARCHITECTURE.md defect list: pickle on the wire and on disk; tests and benchmarks too
    files = [p for top in (SRC, ROOT / "tests", ROOT / "benchmarks") for p in top.rglob("*.py")]
    offenders = {str(p.relative_to(ROOT)): list(_pickle_uses(p)) for p in files}
    offenders = {k: [u for u in v if not (k in PICKLE_WRITERS and u == "imports pickle")] for k, v in offenders.items()}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders


def test_pickle_writers_never_read_a_pickle():
    for name in PICKLE_WRITERS:
        tree = ast.parse((ROOT / name).read_text(), filename=name)
        reads = [
            f"line {node.lineno}" for node in ast.walk(tree)
            if (isinstance(node, ast.Attribute) and node.attr in ("load", "loads", "Unpickler", "_Unpickler")
                and isinstance(node.value, ast.Name) and node.value.id == "pickle")
            or (isinstance(node, ast.ImportFrom) and node.module == "pickle")
            or (isinstance(node, ast.Import) and any(a.name == "pickle" and a.asname for a in node.names))
        ]
        assert not reads, f"{name} may only write pickles (pickle.dumps); it reads or aliases pickle at {reads}"


def test_requirements_pin_torch_cpu_build_version():
    reqs = (ROOT / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0" in reqs, "an unpinned torch pulls a multi-GB CUDA build"
