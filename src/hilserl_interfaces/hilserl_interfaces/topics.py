"""Topic names (docs/ARCHITECTURE.md "Topics per arm"). Per-arm names are relative and
resolve under the arm's namespace (``/left``, ``/right``)."""

from hilserl_core.formats.types import camera_key, split_camera  # noqa: F401 - camera entries, used with the names here

# per arm (relative)
CAMERA_RAW = "cameras/{camera}/image_raw"
CAMERA_CROPPED = "cameras/{camera}/image_cropped"
CURRENT_POSE = "current_pose"
CURRENT_TWIST = "current_twist"
EXTERNAL_WRENCH = "external_wrench"
GRIPPER_JOINT_STATES = "gripper/joint_states"
GRIPPER_COMMAND = "gripper/command"
POLICY_ACTION = "policy/action"
SPACENAV_TWIST = "spacenav/twist"
SPACENAV_JOY = "spacenav/joy"
TARGET_POSE = "target_pose"
TARGET_WRENCH = "target_wrench"
MUX_SOURCE = "mux/source"

# global (absolute)
REWARD_SUCCESS = "/reward/success"
REWARD_PROBABILITY = "/reward/probability"
TRANSITIONS = "/learner/transitions"
POLICY_WEIGHTS = "/learner/policy_weights"
EPISODE_METRICS = "/metrics/episodes"
DIAGNOSTICS = "/diagnostics"


def cropped_topic(entry: str) -> str:
    """``left/wrist`` -> ``/left/cameras/wrist/image_cropped``."""
    arm, cam = split_camera(entry)
    return f"/{arm}/{camera_cropped(cam)}"


def camera_raw(camera: str) -> str:
    return CAMERA_RAW.format(camera=camera)


def camera_cropped(camera: str) -> str:
    return CAMERA_CROPPED.format(camera=camera)
