"""RViz and rqt as graph nodes (``rviz:=true``, ``rqt:=true`` in the graphs): small wrappers
that start ``rviz2 -d <config>`` and ``rqt --perspective-file <perspective>`` with the files
under ``config/`` (``config_dir()``), since a graph entry passes ROS arguments only.

The graph gives each wrapper its file as a ``-p`` parameter, relative to ``config/``:

- ``rviz_viewer``: ``config`` (default ``rviz/hilserl.rviz``), ``arms`` and ``cameras`` (the
  graph's, ``left/wrist`` entries). The file is written for one arm, ``left``, and its cameras
  ``wrist`` and ``side`` (the single-arm robot); :func:`expand_rviz_config` repeats every
  per-arm display (topic under ``/left/``) for each arm and the cropped-image display for each
  camera, points the fixed frame at the first arm's base, and RViz opens that (written to a
  temporary file). ``rviz2 -d config/rviz/hilserl.rviz`` opens the file itself.
- ``rqt_viewer``: ``perspective`` (default ``rqt/hilserl.perspective``).

The viewers import no ROS; they need ``rviz2`` / ``rqt_gui`` on a full ROS install.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .graph import GraphError, config_dir

TEMPLATE_ARM = "left"
TEMPLATE_CAMERA_TOPIC = "/left/cameras/{camera}/image_cropped"
CROPPED_SUFFIX = "/image_cropped"


def parse_ros_parameters(argv: Sequence[str]) -> Dict[str, Any]:
    """The ``-p name:=value`` of a ``--ros-args`` list (values read as YAML, as rcl reads them)."""
    out: Dict[str, Any] = {}
    args = list(argv)
    for i, a in enumerate(args[:-1]):
        if a in ("-p", "--param") and ":=" in args[i + 1]:
            name, value = args[i + 1].split(":=", 1)
            out[name] = yaml.safe_load(value)
    return out


def display_topics(doc: Dict[str, Any]) -> List[str]:
    """Every topic an RViz config's displays subscribe to (Topic: {Value: ...}, Description Topic for robot models)."""
    out = []

    def walk(displays):
        for d in displays or []:
            for key in ("Topic", "Description Topic"):
                t = d.get(key)
                if isinstance(t, dict) and t.get("Value") and (key == "Topic" or d.get("Description Source") == "Topic"):
                    out.append(str(t["Value"]))
            walk(d.get("Displays"))

    walk(((doc or {}).get("Visualization Manager") or {}).get("Displays"))
    return out


def _with_arm(display: Dict[str, Any], arm: str) -> Dict[str, Any]:
    d = copy.deepcopy(display)
    d["Topic"]["Value"] = "/" + arm + d["Topic"]["Value"][len("/" + TEMPLATE_ARM):]
    d["Name"] = str(d.get("Name", "")).replace(TEMPLATE_ARM, arm, 1)
    return d


def expand_rviz_config(doc: Dict[str, Any], arms: Sequence[str], cameras: Sequence[str]) -> Dict[str, Any]:
    """The RViz config for a graph's ``arms`` and ``cameras`` (``arm/camera``) from the one-arm file."""
    doc = copy.deepcopy(doc)
    vm = doc["Visualization Manager"]
    image_template = None
    out = []
    for d in vm.get("Displays") or []:
        topic = (d.get("Topic") or {}).get("Value", "") if isinstance(d.get("Topic"), dict) else ""
        if topic.startswith(f"/{TEMPLATE_ARM}/") and topic.endswith(CROPPED_SUFFIX):
            if image_template is None:  # the first cropped image stands for all of them, placed where it was
                image_template = d
                out.append(None)
            continue
        if topic.startswith(f"/{TEMPLATE_ARM}/"):
            out += [_with_arm(d, arm) for arm in arms]
        else:
            out.append(d)
    images = []
    if image_template is not None:
        for entry in cameras:
            arm, _, cam = str(entry).partition("/")
            d = copy.deepcopy(image_template)
            d["Topic"]["Value"] = f"/{arm}/cameras/{cam}{CROPPED_SUFFIX}"
            d["Name"] = f"{arm} {cam} (cropped)"
            images.append(d)
    displays = []
    for d in out:
        displays += images if d is None else [d]
    vm["Displays"] = displays
    if arms:
        vm.setdefault("Global Options", {})["Fixed Frame"] = f"{arms[0]}_base"
    return doc


def _resolve(name: str, default: str) -> Path:
    path = Path(name or default)
    return path if path.is_absolute() else config_dir() / path


def _tool(package: str, executable: str, fallback: str) -> str:
    from .runner import find_executable

    try:
        return find_executable(package, executable)
    except GraphError:
        found = shutil.which(fallback)
        if found:
            return found
        raise GraphError(f"{package} is not installed ({executable} not found, nor {fallback} on PATH); "
                         f"install ros-$ROS_DISTRO-{package.replace('_', '-')} or start the graph without it") from None


def rviz_command(argv: Sequence[str]) -> Tuple[List[str], Optional[str]]:
    """``(command, expanded config path or None)`` that starts RViz for the ``-p`` parameters in ``argv``."""
    params = parse_ros_parameters(argv)
    path = _resolve(str(params.get("config") or ""), "rviz/hilserl.rviz")
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GraphError(f"{path}: cannot read the RViz config ({exc})") from None
    arms = list(params.get("arms") or [TEMPLATE_ARM])
    cameras = list(params.get("cameras") or [])
    if not cameras:
        return [_tool("rviz2", "rviz2", "rviz2"), "-d", str(path)], None
    # one file per user and arm/camera set, rewritten at every start (RViz is exec'd: nothing removes it after)
    tag = "_".join([*arms, *(str(c).replace("/", "-") for c in cameras)])
    tmp = os.path.join(tempfile.gettempdir(), f"hilserl-{os.getuid()}-{tag}.rviz")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(expand_rviz_config(doc, arms, cameras), f, sort_keys=False)
    return [_tool("rviz2", "rviz2", "rviz2"), "-d", tmp], tmp


def rqt_command(argv: Sequence[str]) -> List[str]:
    params = parse_ros_parameters(argv)
    path = _resolve(str(params.get("perspective") or ""), "rqt/hilserl.perspective")
    if not path.is_file():
        raise GraphError(f"{path}: no such rqt perspective")
    return [_tool("rqt_gui", "rqt_gui", "rqt"), "--perspective-file", str(path), "--force-discover"]


def _exec(command: List[str]) -> int:
    """Replace this process with the tool: the runner's and launch's signals reach it directly."""
    os.execv(command[0], command)
    return 0  # not reached


def rviz_main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, tmp = rviz_command(argv)
    except GraphError as exc:
        print(f"[rviz_viewer] {exc}", file=sys.stderr, flush=True)
        return 2
    return _exec(command)


def rqt_main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command = rqt_command(argv)
    except GraphError as exc:
        print(f"[rqt_viewer] {exc}", file=sys.stderr, flush=True)
        return 2
    return _exec(command)
