"""hilserl_interfaces with real rclpy nodes: parameters from schemas (live updates,
rejections with reasons, read-only fields), safetensors payloads, diagnostics."""

import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from hilserl_core.formats import config as cfg
from hilserl_core.formats import tensorio
from hilserl_interfaces import diagnostics, payload, qos
from hilserl_interfaces.params import NodeConfig


@dataclass(frozen=True)
class Gains:
    stiffness_n_per_m: Tuple[float, ...] = cfg.param((600.0, 600.0, 600.0), "stiffness", units="N/m", low=0.0, high=3000.0)


@dataclass(frozen=True)
class DemoSchema:
    speed_scale: float = cfg.param(1.0, "operator twist gain", low=0.0, high=5.0, live=True)
    dead_zone: float = cfg.param(0.05, "input dead zone", low=0.0, high=1.0, live=True)
    rate_hz: int = cfg.param(10, "control rate", units="Hz", low=1, high=1000)
    frame: str = cfg.param("ee", "action frame", choices=("ee", "base"))
    gains: Gains = field(default_factory=Gains)


def _set(spin_until, executor, client, params, timeout=10.0):
    assert client.wait_for_services(timeout_sec=timeout)
    fut = client.set_parameters(params)
    assert spin_until(executor, fut.done, timeout)
    return fut.result().results


def test_schema_parameters_are_declared_validated_and_live(ros_context, spin_until):
    changes = []
    node = rclpy.create_node(
        "mux_under_test",
        context=ros_context,
        parameter_overrides=[Parameter("rate_hz", value=20), Parameter("gains.stiffness_n_per_m", value=[100.0, 200.0, 300.0])],
    )
    conf = NodeConfig(node, DemoSchema, on_change=lambda old, new: changes.append((old, new)))
    assert conf.value.rate_hz == 20 and conf.value.gains.stiffness_n_per_m == (100.0, 200.0, 300.0)
    assert sorted(conf.live_parameter_names()) == ["dead_zone", "speed_scale"]

    other = rclpy.create_node("param_setter", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(other)
    client = AsyncParameterClient(other, "mux_under_test")

    # live parameter: takes effect at once and notifies the node
    (ok,) = _set(spin_until, ex, client, [Parameter("speed_scale", value=2.5)])
    assert ok.successful and conf.value.speed_scale == 2.5
    assert changes and changes[-1][0].speed_scale == 1.0 and changes[-1][1].speed_scale == 2.5

    # out of range: rejected with a reason, old value kept
    (bad,) = _set(spin_until, ex, client, [Parameter("speed_scale", value=9.0)])
    assert not bad.successful and "speed_scale" in bad.reason
    assert conf.value.speed_scale == 2.5 and node.get_parameter("speed_scale").value == 2.5

    # not live: read-only after start
    (ro,) = _set(spin_until, ex, client, [Parameter("rate_hz", value=50)])
    assert not ro.successful and conf.value.rate_hz == 20

    # describe shows units, range and liveness
    d = node.describe_parameter("rate_hz")
    assert "[Hz]" in d.description and "[1, 1000]" in d.description and d.read_only
    assert d.integer_range[0].from_value == 1 and d.integer_range[0].to_value == 1000
    ex.shutdown()
    other.destroy_node()
    node.destroy_node()


def test_invalid_startup_parameters_stop_the_node_with_a_clear_error(ros_context):
    node = rclpy.create_node("bad", context=ros_context, parameter_overrides=[Parameter("frame", value="tool")])
    with pytest.raises(cfg.ConfigError, match="frame = 'tool' is not allowed; one of 'ee', 'base'"):
        NodeConfig(node, DemoSchema)
    node.destroy_node()


def test_payload_roundtrip_to_a_late_joining_subscriber(ros_context, spin_until):
    from std_msgs.msg import UInt8MultiArray

    pub_node = rclpy.create_node("weights_pub", context=ros_context)
    sub_node = rclpy.create_node("weights_sub", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(pub_node)
    ex.add_node(sub_node)
    arrays = {"actor.w": np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32), "step": np.array([7])}
    pub = pub_node.create_publisher(UInt8MultiArray, "/test/weights", qos.LATCHED)
    pub.publish(payload.encode(arrays, {"version": 3}))
    time.sleep(0.2)
    got = []
    sub_node.create_subscription(UInt8MultiArray, "/test/weights", lambda m: got.append(payload.decode(m)), qos.LATCHED)
    assert spin_until(ex, lambda: got, 10.0), "transient-local payload not delivered to a late joiner"
    out, meta = got[0]
    assert meta == {"version": 3} and np.array_equal(out["actor.w"], arrays["actor.w"])
    # A corrupted payload is refused, never half-used.
    msg = payload.encode(arrays)
    msg.data[-1] ^= 0xFF
    with pytest.raises(tensorio.TensorIOError):
        payload.decode(msg)
    with pytest.raises(tensorio.TensorIOError, match="not a hilserl payload"):
        payload.decode(UInt8MultiArray())
    ex.shutdown()
    pub_node.destroy_node()
    sub_node.destroy_node()


def test_diagnostics_are_published(ros_context, spin_until):
    from diagnostic_msgs.msg import DiagnosticArray

    node = rclpy.create_node("diag_src", namespace="/left", context=ros_context)
    listener = rclpy.create_node("diag_listener", context=ros_context)
    diag = diagnostics.Diagnostics(node, period_s=0.05)
    diag.report("inputs", diagnostics.WARN, "wrist camera stale", age_s=0.31)
    assert diag.level("inputs") == diagnostics.WARN and diag.level("unknown") == -1
    got = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", got.append, qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(listener)
    assert spin_until(ex, lambda: got, 10.0)
    status = got[-1].status[0]
    assert status.name == "/left/diag_src: inputs" and status.level == bytes([1])
    assert status.message == "wrist camera stale" and status.values[0].key == "age_s"
    ex.shutdown()
    node.destroy_node()
    listener.destroy_node()


def test_camera_entries_name_keys_and_topics():
    from hilserl_interfaces import topics

    assert topics.split_camera("left/wrist") == ("left", "wrist")
    assert topics.camera_key("right/front") == "right_front"
    assert topics.cropped_topic("left/side") == "/left/cameras/side/image_cropped"
    for bad in ("wrist", "/wrist", "left/", "left/wrist/extra"):
        with pytest.raises(cfg.ConfigError, match="must look like <arm>/<camera>"):
            topics.camera_key(bad)


def test_nodes_keep_numpy_blas_single_threaded_and_idle_between_products():
    """A crop node's per-frame matrix products must not leave OpenBLAS workers spinning
    (they took 0.5-1 core per node at 10 Hz); run_node limits BLAS before building a node."""
    import json
    import subprocess
    import sys
    import textwrap

    prog = textwrap.dedent(
        """
        import json, time, numpy as np
        from hilserl_interfaces.threads import blas_threads, limit_blas_threads, loaded_openblas
        n = limit_blas_threads(1)
        a, b = np.ones((128, 128), np.float32), np.ones((128, 384), np.float32)
        c0, w0 = time.process_time(), time.monotonic()
        for _ in range(20):  # 10 Hz, like a camera
            a @ b
            time.sleep(0.05)
        mapped = "openblas" in open("/proc/self/maps").read().lower()  # seen without the code under test
        print(json.dumps([n, len(loaded_openblas()), blas_threads(), (time.process_time() - c0) / (time.monotonic() - w0), mapped]))
        """
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    n_set, n_loaded, counts, cpu, mapped = json.loads(out.stdout)
    if not mapped:
        pytest.skip("numpy here does not use OpenBLAS")
    assert n_loaded >= 1, "OpenBLAS is mapped but loaded_openblas() found none"
    assert n_set == n_loaded and set(counts) == {1}
    assert cpu < 0.3, f"process used {cpu:.2f} of a core between products"


@dataclass(frozen=True)
class Box:
    min_position_m: Tuple[float, ...] = cfg.param((0.25, -0.35, 0.02), "lower corner", units="m")


@dataclass(frozen=True)
class TypedSchema:
    speed_scale: float = cfg.param(1.0, "operator twist gain", low=0.0, high=5.0, live=True)
    gain: float = cfg.param(1.0, "one-sided gain", low=0.0, live=True)
    rate_hz: int = cfg.param(10, "control rate", units="Hz", low=1, high=1000, live=True)
    label: str = cfg.param("ee", "a label", live=True)
    timeout_s: Optional[float] = cfg.param(None, "optional timeout, none by default", units="s", low=0.0, live=True)
    box: Box = field(default_factory=Box)


def test_an_int_for_a_float_parameter_is_taken_as_that_float(ros_context):
    node = rclpy.create_node("typed", context=ros_context, parameter_overrides=[
        Parameter("speed_scale", value=2), Parameter("box.min_position_m", value=[0, 0, 1]), Parameter("rate_hz", value=20.0)])
    conf = NodeConfig(node, TypedSchema)
    assert conf.value.speed_scale == 2.0 and isinstance(conf.value.speed_scale, float)
    assert conf.value.box.min_position_m == (0.0, 0.0, 1.0) and conf.value.rate_hz == 20
    assert node.get_parameter("speed_scale").type_ == Parameter.Type.DOUBLE
    assert node.get_parameter("box.min_position_m").type_ == Parameter.Type.DOUBLE_ARRAY
    assert node.get_parameter("rate_hz").type_ == Parameter.Type.INTEGER
    node.destroy_node()


@pytest.mark.parametrize("name, value, message", [
    ("speed_scale", "fast", "speed_scale = 'fast' has the wrong type: expected a number \\(double\\)"),
    ("speed_scale", True, "speed_scale = True has the wrong type: expected a number"),
    ("rate_hz", 2.5, "rate_hz = 2.5 has the wrong type: expected an integer"),
    ("box.min_position_m", ["a", "b", "c"], "box.min_position_m = \\['a', 'b', 'c'\\] has the wrong type: expected a list of numbers"),
    ("box.min_position_m", 0.5, "expected a list of numbers"),
    ("label", 3, "label = 3 has the wrong type: expected a string"),
])
def test_a_parameter_of_an_unconvertible_type_stops_the_node_with_one_line(ros_context, name, value, message):
    node = rclpy.create_node("typed_bad", context=ros_context, parameter_overrides=[Parameter(name, value=value)])
    with pytest.raises(cfg.ConfigError, match=message):
        NodeConfig(node, TypedSchema)
    node.destroy_node()


def test_live_sets_convert_ints_and_refuse_other_types_with_the_expected_type(ros_context, spin_until):
    node = rclpy.create_node("typed_live", context=ros_context)
    conf = NodeConfig(node, TypedSchema)
    other = rclpy.create_node("typed_setter", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(other)
    client = AsyncParameterClient(other, "typed_live")
    (ok,) = _set(spin_until, ex, client, [Parameter("speed_scale", value=3)])  # `ros2 param set ... 3`
    assert ok.successful and conf.value.speed_scale == 3.0
    assert node.get_parameter("speed_scale").type_ == Parameter.Type.DOUBLE and node.get_parameter("speed_scale").value == 3.0
    (bad,) = _set(spin_until, ex, client, [Parameter("speed_scale", value="fast")])
    assert not bad.successful and "expected a number (double)" in bad.reason and "speed_scale" in bad.reason
    (bad,) = _set(spin_until, ex, client, [Parameter("rate_hz", value=7.5)])
    assert not bad.successful and "expected an integer" in bad.reason
    assert conf.value.speed_scale == 3.0 and node.get_parameter("speed_scale").value == 3.0 and conf.value.rate_hz == 10
    # ranges still apply to converted values
    (bad,) = _set(spin_until, ex, client, [Parameter("speed_scale", value=9)])
    assert not bad.successful and conf.value.speed_scale == 3.0
    # a refused value leaves nothing behind for the next, valid request
    (ok,) = _set(spin_until, ex, client, [Parameter("rate_hz", value=30)])
    assert ok.successful and conf.value.rate_hz == 30
    ex.shutdown()
    other.destroy_node()
    node.destroy_node()


def test_an_optional_parameter_without_a_default_reads_as_none_until_set(ros_context, spin_until):
    node = rclpy.create_node("optional", context=ros_context)
    conf = NodeConfig(node, TypedSchema)
    assert conf.value.timeout_s is None
    assert node.describe_parameter("timeout_s").type == Parameter.Type.DOUBLE.value
    other = rclpy.create_node("optional_setter", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(other)
    client = AsyncParameterClient(other, "optional")
    (ok,) = _set(spin_until, ex, client, [Parameter("timeout_s", value=2)])
    assert ok.successful and conf.value.timeout_s == 2.0
    (bad,) = _set(spin_until, ex, client, [Parameter("timeout_s", value=-1.0)])
    assert not bad.successful and "timeout_s" in bad.reason and conf.value.timeout_s == 2.0
    ex.shutdown()
    other.destroy_node()
    node.destroy_node()
    given = rclpy.create_node("optional_given", context=ros_context, parameter_overrides=[Parameter("timeout_s", value=1)])
    assert NodeConfig(given, TypedSchema).value.timeout_s == 1.0
    given.destroy_node()
