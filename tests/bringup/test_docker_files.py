"""docker/: the robot-PC and learner-host images and the compose file, checked statically.

No Docker daemon is reachable here, so nothing is built or started. What can be checked
without one is: the Dockerfiles copy only files that exist and that their .dockerignore lets
into the build context, every ARG has a default, torch is pinned as in requirements.txt (CPU
index on the robot, a CUDA index on the learner), the learner image has no franka_ros2 and no
controllers, the scripts they run exist and are executable; the compose file's services and
profiles, that every command names a launch file, executable and parameters file that exist,
that the learner services start the learner of the matching real graph (same parameters) on
the GPU, that both machines share the DDS settings, and, where a compose client is installed,
that it accepts the file (`docker compose config`, or the standalone `docker-compose`).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hilserl import graph as G
from hilserl_core.formats.config import describe
from hilserl_core.rl.build import LearnerNodeConfig

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = {"robot": DOCKER / "Dockerfile.robot", "learner": DOCKER / "Dockerfile.learner"}
COMPOSE = DOCKER / "compose.yaml"
WORKSPACE = "/opt/hilserl_ws"  # where both images build the workspace (WORKDIR)

# service -> (image kind, real graph it belongs to, launch file on the robot)
SERVICES = {
    "robot": ("robot", "real_single_arm", "bringup_single_arm.launch.py"),
    "robot-dual": ("robot", "real_dual_arm", "bringup_dual_arm.launch.py"),
    "learner": ("learner", "real_single_arm", None),
    "learner-dual": ("learner", "real_dual_arm", None),
}
ROS_ENV = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS", "FASTDDS_BUILTIN_TRANSPORTS",
           "RMW_IMPLEMENTATION")


# -- Dockerfiles ---------------------------------------------------------------------------------

def parse_dockerfile(path: Path):
    """(INSTRUCTION, arguments) per instruction: continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        if pending and line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            word, _, rest = text.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name}: the last instruction ends in a line continuation"
    return out


def copy_sources(instructions):
    """(sources, destination) of each COPY/ADD, flags (--chmod=...) left out."""
    out = []
    for word, rest in instructions:
        if word in ("COPY", "ADD"):
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def arg_defaults(instructions):
    return {name: value for name, _, value in
            (rest.partition("=") for word, rest in instructions if word == "ARG") if value}


def _glob_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regular expression over a slash-separated path
    (`*` and `?` stay inside one path segment, `**` spans segments)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(rules, path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context: the last
    rule that matches the path or one of its parent directories decides; `!` lets it back in."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for rule in rules:
        negate = rule.startswith("!")
        regex = _glob_regex(rule[1:] if negate else rule)
        if any(regex.match(p) for p in prefixes):
            verdict = not negate
    return verdict


def dockerignore_rules(dockerfile: Path):
    path = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert path.is_file(), f"{path.name} missing: the whole repository (.venv, build/, runs/) would be sent to the build"
    return [ln.strip().lstrip("/") for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def tracked_files(under: str):
    out = subprocess.run(["git", "ls-files", "--", under], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def image(request):
    return request.param, parse_dockerfile(DOCKERFILES[request.param])


def test_copy_sources_exist_and_are_in_the_build_context(image):
    kind, instructions = image
    rules = dockerignore_rules(DOCKERFILES[kind])
    copies = copy_sources(instructions)
    assert copies, f"Dockerfile.{kind} copies nothing"
    for sources, _ in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile.{kind}: COPY {src}: no such path in the repository"
            files = tracked_files(src) if (ROOT / src).is_dir() else [src]
            assert files, f"Dockerfile.{kind}: COPY {src}: nothing tracked there"
            kept_out = [f for f in files if ignored(rules, f)]
            assert not kept_out, f"Dockerfile.{kind}: COPY {src}, but its .dockerignore leaves out {kept_out[:5]}"
    # what must not be sent to the daemon: the venv, colcon's output, training runs, git objects
    for heavy in (".venv/bin/python", "build/hilserl/x", "install/setup.bash", "log/latest", "runs/x/checkpoints",
                  ".git/HEAD", "src/hilserl/hilserl/__pycache__/cli.cpython-312.pyc"):
        assert ignored(rules, heavy), f"Dockerfile.{kind}.dockerignore lets {heavy} into the build context"


def test_dockerignore_matching_follows_docker_rules():
    rules = ["*", "!src", "!docker/*.sh", "**/__pycache__"]
    assert ignored(rules, "README.md") and ignored(rules, "docs/x.md") and ignored(rules, "docker/compose.yaml")
    assert not ignored(rules, "src/a/b.py") and not ignored(rules, "docker/entrypoint.sh")
    assert ignored(rules, "src/a/__pycache__/b.pyc")


def test_every_arg_has_a_default(image):
    kind, instructions = image
    seen_with_default = set()
    for word, rest in instructions:
        if word != "ARG":
            continue
        name, has_default, value = rest.partition("=")
        if has_default and value:
            seen_with_default.add(name)
        else:  # a bare ARG only re-declares, after FROM, one given a default before it
            assert name in seen_with_default, f"Dockerfile.{kind}: ARG {name} has no default"


def requirements_torch() -> str:
    pins = [ln.split("==", 1)[1].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if re.match(r"torch\s*==", ln)]
    assert len(pins) == 1, "requirements.txt must pin torch exactly once (torch==X.Y.Z)"
    return pins[0]


def test_torch_is_pinned_as_in_requirements_from_the_right_wheel_index():
    want = requirements_torch()
    args = {kind: arg_defaults(parse_dockerfile(path)) for kind, path in DOCKERFILES.items()}
    for kind, a in args.items():
        assert a.get("TORCH_VERSION") == want, f"Dockerfile.{kind}: TORCH_VERSION {a.get('TORCH_VERSION')}, requirements.txt: {want}"
    assert args["robot"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    cuda = args["learner"]["TORCH_CUDA"]
    assert re.fullmatch(r"cu\d{3}", cuda), f"Dockerfile.learner: TORCH_CUDA {cuda!r} is not a CUDA wheel tag (cu130)"
    assert args["learner"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/${TORCH_CUDA}"
    for kind, path in DOCKERFILES.items():  # and the pin is what the install step receives
        runs = [rest for word, rest in parse_dockerfile(path) if word == "RUN" and "install_python_deps.sh" in rest]
        assert len(runs) == 1 and '"${TORCH_VERSION}" "${TORCH_INDEX_URL}"' in runs[0], f"Dockerfile.{kind}: {runs}"


def _image_requirements() -> list:
    """requirements.txt through install_python_deps.sh's own filter (its grep line, run by grep)."""
    script = (DOCKER / "install_python_deps.sh").read_text()
    m = re.search(r"grep -vE '([^']+)' \"\$requirements\"", script)
    assert m, "install_python_deps.sh: the requirements filter (grep -vE '...' \"$requirements\") is gone"
    out = subprocess.run(["grep", "-vE", m.group(1), str(ROOT / "requirements.txt")], capture_output=True, text=True)
    return [ln for ln in out.stdout.splitlines() if ln.strip() and not ln.startswith("#")]


def test_requirements_filter_leaves_torch_and_the_pip_only_ros_packages_to_others():
    kept = _image_requirements()
    names = {re.split(r"[=<>!~ ]", ln, maxsplit=1)[0] for ln in kept}
    assert not names & {"torch", "setuptools", "empy", "lark", "catkin-pkg"}, names
    assert not [n for n in names if n.startswith(("ros-", "colcon-"))], names
    for needed in ("numpy", "safetensors", "pyyaml", "hidapi", "mujoco", "rosbags"):
        assert needed in names, f"install_python_deps.sh would leave out {needed}"


def test_learner_image_has_no_franka_ros2_and_no_controllers():
    learner = parse_dockerfile(DOCKERFILES["learner"])
    text = "\n".join(rest for _, rest in learner)
    assert "franka" not in text.lower(), "Dockerfile.learner installs or names franka_ros2"
    assert "ros2-control" not in text and "HILSERL_BUILD_CONTROLLERS=ON" not in text
    build = [rest for word, rest in learner if word == "RUN" and "build_workspace.sh" in rest]
    assert len(build) == 1 and "--packages-skip hilserl_controllers" in build[0], build


def test_robot_image_has_franka_ros2_controllers_drivers_and_cpu_torch():
    robot = parse_dockerfile(DOCKERFILES["robot"])
    runs = "\n".join(rest for word, rest in robot if word == "RUN")
    assert "github.com/frankarobotics/franka_ros2" in runs and "${FRANKA_ROS2_VERSION}" in runs
    for pkg in ("ros2-control", "ros2-controllers", "generate-parameter-library", "realsense2-camera", "usb-cam",
                "spacenav", "rosbag2-storage-mcap", "rviz2"):
        assert f"ros-${{ROS_DISTRO}}-{pkg}" in runs, f"Dockerfile.robot installs no ros-$ROS_DISTRO-{pkg}"
    assert "libhidapi-hidraw0" in runs
    build = [rest for word, rest in robot if word == "RUN" and "build_workspace.sh" in rest]
    assert len(build) == 1 and "-DHILSERL_BUILD_CONTROLLERS=ON" in build[0], build
    # the controllers' build dependencies from franka_ros2 are in the underlay build
    controllers_xml = (ROOT / "src/hilserl_controllers/package.xml").read_text()
    for dep in re.findall(r"<depend>(franka_\w+)</depend>", controllers_xml):
        assert dep in runs, f"Dockerfile.robot does not build {dep}, which hilserl_controllers depends on"


def test_both_images_build_the_same_workspace_the_same_way():
    def workspace_steps(kind):
        ins = parse_dockerfile(DOCKERFILES[kind])
        workdir = [rest for word, rest in ins if word == "WORKDIR"][-1]
        copies = [(tuple(s), d) for s, d in copy_sources(ins) if d.startswith("./")]
        return workdir, copies
    robot, learner = workspace_steps("robot"), workspace_steps("learner")
    assert robot == learner
    assert robot[0] == WORKSPACE
    assert {s[0] for s, _ in robot[1]} == {"src", "config", "launch", "colcon.meta"}


def test_scripts_the_images_run_exist_and_are_executable(image):
    kind, instructions = image
    installed = {dest: srcs[0] for srcs, dest in copy_sources(instructions) if len(srcs) == 1}
    entry = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    assert entry == [["/entrypoint.sh"]], f"Dockerfile.{kind}: ENTRYPOINT {entry}"
    cmd = [json.loads(rest) for word, rest in instructions if word == "CMD"]
    assert cmd and cmd[-1] == ["bash"], f"Dockerfile.{kind}: CMD {cmd}"
    called = ["/entrypoint.sh"] + [first for word, rest in instructions if word == "RUN"  # each command's first word
                                   for first in (seg.split()[0] for seg in re.split(r"&&|\|\||;", rest) if seg.split())
                                   if first.endswith(".sh")]
    assert len(called) >= 3, f"Dockerfile.{kind}: expected the entrypoint and both shared scripts, got {called}"
    for target in called:
        assert target in installed, f"Dockerfile.{kind} runs {target}, which no COPY puts there"
        source = ROOT / installed[target]
        assert source.is_file() and os.access(source, os.X_OK), f"{installed[target]} missing or not executable"
        mode = subprocess.run(["git", "ls-files", "-s", installed[target]], cwd=ROOT, capture_output=True,
                              text=True).stdout.split()
        if mode:  # committed: executable in git too, so a fresh checkout keeps it
            assert mode[0] == "100755", f"{installed[target]} is committed without the executable bit"
        syntax = subprocess.run(["bash", "-n", str(source)], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{installed[target]}: {syntax.stderr}"


def test_no_reference_to_the_old_single_dockerfile():
    stale = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "src").rglob("*.txt")),
                 *sorted((ROOT / "src").rglob("*.md")), *sorted((ROOT / "tests").rglob("*.py"))]:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if re.search(r"docker/Docker" r"file(?![.\w])", line):  # split so that this line does not match
                stale.append(f"{path.relative_to(ROOT)}:{n}")
    assert not stale, f"the one Dockerfile became docker/Dockerfile.robot and docker/Dockerfile.learner: {stale}"


# -- compose.yaml --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def command_words(service: dict) -> list:
    """The command as words; a `bash -c SCRIPT` command as the script's words."""
    cmd = service["command"]
    words = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if words[:2] == ["bash", "-c"]:
        words = shlex.split(words[2])
    return words[1:] if words and words[0] == "exec" else words


def console_scripts(package: str) -> set:
    setup = (ROOT / "src" / package / "setup.py").read_text()
    return set(re.findall(r"[\"'](\w+)\s*=\s*[\w.]+:\w+[\"']", setup))


def ros_params(words: list) -> dict:
    """-p name:=value pairs of a --ros-args list, values read as YAML (as rcl reads them)."""
    out = {}
    for flag, item in zip(words, words[1:]):
        if flag == "-p":
            name, _, value = item.partition(":=")
            out[name] = yaml.safe_load(value)
    return out


def volume_target(volume: str) -> str:
    """The container path of a `source:target[:mode]` volume (the source may hold `${VAR:-x}`)."""
    rest, _, last = volume.rpartition(":")
    return rest.rpartition(":")[2] if last in ("ro", "rw") else last


def test_services_and_profiles(compose):
    services = compose["services"]
    slowest_stop = max(n.shutdown_timeout_s for setup in ("real_single_arm", "real_dual_arm", "sim_single_arm", "sim_dual_arm")
                       for n in G.load_graph(setup).nodes)
    assert set(services) == set(SERVICES)
    for name, (kind, _, _) in SERVICES.items():
        svc = services[name]
        assert svc.get("profiles") == [name], f"{name}: profiles {svc.get('profiles')}, one of its own expected"
        build = svc["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT, f"{name}: build context is not the repository root"
        assert build["dockerfile"] == f"docker/Dockerfile.{kind}" and (ROOT / build["dockerfile"]).is_file()
        assert svc["network_mode"] == "host", f"{name}: DDS discovery needs the host network"
        assert svc.get("stop_signal") == "SIGINT", f"{name}: Ctrl-C is how the nodes stop cleanly (final checkpoint)"
        # docker's SIGKILL comes after the grace period: not before the slowest node's own shutdown_timeout
        grace = svc.get("stop_grace_period", "10s")
        assert grace.endswith("s") and float(grace[:-1]) > slowest_stop, f"{name}: stop_grace_period {grace}"


def test_commands_name_launch_files_executables_and_files_that_exist(compose):
    for name, (_, _, launch_file) in SERVICES.items():
        words = command_words(compose["services"][name])
        assert words[0] == "ros2", f"{name}: {words}"
        if words[1] == "launch":
            assert words[2] == "hilserl" and words[3] == launch_file, f"{name}: {words[:4]}"
            assert (ROOT / "launch" / words[3]).is_file()
        else:
            assert words[1] == "run", f"{name}: {words}"
            package, executable = words[2], words[3]
            assert executable in console_scripts(package), f"{name}: ros2 run {package} {executable}: no such executable"
        for w in words:
            if w.startswith(WORKSPACE + "/"):
                rel = w[len(WORKSPACE) + 1:]
                assert rel.split("/")[0] in ("config", "launch") and (ROOT / rel).is_file(), f"{name}: {w} does not exist"


def test_robot_services_pass_the_launch_files_robot_ip_arguments(compose):
    launch_support = (ROOT / "src/hilserl/hilserl/launch_support.py").read_text()
    for name, expected, setup in (("robot", ["robot_ip"], "real_single_arm"),
                                  ("robot-dual", ["robot_ip_left", "robot_ip_right"], "real_dual_arm")):
        words = command_words(compose["services"][name])
        given = [w.split(":=", 1)[0] for w in words if ":=" in w]
        assert given == expected + ["learner"], f"{name}: {given}"
        for arg in expected:
            assert f'"{arg}"' in launch_support, f"the real launch files declare no {arg}"
            env_name = arg.upper()
            assert env_name in compose["services"][name]["environment"], f"{name}: ${env_name} is not passed in"
        # the robot graph leaves its learner to the learner service unless told otherwise
        assert compose["services"][name]["environment"]["HILSERL_LEARNER"] == "${HILSERL_LEARNER:-remote}"
        graph = G.load_graph(setup, {"learner": "remote"})
        assert "learner_node" not in [n.executable for n in graph.nodes]


def test_learner_services_start_the_real_graphs_learner_on_the_gpu(compose):
    schema = {p.name: p for p in describe(LearnerNodeConfig)}
    for name, (kind, setup, _) in SERVICES.items():
        if kind != "learner":
            continue
        words = command_words(compose["services"][name])
        assert words[1:4] == ["run", "hilserl_learner", "learner_node"]
        graph_learner = G.load_graph(setup).node("/learner")
        files = [Path(w).name for flag, w in zip(words, words[1:]) if flag == "--params-file"]
        assert files == [Path(f).name for f in graph_learner.params_files], f"{name}: params files {files}"
        params = ros_params(words)
        for key, value in params.items():
            assert key in schema, f"{name}: -p {key}: the learner has no such parameter (it would refuse to start)"
            if schema[key].choices:
                assert value in schema[key].choices, f"{name}: -p {key}:={value} not in {schema[key].choices}"
        graph_params = graph_learner.parameter_dict()
        for key in ("arms", "cameras", "checkpoint_dir"):
            assert params[key] == graph_params[key], f"{name}: {key} {params[key]}, the {setup} graph: {graph_params[key]}"
        assert params["device"] == "cuda" and params["learner.storage"] == "images"
        assert "-r" in words and "__node:=learner" in words, f"{name}: not named /learner as in the graph"
        # the checkpoints land on the host: checkpoint_dir (relative to the workspace) is under a volume
        targets = [volume_target(v) for v in compose["services"][name]["volumes"]]
        assert any(f"{WORKSPACE}/{params['checkpoint_dir']}".startswith(t + "/") for t in targets), targets


def test_every_service_shares_the_dds_settings(compose):
    envs = {name: compose["services"][name]["environment"] for name in SERVICES}
    for key in ROS_ENV:
        values = {name: env.get(key) for name, env in envs.items()}
        assert None not in values.values(), f"{key} missing in {[n for n, v in values.items() if v is None]}"
        assert len(set(values.values())) == 1, f"{key} differs between the services: {values}"
    domain = envs["robot"]["ROS_DOMAIN_ID"]
    assert domain.startswith("${ROS_DOMAIN_ID"), "ROS_DOMAIN_ID must come from the machine's environment"
    assert "SUBNET" in envs["robot"]["ROS_AUTOMATIC_DISCOVERY_RANGE"], "two machines: discovery beyond LOCALHOST"


def test_gpu_only_on_the_learner_and_realtime_devices_only_on_the_robot(compose):
    for name, (kind, _, _) in SERVICES.items():
        svc = compose["services"][name]
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if kind == "learner":
            assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), \
                f"{name}: no NVIDIA GPU reservation"
            assert not svc.get("privileged")
        else:
            assert not devices, f"{name}: reserves a GPU"
            assert svc.get("privileged") or svc.get("devices"), f"{name}: no access to cameras and SpaceMice"
            assert svc["ipc"] == "host"
            limits = svc["ulimits"]
            assert limits["rtprio"] >= 90 and limits["memlock"] == -1, f"{name}: no real-time limits for libfranka"
            assert "SYS_NICE" in svc.get("cap_add", []) or svc.get("privileged")


def compose_client():
    """`docker compose` (plugin) or the standalone `docker-compose`, whichever is installed."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_client_accepts_the_file():
    client = compose_client()
    if client is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here; the compose file was checked "
                    "only by the YAML tests above")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROS_", "HILSERL_", "ROBOT_IP"))}
    env.update(ROS_DOMAIN_ID="17", ROS_STATIC_PEERS="192.168.1.20", HILSERL_ENCODER_WEIGHTS="/data/resnet10.safetensors")
    args = [*client, "-f", str(COMPOSE)]
    for name in SERVICES:
        args += ["--profile", name]
    out = subprocess.run([*args, "config"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, f"{' '.join(client)} config refused docker/compose.yaml:\n{out.stderr}"
    resolved = yaml.safe_load(out.stdout)["services"]
    assert set(resolved) == set(SERVICES)
    for name, svc in resolved.items():
        assert str(svc["environment"]["ROS_DOMAIN_ID"]) == "17", name
        assert svc["environment"]["ROS_STATIC_PEERS"] == "192.168.1.20", name
    learner = resolved["learner"]["command"]
    learner = " ".join(learner) if isinstance(learner, list) else learner
    assert "encoder_weights:='/data/resnet10.safetensors'" in learner
