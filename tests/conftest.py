"""Test-session set-up shared by every test directory.

ROS tests talk over DDS on loopback only, and every pytest process gets its own
ROS_DOMAIN_ID so that parallel or repeated runs on one machine never see each
other's nodes.
"""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if "HILSERL_TEST_KEEP_DOMAIN" not in os.environ:
    # Fast DDS maps domain ids to UDP ports; 1..100 stays inside the safe range.
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

try:  # keep torch from oversubscribing the 2-core CI machine
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
except ImportError:  # pragma: no cover - torch is in requirements.txt
    pass
