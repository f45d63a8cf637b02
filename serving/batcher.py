"""Dynamic micro-batching: concurrent requests are run together by onnxruntime, off the event loop.

A batch starts with the oldest waiting request and takes the requests behind it while it holds fewer than
``max_batch_size`` windows and the first has waited less than ``max_queue_delay_us`` (Triton's
``dynamic_batching { max_queue_delay_microseconds }``); a request is never split, so one larger than the
batch size runs alone. The queue is bounded in windows; a request that does not fit is refused at once
(:class:`QueueFull`, a 503 with Retry-After), so overload costs clients a retry, not memory or latency.

Each request carries the model it was validated against. A batch only holds requests of one model, so after
a hot swap the requests already queued still run on the old model and no request ever sees a mix.

One worker thread runs the batches: onnxruntime already spreads one run over its intra-op threads, and
while a batch runs the next one fills up, which is where the batching comes from.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serving.metrics import Metrics
from serving.runtime import LoadedModel

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The batching queue holds too many windows; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("the server is at capacity (batching queue full); retry later")
        self.retry_after_s = retry_after_s


class InferenceFailed(RuntimeError):
    """onnxruntime raised on a batch this request was part of."""


@dataclass
class _Item:
    model: LoadedModel
    windows: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        metrics: Metrics,
        *,
        max_batch_size: int = 256,
        max_queue_delay_us: int = 0,
        max_queue_windows: int = 8192,
        retry_after_s: int = 1,
    ) -> None:
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_queue_delay_us / 1e6
        self.max_queue_windows = max_queue_windows
        self.retry_after_s = retry_after_s
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_windows = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        while self._queue:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    @property
    def queued_windows(self) -> int:
        return self._queued_windows

    async def submit(self, model: LoadedModel, windows: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for ``windows`` (checked, normalised float32) run on ``model``; QueueFull if no room."""
        n = len(windows)
        if self._queued_windows + n > self.max_queue_windows and self._queued_windows > 0:
            self.metrics.rejected.inc()
            raise QueueFull(self.retry_after_s)
        item = _Item(model, windows, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._queued_windows += n
        self.metrics.queue_depth.set(self._queued_windows)
        self._wakeup.set()  # type: ignore[union-attr]
        return await item.future

    def _take(self) -> list[_Item]:
        """Pop requests of the head's model up to the batch size (never splitting one)."""
        head = self._queue.popleft()
        batch, n = [head], len(head.windows)
        while self._queue and _joins(self._queue[0], head):
            if n + len(self._queue[0].windows) > self.max_batch_size:
                break
            item = self._queue.popleft()
            batch.append(item)
            n += len(item.windows)
        self._queued_windows -= n
        self.metrics.queue_depth.set(self._queued_windows)
        return batch

    def _full(self) -> bool:
        head = self._queue[0]
        n = 0
        for item in self._queue:
            if not _joins(item, head):
                return True  # the head's batch cannot grow any more
            n += len(item.windows)
            if n >= self.max_batch_size:
                return True
        return False

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            if not self._queue:
                wakeup.clear()
                await wakeup.wait()
                continue
            wait = self._queue[0].enqueued + self.max_delay_s - time.perf_counter()
            if wait > 0 and not self._full():
                wakeup.clear()
                with contextlib.suppress(TimeoutError):  # the delay ran out: run what is there
                    await asyncio.wait_for(wakeup.wait(), wait)
                continue
            batch = self._take()
            started = time.perf_counter()
            for item in batch:
                self.metrics.queue_time.observe(started - item.enqueued)
            try:
                outputs = await loop.run_in_executor(self._executor, _run, batch)
            except Exception as err:  # an onnxruntime failure fails this batch only
                self.metrics.inference_errors.inc()
                log.exception("inference failed on a batch of %d request(s)", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(InferenceFailed(f"inference failed: {err}"))
                continue
            self.metrics.compute_time.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(outputs["class"]))
            # once per batch, not per request: at batch 1 this is a measurable share of a request's cost
            self.metrics.count_predictions(outputs["class"], batch[0].model.class_names)
            start = 0
            for item in batch:
                stop = start + len(item.windows)
                if not item.future.done():  # the client may have gone away
                    item.future.set_result({name: value[start:stop] for name, value in outputs.items()})
                start = stop


def _joins(item: _Item, head: _Item) -> bool:
    """Requests share a batch when they run on the same model with windows of one shape (a segmentation
    model takes tiles of several sizes, which cannot be stacked)."""
    return item.model is head.model and item.windows.shape[1:] == head.windows.shape[1:]


def _run(batch: list[_Item]) -> dict[str, np.ndarray]:
    """The batch's outputs, rows in the order of its requests (sliced per request by the caller)."""
    windows = batch[0].windows if len(batch) == 1 else np.concatenate([item.windows for item in batch])
    return batch[0].model.run(windows)
