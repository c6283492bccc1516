"""Exact-stamp pairing of messages from several topics (image + camera_info), without ROS.

Same semantics as message_filters.TimeSynchronizer, which we use instead when it is importable: each
input keeps up to ``queue_size`` messages; when every input holds a message with the same stamp, the
callback gets them (in input order) and everything older is discarded. Discarded messages of input 0
(the images) are reported through ``on_discard`` so the node counts them, never loses them silently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class StampSynchronizer:
    def __init__(self, inputs: int, *, queue_size: int, callback: Callable[..., None],
                 on_discard: Callable[[int, Any], None] | None = None) -> None:
        if inputs < 2 or queue_size < 1:
            raise ValueError(f"need >= 2 inputs and queue_size >= 1, got {inputs} and {queue_size}")
        self.queue_size, self.callback, self.on_discard = queue_size, callback, on_discard
        self._queues: list[OrderedDict[int, Any]] = [OrderedDict() for _ in range(inputs)]

    def add(self, index: int, message: Any, stamp_ns: int) -> None:
        queue = self._queues[index]
        queue[stamp_ns] = message
        queue.move_to_end(stamp_ns)
        while len(queue) > self.queue_size:
            _, old = queue.popitem(last=False)
            self._discarded(index, old)
        if all(stamp_ns in q for q in self._queues):
            matched = [q.pop(stamp_ns) for q in self._queues]
            for i, q in enumerate(self._queues):  # older messages can never be matched any more
                for old_stamp in [s for s in q if s < stamp_ns]:
                    self._discarded(i, q.pop(old_stamp))
            self.callback(*matched)

    def _discarded(self, index: int, message: Any) -> None:
        if self.on_discard is not None:
            self.on_discard(index, message)
