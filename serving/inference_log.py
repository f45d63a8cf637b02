"""The inference log: one Parquet row per served window, written off the request path.

Layout: an append-only Parquet dataset under ``directory``, hive-partitioned by the UTC hour of the request,
``date=YYYY-MM-DD/hour=HH/part-<utc>-<id>.parquet``. Every file is written to a hidden temporary name beside
its final one and renamed when complete, so a reader (:func:`read_inference_log`, or any
``pyarrow.dataset`` reader: it skips names starting with ``.``) never sees half a file; one that a killed
process left is removed by the next writer once it is an hour old.

Schema and reader: :mod:`serving.inference_log_schema` (re-exported here).

What each row holds: every served window's outputs (class, probabilities, embedding, latency), and its
handcrafted features only for a bounded sample (``has_features``). Those features cost about as much CPU as
the network for a 32 x 64 patch (~130 us), so computing them for every window would halve a busy server's
throughput; the monitor needs a few thousand feature rows per window, not millions. A token bucket caps
feature rows at ``feature_rate`` windows/s per process (bursts up to one second's worth), after an optional
``feature_fraction`` draw; ``sample_fraction`` still drops whole rows, for logs that must stay small.

Delivery: :meth:`~InferenceLogWriter.log` only samples and enqueues (microseconds, never blocks, never raises
for I/O); a daemon thread computes the features and writes a file per partition when ``flush_rows`` rows are
waiting or the oldest has waited ``flush_seconds``. The buffer is bounded by ``max_buffer_rows`` (queued plus
unwritten rows): beyond it new rows are dropped and counted, with a warning at most every
10 seconds. A failed write (``OSError``: disk full, read-only, gone) is logged and counted;
its rows stay buffered and are retried after ``flush_seconds``, so a transient failure loses nothing and a
lasting one fills the buffer and then drops new rows rather than stalling the API.
:meth:`~InferenceLogWriter.close` writes everything (also run at interpreter exit); on SIGTERM use
:func:`install_sigterm_flush` in a plain process. Under uvicorn the server closes the writer in its lifespan
shutdown instead (uvicorn turns SIGTERM into a graceful shutdown and owns the handler).

Memory: a queued feature row holds its raw window (``4 W T`` bytes: 8 KiB for a 32 x 64 patch), any other
row ~0.5 KiB, so the worst case is about ``max_buffer_rows * 4 W T`` bytes.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seismic.io.atomic import atomic_file, remove_stale_partials
from serving.inference_log_rows import LogItem, partition_tables
from serving.inference_log_schema import LOG_SCHEMA_VERSION, log_schema, read_inference_log

__all__ = [
    "LOG_SCHEMA_VERSION",
    "InferenceLogStats",
    "InferenceLogWriter",
    "install_sigterm_flush",
    "log_schema",
    "read_inference_log",
]

logger = logging.getLogger(__name__)

_WARN_INTERVAL_S = 10.0


@dataclass(frozen=True)
class InferenceLogStats:
    """Counters in rows (windows) unless named otherwise; a snapshot, cheap to take."""

    rows_accepted: int  # enqueued by log()
    rows_written: int
    rows_dropped: int  # buffer full, or logged after close()
    rows_sampled_out: int
    rows_with_features: int  # accepted rows whose features are computed (feature_fraction, feature_rate)
    rows_lost: int  # still unwritable when close() gave up
    rows_pending: int  # accepted, not yet written or lost
    files_written: int
    write_errors: int  # failed file writes (each retried later)


class _TokenBucket:
    """At most ``rate`` tokens a second on average and ``rate`` (one second's worth) at once."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.last = time.monotonic()

    def take(self, wanted: int) -> int:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


class _Flush:
    """A request to write everything accepted so far; ``done`` is set once it is written (or failed)."""

    def __init__(self, final: bool) -> None:
        self.final = final
        self.done = threading.Event()


class InferenceLogWriter:
    """Background Parquet writer of the inference log (see the module docstring for schema and guarantees).

    ``sample_fraction`` keeps each window with that probability; of the kept ones, ``feature_fraction`` of
    them, at most ``feature_rate`` a second (None: no cap), carry features (``seed``: reproducible draws);
    ``dt_ms`` is the sample interval the features need (the model's ``metadata["dt_ms"]``).
    Thread-safe: ``log`` may be called from any thread, also from a signal handler's thread while another
    call is under way (the writer thread never takes the callers' lock).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        dt_ms: float,
        flush_rows: int = 4096,
        flush_seconds: float = 10.0,
        max_buffer_rows: int = 16384,
        sample_fraction: float = 1.0,
        feature_fraction: float = 1.0,
        feature_rate: float | None = None,
        seed: int | None = None,
    ) -> None:
        if not (np.isfinite(dt_ms) and dt_ms > 0):
            raise ValueError(f"dt_ms must be a positive number, got {dt_ms}")
        if flush_rows < 1 or max_buffer_rows < flush_rows:
            raise ValueError(
                f"need 1 <= flush_rows <= max_buffer_rows, got flush_rows={flush_rows}, "
                f"max_buffer_rows={max_buffer_rows}"
            )
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be > 0, got {flush_seconds}")
        if not 0.0 <= sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in [0, 1], got {sample_fraction}")
        if not 0.0 <= feature_fraction <= 1.0:
            raise ValueError(f"feature_fraction must be in [0, 1], got {feature_fraction}")
        if feature_rate is not None and not (np.isfinite(feature_rate) and feature_rate > 0):
            raise ValueError(
                f"feature_rate must be a positive number of windows per second or null, got {feature_rate}"
            )
        self.directory = Path(directory)
        self.dt_ms = float(dt_ms)
        self.flush_rows, self.flush_seconds, self.max_buffer_rows = flush_rows, flush_seconds, max_buffer_rows
        self.sample_fraction = sample_fraction
        self.feature_fraction = feature_fraction
        self._bucket = None if feature_rate is None else _TokenBucket(float(feature_rate))
        self._rng = np.random.default_rng(seed)
        # Producer side (under _lock): only callers of log() touch these; the writer thread only reads
        # _accepted, and keeps its own counters, so it can never wait for a caller (see the class docstring).
        self._lock = threading.Lock()
        self._accepted = self._dropped = self._sampled_out = self._with_features = 0
        self._closed = False
        self._last_warning = -np.inf
        self._dropped_since_warning = 0
        # writer side: touched only by the thread
        self._written = self._lost = self._files = self._errors = 0
        self._queue: queue.SimpleQueue[LogItem | _Flush] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- producer side -------------------------------------------------------------------------
    def log(
        self,
        request_id: str,
        model_version: str,
        windows: np.ndarray,
        classes: np.ndarray,
        probabilities: np.ndarray,
        embeddings: np.ndarray,
        latency_s: float,
        *,
        class_shares: np.ndarray | None = None,
        mean_max_probability: np.ndarray | None = None,
    ) -> None:
        """Enqueue one request's windows (``[N, 1, (W,) T]`` raw) and outputs; returns at once.

        A segmentation model's rows are tiles: ``classes`` their majority class, ``probabilities`` their
        samples' mean, and ``class_shares`` ``[N, C]`` / ``mean_max_probability`` ``[N]``
        (:func:`seismic.inference.tiling.summarise_tiles`) what the samples were given.
        """
        micros = time.time_ns() // 1000
        n = len(windows)
        if not n == len(classes) == len(probabilities) == len(embeddings):
            raise ValueError(
                f"inference log: {n} windows but {len(classes)} classes, {len(probabilities)} probability "
                f"rows and {len(embeddings)} embeddings"
            )
        if (class_shares is None) != (mean_max_probability is None):
            raise ValueError(
                "inference log: class_shares and mean_max_probability come together (a dense model's tiles)"
            )
        if class_shares is not None and not n == len(class_shares) == len(mean_max_probability):
            raise ValueError(
                f"inference log: {n} tiles but {len(class_shares)} class-share rows and "
                f"{len(mean_max_probability)} mean max probabilities"
            )
        with self._lock:
            if self.sample_fraction >= 1.0:
                keep = np.arange(n)
            else:
                keep = np.flatnonzero(self._rng.random(n) < self.sample_fraction)
            self._sampled_out += n - keep.size
            if self._closed:
                room = 0
            else:
                room = max(0, self.max_buffer_rows - (self._accepted - self._written - self._lost))
            if keep.size > room:
                self._drop(keep.size - room)
                keep = keep[:room]
            self._accepted += keep.size
            featured = self._feature_rows(keep.size)
            self._with_features += featured.size
        if keep.size == 0:
            return
        has_features = np.zeros(keep.size, dtype=bool)
        has_features[featured] = True
        # copies (fancy indexing): the caller may reuse its arrays as soon as this returns
        self._queue.put(
            LogItem(
                micros,
                str(request_id),
                str(model_version),
                keep.astype(np.int32),
                has_features,
                np.asarray(windows, dtype=np.float32)[keep[featured]],
                np.asarray(classes)[keep],
                np.asarray(probabilities, dtype=np.float32)[keep],
                np.asarray(embeddings, dtype=np.float32)[keep],
                float(latency_s),
                None if class_shares is None else np.asarray(class_shares, dtype=np.float32)[keep],
                None
                if mean_max_probability is None
                else np.asarray(mean_max_probability, dtype=np.float32)[keep],
            )
        )

    def _feature_rows(self, n: int) -> np.ndarray:
        """Positions (sorted) among the ``n`` kept rows that get features: the fraction, then the rate cap."""
        rows = np.arange(n)
        if self.feature_fraction < 1.0:
            rows = rows[self._rng.random(n) < self.feature_fraction]
        if self._bucket is not None and rows.size:
            granted = self._bucket.take(rows.size)
            if granted < rows.size:  # a random subset: the first windows of a request are no better
                rows = np.sort(self._rng.choice(rows, granted, replace=False))
        return rows

    def _drop(self, n: int) -> None:
        """Count dropped rows; warn at most every _WARN_INTERVAL_S (a full buffer drops on every request)."""
        self._dropped += n
        self._dropped_since_warning += n
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL_S:
            why = "writer is closed" if self._closed else f"buffer full ({self.max_buffer_rows} rows)"
            logger.warning(
                "inference log %s: dropped %d row(s) since the last warning, %d in all: %s",
                self.directory,
                self._dropped_since_warning,
                self._dropped,
                why,
            )
            self._last_warning, self._dropped_since_warning = now, 0

    @property
    def stats(self) -> InferenceLogStats:
        written, lost = self._written, self._lost
        return InferenceLogStats(
            rows_accepted=self._accepted,
            rows_written=written,
            rows_dropped=self._dropped,
            rows_sampled_out=self._sampled_out,
            rows_with_features=self._with_features,
            rows_lost=lost,
            rows_pending=self._accepted - written - lost,
            files_written=self._files,
            write_errors=self._errors,
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Write all rows accepted so far; True when done within ``timeout`` (written, or failed and kept)."""
        if not self._thread.is_alive():
            return True
        request = _Flush(final=False)
        self._queue.put(request)
        return request.done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting rows and write all accepted ones (one last try for failed ones); idempotent.

        Safe in a signal handler that interrupted :meth:`log` in the same thread: it takes no lock.
        """
        self._closed = True  # read by log() under its lock; one assignment, atomic under the GIL
        if self._thread.is_alive():
            self._queue.put(_Flush(final=True))
            self._thread.join(timeout)
        if not self._thread.is_alive():
            # a log() in another thread may have enqueued behind the final flush: count, never hang on it
            with contextlib.suppress(queue.Empty):
                while True:
                    entry = self._queue.get_nowait()
                    if isinstance(entry, LogItem):
                        self._lost += len(entry.index)
        atexit.unregister(self.close)

    def __enter__(self) -> InferenceLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        # Raw items wait here until a flush is due and are then tabulated together: the features and one
        # table per partition cost about the same for 1 row as for hundreds, so doing that per request
        # (measured: ~1.5 ms of GIL-holding work per batch-1 request) halved a server's request rate.
        with contextlib.suppress(OSError):  # writes of killed processes; no live write is an hour old
            for stale in remove_stale_partials(self.directory, 3600):
                logger.warning("inference log: removed %s, a write abandoned by a killed process", stale)
        items: list[LogItem] = []
        tables: list[tuple[str, str, pa.Table]] = []  # tabulated, not yet written (failed writes wait here)
        rows = 0  # in items and tables
        oldest = next_retry = 0.0
        while True:
            new, flushes = self._drain(self._wait(rows, oldest, next_retry))
            if new and not rows:
                oldest = time.monotonic()
            items.extend(new)
            rows += sum(len(i.index) for i in new)
            final = any(f.final for f in flushes)
            if rows and (flushes or self._wait(rows, oldest, next_retry) == 0.0):
                tables = self._write(tables + self._to_tables(items), final)
                items = []
                rows = sum(t.num_rows for *_, t in tables)
                next_retry = time.monotonic() + self.flush_seconds if tables else 0.0
                if tables and final:  # the last try failed: nothing may outlive close(), count them lost
                    self._lost += rows
                    tables, rows = [], 0
            for f in flushes:
                f.done.set()
            if final:
                return

    def _wait(self, rows: int, oldest: float, next_retry: float) -> float | None:
        """Seconds until the ``rows`` buffered are due (size or age, after any retry backoff); None: none."""
        if not rows:
            return None
        due = max(time.monotonic() if rows >= self.flush_rows else oldest + self.flush_seconds, next_retry)
        return max(0.0, due - time.monotonic())

    def _drain(self, timeout: float | None) -> tuple[list[LogItem], list[_Flush]]:
        """Wait for the first entry (up to ``timeout``), then take everything queued."""
        items: list[LogItem] = []
        flushes: list[_Flush] = []
        try:
            entry = self._queue.get(timeout=timeout)
            while True:
                (flushes if isinstance(entry, _Flush) else items).append(entry)
                entry = self._queue.get_nowait()
        except queue.Empty:
            pass
        return items, flushes

    def _to_tables(self, items: Sequence[LogItem]) -> list[tuple[str, str, pa.Table]]:
        tables, lost = partition_tables(items, self.dt_ms)
        self._lost += lost
        return tables

    def _write(self, tables: list[tuple[str, str, pa.Table]], final: bool) -> list[tuple[str, str, pa.Table]]:
        """One file per partition and schema; returns the tables whose write failed (to retry, unless
        ``final``: the writer is closing and the caller counts them lost, which the log line says)."""
        groups: dict[tuple[str, str, pa.Schema], list[pa.Table]] = defaultdict(list)
        for date, hour, table in tables:
            groups[(date, hour, table.schema)].append(table)
        failed = []
        for (date, hour, _), parts in groups.items():
            table = pa.concat_tables(parts)
            name = f"part-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.parquet"
            path = self.directory / f"date={date}" / f"hour={hour}" / name
            try:
                with atomic_file(path) as tmp:
                    pq.write_table(table, tmp)
            except OSError as err:
                self._errors += 1
                failed.extend((date, hour, t) for t in parts)
                fate = f"kept for a retry in {self.flush_seconds:g} s"
                fate = "lost: the writer is closing" if final else fate
                logger.error(
                    "inference log: cannot write %d row(s) to %s (%s: %s); %s (%d failed write(s) so far); "
                    "the API is unaffected",
                    table.num_rows,
                    path,
                    type(err).__name__,
                    err,
                    fate,
                    self._errors,
                )
                continue
            self._written += table.num_rows
            self._files += 1
        return failed


def install_sigterm_flush(*writers: InferenceLogWriter) -> None:
    """On SIGTERM close ``writers`` (writing every accepted row), then do what was installed before.

    For plain processes (batch scoring, workers). Call from the main thread. Under uvicorn do not: close the
    writer in the app's lifespan shutdown, which uvicorn runs on SIGTERM.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        for writer in writers:
            writer.close()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # the default action: die by the signal, as without the handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
