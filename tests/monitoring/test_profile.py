"""Reference profile: contents computed from the given windows and outputs, exact save/load, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seismic.features import FEATURE_NAMES, window_features
from seismic.monitoring.profile import PROFILE_ARRAYS, PROFILE_INFO, ReferenceProfile, build_profile

CLASSES = ["sand", "shale", "carbonate"]


def inputs(n: int = 60, seed: int = 0, width: int = 1):
    rng = np.random.default_rng(seed)
    shape = (n, 1, 32) if width == 1 else (n, 1, width, 32)
    raw = (rng.normal(size=shape) * 1000.0).astype(np.float32)
    labels = np.repeat([0, 1, 2], [30, 20, 10])[:n]
    logits = rng.normal(size=(n, 3))
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    embedding = rng.normal(size=(n, 5)).astype(np.float32)
    return raw, labels, probabilities, embedding


@pytest.mark.parametrize("width", [1, 4])
def test_profile_holds_features_outputs_and_distributions(width):
    raw, labels, probabilities, embedding = inputs(width=width)
    profile = build_profile(
        raw,
        labels,
        probabilities,
        embedding,
        dt_ms=4.0,
        class_names=CLASSES,
        window={"length": 32, "width": width},
        max_embeddings=25,
        seed=3,
        source={"data_hash": "abc", "split": "test"},
        survey=np.arange(60) % 2,
        inline=np.arange(60) // 2,
    )
    np.testing.assert_array_equal(profile.features, window_features(raw, 4.0))
    assert profile.survey.tolist() == [i % 2 for i in range(60)] and profile.inline[-1] == 29
    assert profile.feature_names == list(FEATURE_NAMES) and profile.class_names == CLASSES
    np.testing.assert_array_equal(profile.predicted, probabilities.argmax(axis=1))
    rows = profile.embedding_rows
    assert len(rows) == 25 and len(set(rows.tolist())) == 25 and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(profile.embedding, embedding[rows])
    info = profile.info
    assert info["class_distribution"] == {"sand": 0.5, "shale": 20 / 60, "carbonate": 10 / 60}
    predicted_counts = np.bincount(probabilities.argmax(axis=1), minlength=3) / 60
    assert list(info["predicted_distribution"].values()) == pytest.approx(predicted_counts.tolist())
    assert info["accuracy"] == pytest.approx(float((probabilities.argmax(axis=1) == labels).mean()))
    assert info["mean_max_probability"] == pytest.approx(float(probabilities.max(axis=1).mean()))
    assert info["n_windows"] == 60 and info["n_embeddings"] == 25 and info["embedding_dim"] == 5
    assert info["features_on"] == "raw" and info["source"] == {"data_hash": "abc", "split": "test"}
    std = info["feature_summary"]["std"]
    assert std["q50"] == pytest.approx(np.median(profile.features[:, FEATURE_NAMES.index("std")]))
    assert std["q01"] <= std["q25"] <= std["q50"] <= std["q75"] <= std["q99"]


def test_embedding_sample_is_seeded_and_capped_by_the_windows():
    raw, labels, probabilities, embedding = inputs()
    a = build_profile(
        raw, labels, probabilities, embedding, dt_ms=4.0, class_names=CLASSES, max_embeddings=10
    )
    b = build_profile(
        raw, labels, probabilities, embedding, dt_ms=4.0, class_names=CLASSES, max_embeddings=10
    )
    c = build_profile(raw, labels, probabilities, embedding, dt_ms=4.0, class_names=CLASSES, seed=1)
    np.testing.assert_array_equal(a.embedding_rows, b.embedding_rows)
    assert c.embedding_rows.tolist() == list(range(60))  # fewer windows than the cap: all of them


# the profile's file contract, written out here rather than imported so that a change to it fails a test
PROFILE_ARRAY_NAMES = (
    "features",
    "labels",
    "predicted",
    "probabilities",
    "embedding",
    "embedding_rows",
    "survey",
    "inline",
)


def test_save_load_roundtrip_is_exact_and_plain(tmp_path):
    raw, labels, probabilities, embedding = inputs()
    profile = build_profile(raw, labels, probabilities, embedding, dt_ms=2.0, class_names=CLASSES)
    arrays, info = profile.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {PROFILE_ARRAYS, PROFILE_INFO}  # no temporary left
    with np.load(arrays, allow_pickle=False) as data:  # readable without this module
        assert set(data.files) == set(PROFILE_ARRAY_NAMES)
        assert data["features"].dtype == np.float64 and data["embedding"].dtype == np.float32
    assert json.loads(info.read_text())["dt_ms"] == 2.0
    loaded = ReferenceProfile.load(tmp_path)
    for name in PROFILE_ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(profile, name))
    assert loaded.info == profile.info


def test_errors_name_the_problem(tmp_path):
    raw, labels, probabilities, embedding = inputs()
    with pytest.raises(ValueError, match="60 windows but 59 labels"):
        build_profile(raw, labels[:-1], probabilities, embedding, dt_ms=4.0, class_names=CLASSES)
    with pytest.raises(ValueError, match="3 columns for 2 classes"):
        build_profile(raw, labels, probabilities, embedding, dt_ms=4.0, class_names=CLASSES[:2])
    with pytest.raises(ValueError, match="no held-out windows"):
        build_profile(raw[:0], labels[:0], probabilities[:0], embedding[:0], dt_ms=4.0, class_names=CLASSES)
    with pytest.raises(FileNotFoundError, match="no reference profile"):
        ReferenceProfile.load(tmp_path)
    build_profile(raw, labels, probabilities, embedding, dt_ms=4.0, class_names=CLASSES).save(tmp_path)
    info = json.loads((tmp_path / PROFILE_INFO).read_text())
    (tmp_path / PROFILE_INFO).write_text(json.dumps({**info, "schema_version": 99}))
    with pytest.raises(ValueError, match="profile schema 99"):
        ReferenceProfile.load(tmp_path)
