"""A gallery of face descriptors (a tracklet's or a person's) and the distance between galleries.

The distance of two galleries is that of their nearest pair: a person seen wide in one shot and close in another
matches on the faces that resemble each other most. A full gallery drops the descriptor nearest to another one (the
most redundant), so that it keeps the variety of views it has seen rather than only the latest.
"""
from dataclasses import dataclass, field

import numpy as np

from .dlib_models import DESCRIPTOR_DIM


@dataclass
class Gallery:
    capacity: int
    descriptors: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.descriptors)

    def array(self) -> np.ndarray:
        return np.asarray(self.descriptors, dtype=np.float32).reshape(-1, DESCRIPTOR_DIM)

    def distance(self, other: "Gallery | np.ndarray") -> float:
        """Euclidean distance of the nearest pair between this gallery and `other` (a gallery or descriptors); inf
        when either is empty."""
        theirs = other.array() if isinstance(other, Gallery) else np.asarray(other, dtype=np.float32).reshape(-1, DESCRIPTOR_DIM)
        if not self.descriptors or not len(theirs):
            return float("inf")
        return float(pairwise(self.array(), theirs).min())

    def add(self, descriptor: np.ndarray) -> None:
        self.descriptors.append(np.asarray(descriptor, dtype=np.float32))
        if len(self.descriptors) > self.capacity:
            d = pairwise(self.array(), self.array())
            np.fill_diagonal(d, np.inf)
            del self.descriptors[int(np.argmin(d.min(axis=1)))]

    def extend(self, other: "Gallery") -> None:
        for descriptor in other.descriptors:
            self.add(descriptor)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances of every row of `a` to every row of `b`."""
    return np.linalg.norm(a[:, None, :].astype(np.float64) - b[None, :, :], axis=2)
