"""From classifier probabilities to the binary success signal (the sparse reward).

A single frame above the threshold can be a glitch (a hand crossing the view, a
reflection); ``consecutive_frames`` > 1 demands that many in a row.
"""

from __future__ import annotations


class SuccessRule:
    def __init__(self, threshold: float = 0.5, consecutive_frames: int = 1):
        self.configure(threshold, consecutive_frames)
        self.streak = 0

    def configure(self, threshold: float, consecutive_frames: int) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
        if consecutive_frames < 1:
            raise ValueError(f"consecutive_frames must be >= 1, got {consecutive_frames}")
        self.threshold, self.consecutive_frames = float(threshold), int(consecutive_frames)

    def update(self, probability: float) -> bool:
        self.streak = self.streak + 1 if probability > self.threshold else 0
        return self.streak >= self.consecutive_frames

    def reset(self) -> None:
        self.streak = 0
