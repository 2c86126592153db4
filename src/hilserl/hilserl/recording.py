"""What a recording of a setup runs and holds (no ROS import): shared by ``hilserl record``
(here) and ``record_demos.launch.py`` (``ros2 bag record`` on a full ROS 2 install).

- :func:`record_graph`: the setup's graph without actor and learner (``learning:=false``).
  In simulation the scripted operator drives: ``operator`` defaults to ``demo`` and its
  ``operator.drives_episodes`` is set, so it marks success/failure, resets the scene and
  publishes ``/episode/reset`` (``hilserl_sim.ros_sim_node``).
- :func:`topics`: ``hilserl_core.formats.bags.recorded_topics`` for the graph's arms and
  cameras (plus ``/sim/success`` in simulation): the one list both recorders take.
- :func:`custom_data`: the ``metadata.yaml`` ``custom_data`` entries that say what the bag
  is: setup, arms, cameras, and each camera's crop (ROI and output size from the crop
  nodes' parameter files; a ROI changed live with ``ros2 param set`` is not seen here).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional

import yaml

from hilserl_core.formats import bags
from hilserl_core.formats.config import flatten

from .graph import Graph, GraphError, NodeSpec, load_graph

__all__ = ["record_graph", "is_sim", "topics", "topic_names", "crops", "custom_data", "RECORD_ONLY_ARGUMENTS"]

# arguments of `hilserl record` that are not graph arguments
RECORD_ONLY_ARGUMENTS = ("bag", "episodes", "tail_s")


def is_sim(graph: Graph) -> bool:
    return any(n.package == "hilserl_sim" for n in graph.nodes)


def record_graph(setup: str, overrides: Optional[Mapping[str, str]] = None) -> Graph:
    """The graph a recording runs: ``setup`` with ``learning:=false`` (no actor, no learner),
    and in simulation the scripted operator driving the episodes."""
    overrides = dict(overrides or {})
    defaults = load_graph(setup)
    args = dict(defaults.arguments)
    if "learning" in args:
        if str(overrides.get("learning", "false")).lower() not in ("false", "0", "no", "off"):
            raise GraphError(f"a recording runs {setup} without actor and learner: learning:={overrides['learning']} is not allowed")
        overrides["learning"] = "false"
    if is_sim(defaults) and "operator" in args:
        overrides.setdefault("operator", "demo")
        if overrides["operator"] != "demo":
            raise GraphError(f"recording {setup}: the scripted operator must drive (operator:=demo), not operator:={overrides['operator']}")
    graph = load_graph(setup, overrides)
    if not is_sim(graph):
        return graph
    nodes = []
    for n in graph.nodes:
        if n.package == "hilserl_sim" and n.executable == "sim_node":
            params = dict(n.parameters)
            params["operator.drives_episodes"] = True
            n = dataclasses.replace(n, parameters=tuple(sorted(params.items())))
        nodes.append(n)
    return dataclasses.replace(graph, nodes=tuple(nodes))


def topics(graph: Graph) -> List[bags.TopicSpec]:
    return bags.recorded_topics(graph.arms, graph.cameras, sim=is_sim(graph))


def topic_names(graph: Graph) -> List[str]:
    return [t.name for t in topics(graph)]


def _node_parameters(spec: NodeSpec) -> Dict[str, Any]:
    """A node's parameters as its process gets them: the params files (``/**`` and its own
    name), then the inline ones."""
    out: Dict[str, Any] = {}
    for path in spec.params_files:
        try:
            doc = yaml.safe_load(open(path, encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise GraphError(f"{path}: cannot read parameters ({exc})") from exc
        for key in ("/**", spec.name, spec.fqn, spec.fqn.lstrip("/")):
            section = doc.get(key) if isinstance(doc, dict) else None
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                out.update(flatten(section["ros__parameters"]))
    out.update(dict(spec.parameters))
    return out


def crops(graph: Graph) -> Dict[str, Dict[str, Any]]:
    """``{"<arm>/<camera>": {"output_size": 128, "roi": [x, y, width, height]}}`` from the crop
    nodes (width 0: the largest centred square of the raw image)."""
    out = {}
    for n in graph.nodes:
        if n.package != "hilserl_perception":
            continue
        p = _node_parameters(n)
        arm = n.namespace.strip("/")
        cam = str(p.get("camera", ""))
        out[f"{arm}/{cam}"] = {
            "output_size": int(p.get("output_size", 128)),
            "roi": [int(p.get(f"roi.{k}", 0)) for k in ("x", "y", "width", "height")],
        }
    return out


def custom_data(graph: Graph) -> Dict[str, str]:
    """``metadata.yaml`` custom_data of a recording of ``graph`` (values are JSON strings but the setup)."""
    return {
        bags.KEY_SETUP: graph.setup,
        bags.KEY_ARMS: json.dumps(list(graph.arms), separators=(",", ":")),
        bags.KEY_CAMERAS: json.dumps([f"{a}/{c}" for a in graph.arms for c in graph.cameras], separators=(",", ":")),
        bags.KEY_CROPS: json.dumps(crops(graph), separators=(",", ":"), sort_keys=True),
    }
