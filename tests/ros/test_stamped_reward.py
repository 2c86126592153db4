"""The simulator standing in for the reward classifier (``reward_source: sim``) publishes
``/reward/success`` as the reward node does: a sensor_msgs/Joy per camera frame, stamped with
that frame, ``buttons[0]`` the ground truth that ``/sim/success`` carries."""

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, Joy
from std_msgs.msg import Bool

from hilserl_core.robot.actor_loop import success_from_msg
from hilserl_interfaces import qos, topics
from hilserl_sim.ros_sim_node import SimNode


def test_the_sims_ground_truth_reward_carries_the_stamp_of_its_frame(ros_context, spin_until):
    sim = SimNode(context=ros_context, parameter_overrides=[Parameter("task", value="pick_cube"),
                                                            Parameter("reward_source", value="sim")])
    peer = rclpy.create_node("reward_user", context=ros_context)
    frames, verdicts, truth = [], [], []
    peer.create_subscription(Image, "/left/cameras/wrist/image_raw", frames.append, qos.SENSOR)
    peer.create_subscription(Joy, topics.REWARD_SUCCESS, verdicts.append, qos.EVENTS)
    peer.create_subscription(Bool, "/sim/success", truth.append, qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sim)
    ex.add_node(peer)
    try:
        assert spin_until(ex, lambda: len(verdicts) >= 5 and len(frames) >= 5, 20), (len(verdicts), len(frames))
        frame_stamps = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in frames}
        judged = [(v.header.stamp.sec, v.header.stamp.nanosec) for v in verdicts]
        # (frames are best effort: one may be lost, or the newest still on its way)
        assert sum(j in frame_stamps for j in judged) >= len(judged) - 2, (judged, sorted(frame_stamps))
        assert len(set(judged)) == len(judged)  # one verdict per frame
        for v in verdicts:
            success, probability = success_from_msg(v)
            assert probability == float(success) and not success  # the cube lies on the table
        assert truth and not any(t.data for t in truth)
    finally:
        ex.shutdown()
        sim.destroy_node()
        peer.destroy_node()
