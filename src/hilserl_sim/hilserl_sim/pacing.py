"""How fast simulated time runs (no ROS): the simulator node asks :class:`Pacer` how many physics
steps to take now.

Two rules, both in wall-clock time:

- ``real_time_factor`` (0 < f <= 1): simulated time runs at most ``f`` times as fast as the wall
  clock. Each camera frame re-anchors the schedule, so a frame comes at least
  ``camera_period / f`` after the one before; between frames the physics catches up if a timer
  tick came late.
- ``lockstep``: after a camera frame, physics waits until every arm's intervention mux has
  reported (``mux/executed``) an action stamped with that frame's own stamp (the policy's action
  for it; the mux's timer steps, while no policy action comes, carry their own time and do not
  count, so an actor waiting for its learner holds the simulation). The action then
  acts from the frame on (no latency), and a machine too slow for 10 Hz slows the simulation
  instead of handing the policy frames at a rate it will not see on the robot. Lockstep engages
  when an action first answers a frame; when no answer comes for ``timeout_s`` (no actor, the
  actor between episodes, a learner checkpoint), it lets go and simulated time follows the wall
  clock until an action answers a frame again. A scene reset ends the wait for the old scene's
  frame and lets go until an action answers a frame of the new scene.

Faster than real time is not offered: every node stamps with the wall clock and the actor takes
frames about one control period apart in stamp time, so frames closer than that would be skipped.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Deque, Iterable, Optional, Set

STAMP_TOL_S = 1e-4  # an action's stamp "equals" a frame's within this (copies of one header stamp)


class Pacer:
    def __init__(self, step_s: float, real_time_factor: float = 1.0, lockstep: bool = False, timeout_s: float = 5.0,
                 max_steps_per_tick: int = 20) -> None:
        if not 0.0 < real_time_factor <= 1.0:
            raise ValueError(f"real_time_factor must be in (0, 1], got {real_time_factor}")
        self.step_s, self.rtf, self.lockstep, self.timeout_s = float(step_s), float(real_time_factor), bool(lockstep), float(timeout_s)
        self.max_steps_per_tick = int(max_steps_per_tick)
        self.engaged = False  # lockstep: an action answered a frame, and none has timed out since
        self.waits = 0  # frames lockstep waited for
        self.timeouts = 0  # times it let go
        self._anchor_wall: Optional[float] = None
        self._anchor_sim = 0.0
        self._frame_stamp: Optional[float] = None  # newest frame's stamp (s)
        self._awaiting: Set[str] = set()  # arms whose action for that frame has not been reported
        self._released_stamp = -math.inf  # the newest frame's stamp when lockstep last let go
        self._recent_stamps: Deque[float] = deque(maxlen=50)  # stamps of the last frames (engaging)

    @property
    def waiting(self) -> bool:
        return bool(self._awaiting)

    @property
    def state(self) -> str:
        """off, idle (no action has answered a frame), engaged, or waiting (for a frame's action)."""
        if not self.lockstep:
            return "off"
        return "waiting" if self._awaiting else "engaged" if self.engaged else "idle"

    def steps_due(self, wall_s: float, sim_s: float) -> int:
        """Physics steps to take now (the caller stops early at a camera frame and calls :meth:`frame`)."""
        if self._anchor_wall is None:
            self._anchor_wall, self._anchor_sim = wall_s, sim_s
        if self._awaiting:
            return 0
        allowed = self._anchor_sim + (wall_s - self._anchor_wall) * self.rtf
        return max(0, min(self.max_steps_per_tick, math.floor((allowed - sim_s) / self.step_s + 1e-6)))

    def frame(self, wall_s: float, sim_s: float, stamp_s: float, arms: Iterable[str]) -> None:
        """A camera frame stamped ``stamp_s`` went out at simulated time ``sim_s``."""
        self._anchor_wall, self._anchor_sim = wall_s, sim_s
        self._frame_stamp = stamp_s
        self._recent_stamps.append(stamp_s)
        self._awaiting = set(arms) if self.lockstep and self.engaged else set()
        self.waits += bool(self._awaiting)

    def executed(self, arm: str, stamp_s: float) -> bool:
        """An arm's mux reported a step stamped ``stamp_s``; True when that ends the wait."""
        if not self.lockstep or self._frame_stamp is None:
            return False
        if not self.engaged:
            # an action for one of the recent frames since lockstep last let go (perhaps not the
            # newest: a slow actor falls behind in real time): the actor answers frames, wait for it
            # from the next one on
            self.engaged = stamp_s > self._released_stamp + STAMP_TOL_S and any(
                abs(stamp_s - f) <= STAMP_TOL_S for f in self._recent_stamps)
            return False
        if abs(stamp_s - self._frame_stamp) > STAMP_TOL_S:
            return False
        was = bool(self._awaiting)
        self._awaiting.discard(arm)
        return was and not self._awaiting

    def check_timeout(self, wall_s: float) -> bool:
        """True (once) when the wait for a frame's action has lasted ``timeout_s``: lockstep lets go."""
        if not self._awaiting or self._anchor_wall is None or wall_s - self._anchor_wall < self.timeout_s:
            return False
        self._awaiting.clear()
        self.engaged = False
        self._released_stamp = self._frame_stamp if self._frame_stamp is not None else -math.inf
        self.timeouts += 1
        self._anchor_wall = wall_s  # simulated time goes on from now, not from the frame
        return True

    def scene_reset(self) -> None:
        """The scene was reset: the old scene's frame needs no answer, and lockstep lets go until
        an action answers a frame of the new scene (an actor starts an episode only on poses
        measured after it heard the reset was done, later than the new scene's first frame)."""
        self._awaiting.clear()
        if self.engaged:
            self.engaged = False
            self._released_stamp = self._frame_stamp if self._frame_stamp is not None else -math.inf
