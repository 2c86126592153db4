"""Strict parameter files: a node refuses, in one line naming the file, a key none of its
parameters has (with the closest valid name), a params file that is missing, not YAML or not
laid out as a params file, and a value out of range; exit status 2, no traceback. Real node
processes (``run_node``) and the parsing helpers they use."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Kilted wheels) not installed; run scripts/setup.sh")

from hilserl_interfaces import params as P  # noqa: E402

# A node with a nested schema (like the learner's), started as a process by run_node.
NODE = textwrap.dedent(
    """
    import sys
    from dataclasses import dataclass, field
    from rclpy.node import Node
    from hilserl_core.formats import config as cfg
    from hilserl_interfaces.node_main import run_node
    from hilserl_interfaces.params import NodeConfig

    @dataclass(frozen=True)
    class Train:
        updates_per_transition: float = cfg.param(1.0, "updates per transition", low=0.0, high=16.0)

    @dataclass(frozen=True)
    class Conf:
        batch_size: int = cfg.param(256, "batch", low=1, high=4096)
        train: Train = field(default_factory=Train)

    class Strict(Node):
        def __init__(self, **kw):
            super().__init__("strict_probe", **kw)
            c = NodeConfig(self, Conf).value
            print("started", c.batch_size, c.train.updates_per_transition, flush=True)
            self.create_timer(0.05, self.context.try_shutdown)

    sys.exit(run_node(Strict))
    """
)


def _run(*ros_args):
    return subprocess.run([sys.executable, "-c", NODE, "--ros-args", "-r", "__node:=learner", "-r", "__ns:=/left", *ros_args],
                          capture_output=True, text=True, timeout=60)


def _one_line_refusal(out) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("[/left/learner] configuration error: "), lines[0]
    return lines[0]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_files_start_the_node(tmp_path):
    a = _write(tmp_path, "a.yaml", """\
        /**:
          ros__parameters:
            batch_size: 64
        """)
    b = _write(tmp_path, "b.yaml", """\
        /left/learner:
          ros__parameters:
            train: {updates_per_transition: 2}
        /right/learner:
          ros__parameters:
            not_for_this_node: 1
        """)
    out = _run("--params-file", str(a), "--params-file", str(b))
    assert out.returncode == 0, out.stderr
    assert "started 64 2.0" in out.stdout


def test_a_misspelled_key_is_refused_with_the_file_and_the_closest_name(tmp_path):
    f = _write(tmp_path, "learner.yaml", """\
        /**:
          ros__parameters:
            batch_size: 64
            train:
              updates_per_transtion: 4
        """)
    line = _one_line_refusal(_run("--params-file", str(f)))
    assert line.endswith(f"{f}: unknown parameter 'train.updates_per_transtion' "
                         "(did you mean 'train.updates_per_transition'?) for /left/learner"), line


def test_a_misspelled_key_in_the_second_file_names_that_file_and_a_stray_p_the_command_line(tmp_path):
    a = _write(tmp_path, "a.yaml", "/**:\n  ros__parameters:\n    batch_size: 64\n")
    b = _write(tmp_path, "b.yaml", "/left/learner:\n  ros__parameters:\n    bach_size: 64\n")
    line = _one_line_refusal(_run("--params-file", str(a), "--params-file", str(b), "-p", "zzz:=1"))
    assert f"{b}: unknown parameter 'bach_size' (did you mean 'batch_size'?) for /left/learner" in line, line
    assert "command line (-p): unknown parameter 'zzz' for /left/learner" in line, line
    assert str(a) not in line


def test_a_missing_params_file_is_one_line(tmp_path):
    line = _one_line_refusal(_run("--params-file", str(tmp_path / "nope.yaml")))
    assert line.endswith(f"params file not found: {tmp_path / 'nope.yaml'}"), line


@pytest.mark.parametrize("body, where, what", [
    ("/**:\n  ros__parameters:\n    batch_size: [64, 32\n", 3, "(while parsing a flow sequence from line 3)"),
    ("/**:\n  ros__parameters:\n    batch_size: 64\n   train: 1\n", 4, "(while parsing a block mapping from line 2)"),
])
def test_a_yaml_syntax_error_is_one_line_with_the_file_and_line(tmp_path, body, where, what):
    f = _write(tmp_path, "bad.yaml", body)
    line = _one_line_refusal(_run("--params-file", str(f)))
    assert f"configuration error: {f}:{where}: not valid YAML" in line and what in line, line


def test_a_file_that_is_not_a_params_file_is_one_line(tmp_path):
    f = _write(tmp_path, "flat.yaml", "batch_size: 64\n")
    line = _one_line_refusal(_run("--params-file", str(f)))
    assert line.endswith(f"{f}: 'batch_size' must hold a ros__parameters mapping"), line
    g = _write(tmp_path, "misplaced.yaml", "/**:\n  ros__parameters: {}\n  batch_size: 64\n")
    line = _one_line_refusal(_run("--params-file", str(g)))
    assert "'/**' has key(s) batch_size beside ros__parameters" in line, line


def test_a_value_out_of_range_names_the_file_it_came_from(tmp_path):
    f = _write(tmp_path, "learner.yaml", "/**:\n  ros__parameters:\n    train: {updates_per_transition: 99.0}\n")
    line = _one_line_refusal(_run("--params-file", str(f)))
    assert (f"{f} (parameters of /left/learner): train.updates_per_transition = 99.0 is out of range [0.0, 16.0]"
            in line), line
    # the same value from -p names no file
    line = _one_line_refusal(_run("-p", "train.updates_per_transition:=99.0"))
    assert "parameters of /left/learner: train.updates_per_transition = 99.0 is out of range" in line
    assert ".yaml" not in line


def test_parameter_sources_follow_rcl_precedence_and_node_patterns(tmp_path):
    a = _write(tmp_path, "a.yaml", "/**:\n  ros__parameters:\n    x: 1\n    y: {z: 2}\n")
    b = _write(tmp_path, "b.yaml", "/**/learner:\n  ros__parameters:\n    x: 3\n/left/*:\n  ros__parameters:\n    w: 1\n"
                                   "/right/learner:\n  ros__parameters:\n    v: 1\n")
    argv = ["prog", "--ros-args", "--params-file", str(a), "--params-file", str(b), "-p", "y.z:=5", "--", "other", "-p", "q:=1"]
    assert P.params_files(argv) == [str(a), str(b)]
    assert P.parameter_sources("/left/learner", argv) == {"x": str(b), "y.z": P.COMMAND_LINE, "w": str(b)}
    assert P.parameter_sources("/learner", argv) == {"x": str(b), "y.z": P.COMMAND_LINE}
    assert P.parameter_sources("/left/actor", argv) == {"x": str(a), "y.z": P.COMMAND_LINE, "w": str(b)}


def _compose(tmp_path, files_by_node):
    """compose_nodes running two real crop nodes, each with its own params files."""
    from hilserl import graph as G
    from hilserl.runner import find_executable

    specs = [G.NodeSpec(name=f"crop_{cam}", package="hilserl_perception", executable="crop_node", namespace="/left",
                        params_files=tuple(str(f) for f in files_by_node[cam]), parameters=(("camera", cam),))
             for cam in ("wrist", "side")]
    package, executable, argv = G.process_command(G.Process("hot_path", tuple(specs)))
    return subprocess.run([find_executable(package, executable)] + argv, capture_output=True, text=True, timeout=60)


def test_a_composed_node_names_its_own_params_file_in_one_line(tmp_path):
    good = _write(tmp_path, "good.yaml", "/**:\n  ros__parameters:\n    output_size: 64\n")
    typo = _write(tmp_path, "typo.yaml", "/left/crop_side:\n  ros__parameters:\n    output_sise: 64\n")
    out = _compose(tmp_path, {"wrist": [good], "side": [good, typo]})
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == (f"[/left/crop_side] configuration error: {typo}: unknown parameter 'output_sise' "
                                  "(did you mean 'output_size'?) for /left/crop_side"), out.stderr
    out = _compose(tmp_path, {"wrist": [good, tmp_path / "gone.yaml"], "side": [good]})
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == f"[/left/crop_wrist] configuration error: params file not found: {tmp_path / 'gone.yaml'}"
