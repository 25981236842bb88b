"""The motion model of a followed face: its box carried forward at a constant velocity, the velocity an exponential
average of the box's last moves (frames are video frame numbers, so sampled frames move it further)."""
from dataclasses import dataclass

import numpy as np


@dataclass
class BoxMotion:
    box: np.ndarray  # x1, y1, x2, y2 where the face was last seen, float64
    seen: int  # the video frame it was last seen in
    velocity: np.ndarray  # per video frame
    smoothing: float = 0.5  # weight of the newest move in the velocity

    @classmethod
    def start(cls, box: np.ndarray, frame: int, smoothing: float) -> "BoxMotion":
        return cls(np.asarray(box, dtype=np.float64).copy(), frame, np.zeros(4), smoothing)

    def predicted(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.seen)

    def update(self, box: np.ndarray, frame: int) -> None:
        box = np.asarray(box, dtype=np.float64)
        if frame > self.seen:
            move = (box - self.box) / (frame - self.seen)
            self.velocity = (1 - self.smoothing) * self.velocity + self.smoothing * move
        self.box, self.seen = box.copy(), frame

    def state(self) -> dict:
        return {"box": self.box.tolist(), "seen": self.seen, "velocity": self.velocity.tolist(), "smoothing": self.smoothing}

    @classmethod
    def restore(cls, numbers: dict) -> "BoxMotion":
        return cls(np.array(numbers["box"], dtype=np.float64), numbers["seen"], np.array(numbers["velocity"], dtype=np.float64),
                   numbers["smoothing"])
