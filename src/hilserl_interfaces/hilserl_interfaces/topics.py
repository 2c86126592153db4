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
# /reward/success: sensor_msgs/Joy, the success verdict on one camera frame (reward_success_msg):
#   buttons[0] 1 success / 0 not, axes[0] the classifier's probability (ground truth: 1.0 / 0.0),
#   header.stamp the stamp of the frame judged (the oldest of the frames classified), so the actor
#   pairs it with the observation holding that frame (hilserl_core.robot.actor_loop).
REWARD_SUCCESS = "/reward/success"
REWARD_PROBABILITY = "/reward/probability"
TRANSITIONS = "/learner/transitions"
# /learner/transition_acks: std_msgs/String, JSON {"learner": <learner session>, "streams": [{"actor",
#   "session", "through"}]}: every transition of that actor session up to sequence number "through"
#   is stored durably (hilserl_core.rl.delivery); the actor keeps and resends the rest.
TRANSITION_ACKS = "/learner/transition_acks"
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


def reward_success_msg(success: bool, probability: float, stamp):
    """The ``/reward/success`` message (sensor_msgs/Joy) for the frame stamped ``stamp``
    (a builtin_interfaces/Time, copied from the judged frame's header)."""
    from sensor_msgs.msg import Joy

    msg = Joy()
    msg.header.stamp = stamp
    msg.axes = [float(probability)]
    msg.buttons = [1 if success else 0]
    return msg


def arm_state_msgs(stamp, frame_id: str, position, quat, twist, wrench):
    """``current_pose``, ``current_twist`` and ``external_wrench`` of one arm, one header: the
    TCP pose (position, quaternion x, y, z, w), its twist and the external wrench, base axes."""
    from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped

    from hilserl_core.formats import msgconv

    p = PoseStamped()
    p.header.stamp, p.header.frame_id = stamp, frame_id
    msgconv.fill_pose(p.pose, position, quat)
    t = TwistStamped(header=p.header)
    msgconv.fill_twist(t.twist, twist)
    w = WrenchStamped(header=p.header)
    msgconv.fill_wrench(w.wrench, wrench)
    return p, t, w
