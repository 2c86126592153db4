"""compose_nodes: several hilserl nodes in one process, each with its own --ros-args
(the graph's `process:` option). Checked from outside, over DDS: every node has its own
name, namespace, parameters (its own parameter services) and topics, exactly as when
it runs as a process of its own; a configuration error names the node and exits 2;
Ctrl-C (SIGINT) stops the process cleanly."""

import os
import signal
import subprocess

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import Image

from hilserl import graph as G
from hilserl.runner import find_executable
from hilserl_core.formats import msgconv
from hilserl_interfaces import qos

pytestmark = [pytest.mark.ros]


def _spec(name, ns, package, executable, params):
    return G.NodeSpec(name=name, package=package, executable=executable, namespace=ns, parameters=tuple(sorted(params.items())))


def _start(specs, process_args=()):
    proc = G.Process("hot_path", tuple(specs))
    package, executable, argv = G.process_command(proc)
    return subprocess.Popen([find_executable(package, executable)] + argv + list(process_args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_composed_nodes_keep_their_names_parameters_and_topics(ros_context, spin_until):
    specs = [
        _spec("crop_wrist", "/left", "hilserl_perception", "crop_node", {"camera": "wrist"}),
        _spec("crop_side", "/left", "hilserl_perception", "crop_node", {"camera": "side", "output_size": 64}),
        _spec("intervention_mux", "/left", "hilserl_teleop", "mux_node", {"mux.speed_scale": 0.5}),
    ]
    # a process-wide section (launch may append one) must not rename the members
    proc = _start(specs, ["--ros-args", "-r", "__node:=everyone", "--log-level", "warn"])
    node = rclpy.create_node("compose_observer", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        pubs = {c: node.create_publisher(Image, f"/left/cameras/{c}/image_raw", qos.COMMAND) for c in ("wrist", "side")}
        got = {}
        for c in ("wrist", "side"):
            node.create_subscription(Image, f"/left/cameras/{c}/image_cropped", lambda m, c=c: got.setdefault(c, m), qos.SENSOR)

        def names():
            return {(ns.rstrip("/") or "") + "/" + n for n, ns in node.get_node_names_and_namespaces()}

        wanted = {"/left/crop_wrist", "/left/crop_side", "/left/intervention_mux"}
        assert spin_until(ex, lambda: wanted <= names() or proc.poll() is not None, 30), names()
        assert proc.poll() is None, proc.stdout.read()

        frame = msgconv.fill_image(Image(), np.full((96, 96, 3), 7, np.uint8))

        def cropped():
            for p in pubs.values():
                p.publish(frame)
            return len(got) == 2

        assert spin_until(ex, cropped, 20), got.keys()
        assert (got["wrist"].width, got["side"].width) == (128, 64)  # each node its own output_size

        values = {}
        for fqn, pname in (("/left/crop_wrist", "camera"), ("/left/crop_side", "camera"), ("/left/crop_side", "output_size"),
                           ("/left/intervention_mux", "mux.speed_scale")):
            client = AsyncParameterClient(node, fqn)
            assert client.wait_for_services(timeout_sec=20), fqn
            fut = client.get_parameters([pname])
            assert spin_until(ex, fut.done, 20), fqn
            v = fut.result().values[0]
            values[(fqn, pname)] = v.string_value or v.integer_value or v.double_value
        assert values == {("/left/crop_wrist", "camera"): "wrist", ("/left/crop_side", "camera"): "side",
                          ("/left/crop_side", "output_size"): 64, ("/left/intervention_mux", "mux.speed_scale"): 0.5}
        # only the nodes given: no node renamed or duplicated by process-wide arguments
        assert len([n for n in names() if n.startswith("/left/")]) == 3, names()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        ex.shutdown()
        node.destroy_node()
    assert proc.returncode == 0, out


def test_a_configuration_error_in_one_composed_node_names_it_and_exits_2():
    proc = _start([
        _spec("crop_wrist", "/left", "hilserl_perception", "crop_node", {"camera": "wrist"}),
        _spec("crop_side", "/left", "hilserl_perception", "crop_node", {"camera": "side", "output_size": 4}),  # < 8
    ])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "[/left/crop_side] configuration error" in out and "output_size" in out
