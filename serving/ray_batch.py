"""Batch scoring of a SEG-Y volume on a Ray cluster: Ray Data over inline chunks, onnxruntime in actors.

The single-machine path (:mod:`serving.batch`) scores chunk after chunk in one process; here the chunks
``[start, stop)`` are the rows of a Ray dataset and a pool of actors scores them, each actor holding one
onnxruntime session (CPU, or GPU with ``num_gpus``) and its own handle on the input file. An actor reads
only the inlines its chunk's windows need (:func:`serving.batch.score_chunk`, the same code and the same
whole-volume indexing as the local path), so the class volume is identical to :func:`serving.batch.score_segy`
whatever the chunking. The driver checks the input and the model before anything is written, receives the
chunks in whatever order they finish and writes them with :func:`serving.batch.write_scores`: class
volume, optional max-probability volume and Parquet summary appear together at the end, or not at all.

The input file and a model *folder* must be readable at the same path on every node (a shared file
system); a ``models:/NAME@ALIAS`` source is resolved once by the driver and every actor downloads that
same version. Needs the optional extra ``pip install -e ".[ray]"``; like all of ``serving/``, it never
imports torch or Lightning.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from seismic.io.errors import SeismicIOError
from seismic.io.segy import open_segy
from serving.batch import (
    FILL_CLASS,
    BatchResult,
    BatchScoringError,
    Progress,
    check_options,
    chunk_inlines_for,
    dense_chunk_inlines,
    open_cube,
    score_chunk,
    window_spec,
    write_scores,
)
from serving.runtime import (
    DEFAULT_PROVIDERS,
    ModelLoadError,
    load_model,
    parse_registry_uri,
    resolve_version,
)

# providers that need a device: an actor that reserved no GPU sees none (Ray hides them from it)
_DEVICE_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")


class ChunkScorer:
    """A Ray Data actor: one model session and one open input file, scoring whole inline chunks."""

    def __init__(
        self,
        source: str,
        input_path: str,
        iline: int,
        xline: int,
        providers: Sequence[str],
        intra_op_threads: int | None,
        inter_op_threads: int | None,
        tracking_uri: str | None,
        batch_size: int,
    ) -> None:
        self.model = load_model(
            source, providers, intra_op_threads, inter_op_threads, tracking_uri=tracking_uri, spin_wait=False
        )
        self.segy = open_segy(input_path, iline=iline, xline=xline, mmap=False)
        self.batch_size = batch_size
        self.prefetch = ThreadPoolExecutor(1, thread_name_prefix="cut-windows")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        starts, classes, max_prob = [], [], []
        for start, stop in zip(batch["start"], batch["stop"], strict=True):
            c, p = score_chunk(
                self.model,
                self.segy,
                int(start),
                int(stop),
                batch_size=self.batch_size,
                prefetch=self.prefetch,
            )
            starts.append(int(start))
            classes.append(c)
            max_prob.append(p)
        return {
            "start": np.asarray(starts, dtype=np.int64),
            "classes": np.stack(classes),
            "max_probability": np.stack(max_prob),
            "provider": np.asarray([self.model.provider] * len(starts)),
        }


def _original_error(err: BaseException) -> BaseException | None:
    """The scoring error an actor raised, dug out of Ray's wrappers (RayTaskError, UserCodeException)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, BatchScoringError | SeismicIOError | ModelLoadError):
            return exc
        todo += [exc.__cause__, exc.__context__, getattr(exc, "cause", None)]
    return None


def actor_providers(providers: Sequence[str], num_gpus: float) -> list[str]:
    """The providers an actor tries: without a reserved GPU, only those that need no device."""
    if num_gpus > 0:
        return list(providers)
    usable = [p for p in providers if p not in _DEVICE_PROVIDERS]
    return usable or ["CPUExecutionProvider"]


def score_segy_ray(
    source: str | Path,
    input_path: str | Path,
    class_path: str | Path,
    *,
    probability_path: str | Path | None = None,
    summary_path: str | Path | None = None,
    chunk_inlines: int | None = None,
    max_memory_mb: float = 256.0,
    batch_size: int = 1024,
    class_format: str = "int16",
    iline: int = 189,
    xline: int = 193,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    actors: int = 2,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    progress: bool = True,
) -> BatchResult:
    """Score every sample of the cube at ``input_path`` on Ray, writing what :func:`serving.batch.score_segy`
    writes.

    ``address``: the Ray cluster (``auto``, ``ray://head:10001``); ``None`` uses the Ray instance this process
    already started, or starts a local one (and stops it at the end). ``actors`` actors each reserve
    ``num_cpus`` CPUs and ``num_gpus`` GPUs (fractions share a GPU); ``intra_op_threads`` defaults to the
    actor's CPUs, so the actors on a node do not oversubscribe its cores. ``max_memory_mb`` bounds one chunk
    of one actor (:func:`serving.batch.chunk_inlines_for`); the driver holds only the chunks in flight.
    """
    import ray
    import ray.data

    if actors < 1 or num_cpus <= 0 or num_gpus < 0:
        raise ValueError(
            f"need actors >= 1, num_cpus > 0, num_gpus >= 0; got {actors}, {num_cpus}, {num_gpus}"
        )
    started = time.perf_counter()
    pinned = str(source)
    parsed = parse_registry_uri(pinned)
    if parsed is not None:  # every actor loads the version the driver checks, even if the alias moves on
        pinned = f"models:/{parsed[0]}/{resolve_version(pinned, tracking_uri)}"
    # the driver's own session only checks the model and reads its metadata; the actors run it
    model = load_model(pinned, ["CPUExecutionProvider"], 1, 1, tracking_uri=tracking_uri, spin_wait=False)
    check_options(model, class_format, batch_size)
    with open_cube(model, input_path, iline=iline, xline=xline) as segy:  # checked before Ray starts
        shape: tuple[int, int, int] = segy.shape  # type: ignore[assignment]
        if model.dense:  # blended class probabilities per sample: a larger budget per inline
            k = chunk_inlines or dense_chunk_inlines(shape, len(model.class_names), max_memory_mb)
        else:
            k = chunk_inlines or chunk_inlines_for(shape, window_spec(model), max_memory_mb)
        chunks = [{"start": s, "stop": min(s + k, shape[0])} for s in range(0, shape[0], k)]
        scorer_args = {
            "source": pinned,
            "input_path": str(segy.path),
            "iline": iline,
            "xline": xline,
            "providers": actor_providers(providers, num_gpus),
            "intra_op_threads": intra_op_threads or max(1, int(num_cpus)),
            "inter_op_threads": inter_op_threads,
            "tracking_uri": tracking_uri,
            "batch_size": batch_size,
        }
        own_instance = not ray.is_initialized()
        if own_instance:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        context = ray.data.DataContext.get_current()
        bars = context.enable_progress_bars
        context.enable_progress_bars = False  # the one bar below counts windows; Ray's would count blocks
        bar = Progress(int(np.prod(shape)), progress)
        try:
            # one block per chunk: a block is what one actor call receives
            scored = ray.data.from_items(chunks, override_num_blocks=len(chunks)).map_batches(
                ChunkScorer,
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(actors, len(chunks))),
                fn_constructor_kwargs=scorer_args,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
            )
            seen: set[str] = set()

            def results() -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
                for row in scored.iter_rows():
                    classes = np.asarray(row["classes"])
                    seen.add(str(row["provider"]))
                    # the result reports what the actors ran on, not the driver's checking session
                    model.provider = ",".join(sorted(seen))
                    bar.update(int((classes != FILL_CLASS).sum()))
                    yield int(row["start"]), classes, np.asarray(row["max_probability"])

            return write_scores(
                model,
                segy,
                results(),
                class_path,
                probability_path=probability_path,
                summary_path=summary_path,
                class_format=class_format,
                chunk_inlines=k,
                started=started,
            )
        except (BatchScoringError, SeismicIOError, ModelLoadError, ValueError):
            raise
        except Exception as err:  # Ray wraps what an actor raised: give the caller that error itself
            original = _original_error(err)
            if original is not None:
                raise original from None
            raise BatchScoringError(f"Ray scoring of {segy.path} failed; nothing was written: {err}") from err
        finally:
            bar.close()
            context.enable_progress_bars = bars
            if own_instance:
                ray.shutdown()
