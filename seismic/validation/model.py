"""A model folder (``model=...``) checked on its own and against the serve, predict and monitor configs.

On its own: the metadata serving reads (serving/runtime.py) is complete and consistent with itself, with
the graph onnxruntime loads and with the copy in the ONNX file's ``metadata_props``. Against each config:
what would make that CLI refuse the model or fail on the first request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seismic.export.layout import METADATA_FILE, ONNX_FILE, PROFILE_FILES

Problem = Callable[[str, str], None]
# what the serving runtime reads from metadata.json (the others are provenance)
CONTRACT = ("class_names", "num_classes", "input", "outputs", "window", "normalisation", "dt_ms")


class ModelFolder:
    def __init__(self, folder: str | Path, problem: Callable[[str, str, str], None]) -> None:
        """``problem(file, key, reason)``; the folder's own problems are reported here, once."""
        self.folder = Path(folder).expanduser()
        self.label = str(folder)
        self.metadata: dict[str, Any] | None = None
        self.window_shape: tuple[int, ...] = ()
        self._problem = problem
        self._load()

    def _own(self, key: str, reason: str, file: str = METADATA_FILE) -> None:
        self._problem(f"{self.label}/{file}", key, reason)

    def _load(self) -> None:
        if not self.folder.is_dir():
            self._problem(self.label, "", "no such model folder")
            return
        for name in (ONNX_FILE, METADATA_FILE):
            if not (self.folder / name).is_file():
                self._problem(self.label, "", f"missing {name}")
        try:
            meta = json.loads((self.folder / METADATA_FILE).read_text())
        except (OSError, json.JSONDecodeError) as err:
            self._own("", f"unreadable: {err}")
            return
        missing = [k for k in CONTRACT if k not in meta]
        if missing:
            self._own("", f"missing key(s) {missing} that serving reads")
            return
        self.metadata = meta
        self._consistent(meta)

    def _consistent(self, meta: dict[str, Any]) -> None:
        from seismic.data.windows import Normalisation, WindowSpec

        shape = meta["input"].get("shape") or []
        self.window_shape = tuple(int(d) for d in shape[1:])
        try:
            spec = WindowSpec.from_mapping(dict(meta["window"]))
        except (ValueError, TypeError) as err:
            self._own("window", str(err))
        else:
            if spec.sample_shape != self.window_shape:
                self._own(
                    "input.shape", f"{shape} disagrees with window {spec.to_dict()} ({spec.sample_shape})"
                )
        try:
            Normalisation.from_mapping(dict(meta["normalisation"]))
        except (ValueError, TypeError, KeyError) as err:
            self._own("normalisation", str(err))
        n = len(meta["class_names"])
        if meta["num_classes"] != n or meta["outputs"].get("probabilities", [None, None])[-1] != n:
            self._own(
                "num_classes", f"{meta['num_classes']} classes, {n} class names, outputs {meta['outputs']}"
            )
        if not (isinstance(meta["dt_ms"], int | float) and meta["dt_ms"] > 0):
            self._own("dt_ms", f"must be a sample interval > 0 ms, got {meta['dt_ms']!r}")
        if (self.folder / ONNX_FILE).is_file():
            self._graph(meta)

    def _graph(self, meta: dict[str, Any]) -> None:
        """The graph as onnxruntime loads it, and the metadata copy inside the ONNX file."""
        import onnx

        from serving.runtime import INPUT_NAME, OUTPUT_NAMES, ModelLoadError, load_model

        try:
            loaded = load_model(self.folder, ["CPUExecutionProvider"], 1, 1, spin_wait=False)
        except ModelLoadError as err:
            self._own("", str(err), ONNX_FILE)
            return
        inputs = {i.name: i.shape for i in loaded.session.get_inputs()}
        outputs = {o.name: o.shape for o in loaded.session.get_outputs()}
        if INPUT_NAME not in inputs or list(inputs[INPUT_NAME][1:]) != list(self.window_shape):
            self._own("input.shape", f"the graph takes {inputs}, the metadata says {meta['input']['shape']}")
        for name in OUTPUT_NAMES:
            want = meta["outputs"].get(name)
            if name not in outputs or (want and outputs[name][-1] != want[-1]):
                self._own(f"outputs.{name}", f"the graph gives {outputs.get(name)}, the metadata says {want}")
        props = {
            p.key: p.value
            for p in onnx.load(str(self.folder / ONNX_FILE), load_external_data=False).metadata_props
        }
        for key in CONTRACT:
            if key in props and json.loads(props[key]) != meta[key]:
                self._own(key, f"differs from the copy in {ONNX_FILE}'s metadata_props: {props[key][:120]}")
        try:
            loaded.predict(np.zeros((2, *self.window_shape), dtype=np.float32))
        except Exception as err:  # a graph that loads but cannot run a batch of 2 (a fixed batch axis)
            self._own("", f"a batch of 2 windows fails: {err}", ONNX_FILE)

    def _window_bytes(self) -> int:
        return int(np.prod(self.window_shape)) * 4

    def against_serve(self, settings: Any, ctx: Any) -> None:
        if self.metadata is None:
            return
        problem = ctx.problem
        largest = settings.limits.max_windows_per_request * self._window_bytes()
        if largest > settings.limits.max_body_bytes:
            problem(
                "limits.max_body_bytes",
                f"{settings.limits.max_body_bytes} bytes cannot carry limits.max_windows_per_request="
                f"{settings.limits.max_windows_per_request} windows of {list(self.window_shape)} float32 "
                f"({largest} bytes as binary) for model {self.label}",
            )
        self._providers("model.providers", settings.model.providers, ctx)
        self._name(settings, ctx)

    def against_predict(self, settings: Any, ctx: Any) -> None:
        if self.metadata is None:
            return
        problem = ctx.problem
        if settings.output.class_format == "int8" and len(self.metadata["class_names"]) > 127:
            problem("output.class_format", f"{len(self.metadata['class_names'])} classes do not fit int8")
        self._providers("runtime.providers", settings.runtime.providers, ctx)

    def against_monitor(self, ctx: Any) -> None:
        if self.metadata is None:
            return
        problem = ctx.problem
        from seismic.monitoring.profile import ReferenceProfile

        missing = [f for f in PROFILE_FILES if not (self.folder / f).is_file()]
        if missing:
            problem(
                "model_dir", f"model {self.label} has no reference profile ({missing}): the monitor needs it"
            )
            return
        try:
            profile = ReferenceProfile.load(self.folder)
        except (ValueError, OSError, KeyError) as err:
            problem("model_dir", f"the reference profile of {self.label} does not load: {err}")
            return
        if profile.class_names != list(self.metadata["class_names"]):
            problem(
                "model_dir", f"{self.label}: profile classes {profile.class_names} differ from the model's"
            )
        features = self.metadata.get("feature_names")
        if features is not None and profile.feature_names != list(features):
            problem("model_dir", f"{self.label}: profile features differ from the model's feature_names")
        if (
            profile.embedding.shape[1:]
            and profile.embedding.shape[1] != self.metadata["outputs"]["embedding"][-1]
        ):
            problem("model_dir", f"{self.label}: profile embeddings have {profile.embedding.shape[1]} dims")

    def _providers(self, key: str, providers: Any, ctx: Any) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if not any(p in available for p in providers):  # the runtime falls back to CPU, with a warning
            ctx.note(
                f"{key} {list(providers)}: none is available here ({available}); the model would run on CPU"
            )

    def _name(self, settings: Any, ctx: Any) -> None:
        name = self.metadata.get("model_name") if self.metadata else None
        source = str(settings.model.source)
        served = source.removeprefix("models:/").split("@")[0].split("/")[0]
        if name and source.startswith("models:/") and served != name:
            ctx.note(f"model.source {source} serves {served!r}; model {self.label} is registered as {name!r}")
