"""The networks ``benchmarks/drift.py`` watches, and what each makes of a set of window centres.

Each model is fitted with a plain loop on surveys 1000-1002 (the benchmark needs an embedding and
predictions, not a record) and cached in ``benchmarks/results/drift_model[_<name>].pt``, keyed by the
training set-up and the generator version (delete the file to retrain):

=========  ===========================================================================================
cnn1d      window classifier on 64-sample traces (the default, and what ``benchmarks/quality.py`` uses)
cnn2d      window classifier on 32-trace x 64-sample patches
unet2d     segmentation net (width 8, as ``unet2d_small``) on the same patches; its prediction is the
           class of the centre sample, its embedding the tile's averaged bottleneck
=========  ===========================================================================================

Whatever the model, the raw features are those of the 64-sample window of the centre trace (what a 1D
pipeline logs), so that two models' tables differ only in what the network sees: predictions and embedding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seismic.data.synthetic import GENERATOR_VERSION, SyntheticSurveyConfig, generate_survey
from seismic.data.windows import (
    IGNORE_INDEX,
    Normalisation,
    WindowSpec,
    extract_label_windows,
    extract_windows,
    fit_normalisation,
    sample_centres,
)
from seismic.features import window_features
from seismic.models.registry import build_model, model_task

ROOT = Path(__file__).resolve().parents[1]
GEOLOGY = {"n_inlines": 64, "n_crosslines": 48, "n_samples": 640}  # default geology, smaller lateral extent
FEATURE_SPEC = WindowSpec(length=64)
PATCH = WindowSpec(length=64, width=32)
MODELS = {  # name: (input windows, registry keywords, training windows, dense targets)
    "cnn1d": (FEATURE_SPEC, {}, 12000, False),
    "cnn2d": (PATCH, {"width": 16}, 12000, False),
    "unet2d": (PATCH, {"width": 8}, 3000, True),  # each tile carries 2,048 labelled samples
}
EPOCHS = 3


def survey(seed: int, n_inlines: int | None = None):
    return generate_survey(
        SyntheticSurveyConfig(**{**GEOLOGY, "n_inlines": n_inlines or GEOLOGY["n_inlines"], "seed": seed})
    )


@dataclass
class Watched:
    """A network in eval mode with the normalisation and window shape it was trained on."""

    name: str
    net: torch.nn.Module
    norm: Normalisation
    spec: WindowSpec
    dense: bool = False

    @torch.no_grad()
    def describe(self, amplitudes: np.ndarray, centres, dt_ms: float) -> dict[str, np.ndarray]:
        """Raw features of the centre traces' windows, the model's prediction and embedding at each centre."""
        raw = extract_windows(amplitudes, *centres, FEATURE_SPEC)
        inputs = raw if self.spec == FEATURE_SPEC else extract_windows(amplitudes, *centres, self.spec)
        classes, embeddings = [], []
        for batch in np.array_split(inputs, max(1, len(inputs) // 1024)):
            logits, emb = self.net(torch.from_numpy(self.norm.apply(batch)))
            if self.dense:  # [B, C, W, T]: the class of the centre sample
                logits = logits[:, :, self.spec.width // 2, self.spec.length // 2]
            classes.append(logits.argmax(1))
            embeddings.append(emb)
        return {
            "features": window_features(raw, dt_ms),
            "predictions": torch.cat(classes).numpy(),
            "embeddings": torch.cat(embeddings).numpy(),
        }


def train(name: str) -> tuple[torch.nn.Module, Normalisation]:
    spec, kwargs, n_windows, dense = MODELS[name]
    surveys = [survey(seed) for seed in (1000, 1001, 1002)]
    norm = fit_normalisation(surveys[0].amplitudes, seed=0)
    xs, ys = [], []
    for k, s in enumerate(surveys):
        il, xl, t = sample_centres(s.labels, n_windows // 3, spec, balance=True, seed=k)
        xs.append(norm.apply(extract_windows(s.amplitudes, il, xl, t, spec)))
        ys.append(extract_label_windows(s.labels, il, xl, t, spec) if dense else s.labels[il, xl, t])
    x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys).astype(np.int64))
    torch.manual_seed(0)
    net = build_model(name, num_classes=6, **kwargs)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    net.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x)).split(256 if not dense else 32):
            loss = torch.nn.functional.cross_entropy(net(x[batch])[0], y[batch], ignore_index=IGNORE_INDEX)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), norm


def cache_path(name: str) -> Path:
    return ROOT / "benchmarks/results" / ("drift_model.pt" if name == "cnn1d" else f"drift_model_{name}.pt")


def cached_model(name: str = "cnn1d") -> tuple[Watched, str]:
    """The cached model when it was trained with this set-up and generator, else train and cache it."""
    spec, kwargs, n_windows, dense = MODELS[name]
    key = {
        "spec": spec.to_dict(),
        "train_windows": n_windows,
        "epochs": EPOCHS,
        "generator_version": GENERATOR_VERSION,  # surveys of another generator are other data
        **({"model": name, "kwargs": kwargs} if name != "cnn1d" else {}),  # cnn1d: the key it always had
    }
    path = cache_path(name)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["key"] == json.dumps(key, sort_keys=True):
            net = build_model(name, num_classes=6, **kwargs)
            net.load_state_dict(saved["state"])
            norm = Normalisation.from_mapping(json.loads(saved["norm"]))
            return Watched(name, net.eval(), norm, spec, dense), "cached"
    net, norm = train(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "key": json.dumps(key, sort_keys=True),
        "state": net.state_dict(),
        "norm": json.dumps(norm.to_dict()),
    }
    torch.save(state, path)
    return Watched(name, net, norm, spec, dense), "trained"


def load_checkpoint(path: str) -> Watched:
    """A Lightning checkpoint of a window classifier or a segmentation net (its task says which)."""
    from seismic.tasks.classification import FaciesClassificationTask
    from seismic.tasks.segmentation import FaciesSegmentationTask

    hp = torch.load(path, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    dense = model_task(hp.get("model", "cnn1d")) == "segmentation"
    task_cls = FaciesSegmentationTask if dense else FaciesClassificationTask
    task = task_cls.load_from_checkpoint(path, map_location="cpu")
    spec = WindowSpec.from_mapping(task.hparams.get("window") or {})
    norm = Normalisation.from_mapping(task.hparams["normalisation"])
    return Watched(Path(path).name, task.net.eval(), norm, spec, dense)
