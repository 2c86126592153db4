"""How the actor gets the scene reset between episodes: a std_srvs/Trigger service (the
simulator's ``/sim/reset``, a robot's reset node) or, with no service, the operator's
``/episode/reset`` once a person has reset the scene.

The service protocol: ask; an answer of success means the scene is reset; a refusal is
asked again after ``EpisodeCycle.retry_s``; no answer within ``reset_timeout_s`` (DDS can
drop a service response) at once. Every wait is reported on diagnostics.
"""

from __future__ import annotations

from std_srvs.srv import Trigger

from hilserl_core.robot.episode_cycle import EpisodeCycle
from hilserl_interfaces import diagnostics

EPISODE_RESET = "/episode/reset"


class SceneReset:
    def __init__(self, node, service: str, cycle: EpisodeCycle, diag: diagnostics.Diagnostics) -> None:
        self.node, self.service, self.cycle, self.diag = node, service, cycle, diag
        self.client = node.create_client(Trigger, service) if service else None
        self.future = None

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def request(self, next_episode: int) -> None:
        self.future = None
        if self.client is None:  # a person resets the scene and says when it is ready
            self.cycle.wait_for_operator()
            self.node.get_logger().info(f"episode {next_episode}: reset the scene, then publish {EPISODE_RESET} "
                                        f"(ros2 topic pub --once {EPISODE_RESET} std_msgs/msg/Empty)")
            self.diag.report("reset", diagnostics.WARN, f"waiting for the operator to reset the scene and publish {EPISODE_RESET}",
                             publish_now=True)
            return
        if not self.client.service_is_ready():
            self.cycle.service_unavailable()
            self.diag.report("reset", diagnostics.WARN, f"waiting for {self.service}")
            return
        self.future = self.client.call_async(Trigger.Request())
        self.cycle.reset_requested(self._now())

    def answered(self) -> bool:
        """Whether the service answered success; a refusal, or no answer within
        ``reset_timeout_s``, sends the request again (the cycle goes back to RESET)."""
        fut, now = self.future, self._now()
        if fut is not None and not fut.done():
            if not self.cycle.reset_timed_out(now):
                return False
            self.client.remove_pending_request(fut)
            why = f"no answer from {self.service} after {self.cycle.waited_s(now):.0f} s (reset_timeout_s): asking again"
        else:
            exc = fut.exception() if fut is not None else None
            result = fut.result() if fut is not None and exc is None else None
            if result is not None and result.success:
                return True
            detail = str(exc) if exc is not None else (result.message if result is not None else "no request")
            why = f"{self.service} did not reset the scene ({detail}): asking again in {self.cycle.retry_s:.0f} s"
            self.cycle.reset_refused(now)
        self.node.get_logger().warning(why, throttle_duration_sec=10.0)
        self.diag.report("reset", diagnostics.WARN, why, publish_now=True)
        return False
