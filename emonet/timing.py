"""Seconds spent per stage of a run, added up by a context manager (`predictions.json` reports them and
benchmarks/bench_predict.py reads them). A stage entered inside another is counted to itself alone, so that the
stages add up to the time spent (the landmarks a descriptor needs count as landmarks, not twice)."""
import contextlib
import time
from collections.abc import Iterator


class StageTimer:
    def __init__(self, stages: tuple[str, ...], seconds: dict[str, float] | None = None):
        self.seconds = dict.fromkeys(stages, 0.0) | (seconds or {})
        self._running: list[str] = []
        self._since = 0.0

    def _charge(self) -> None:
        now = time.perf_counter()
        if self._running:
            self.seconds[self._running[-1]] += now - self._since
        self._since = now

    @contextlib.contextmanager
    def __call__(self, stage: str):
        self._charge()
        self._running.append(stage)
        try:
            yield
        finally:
            self._charge()
            self._running.pop()

    def iterate(self, items: Iterator, stage: str) -> Iterator:
        """`items`, with the time spent producing each added to `stage` (a generator's work happens in next())."""
        while True:
            with self(stage):
                item = next(items, StopIteration)
            if item is StopIteration:
                return
            yield item
