from __future__ import annotations

import numpy as np
import pytest

from seismic.data.windows import (
    Normalisation,
    SplitSpec,
    WindowSpec,
    extract_windows,
    fit_normalisation,
    sample_centres,
    valid_centre_ranges,
    window_trace_indices,
)


@pytest.fixture()
def volume() -> np.ndarray:
    # value encodes its own position, so every gathered sample says where it came from
    il, xl, t = np.meshgrid(np.arange(6), np.arange(7), np.arange(20), indexing="ij")
    return (il * 10000 + xl * 100 + t).astype(np.float32)


def test_1d_window_is_the_trace_segment_around_the_centre(volume):
    spec = WindowSpec(length=8)
    out = extract_windows(volume, np.array([2]), np.array([3]), np.array([10]), spec)
    assert out.shape == (1, 1, 8)
    np.testing.assert_array_equal(out[0, 0], volume[2, 3, 6:14])
    assert out[0, 0, spec.length // 2] == volume[2, 3, 10]


@pytest.mark.parametrize("axis", ["inline", "crossline"])
def test_2d_patch_runs_along_the_requested_axis(volume, axis):
    spec = WindowSpec(length=5, width=3, axis=axis)
    out = extract_windows(volume, np.array([3]), np.array([3]), np.array([10]), spec)
    assert out.shape == (1, 1, 3, 5)
    expected = volume[3, 2:5, 8:13] if axis == "inline" else volume[2:5, 3, 8:13]
    np.testing.assert_array_equal(out[0, 0], expected)


def test_edge_modes_at_the_start_of_the_trace(volume):
    trace = volume[0, 0]
    centre = (np.array([0]), np.array([0]), np.array([1]))
    reflect = extract_windows(volume, *centre, WindowSpec(length=6, pad_mode="reflect"))[0, 0]
    np.testing.assert_array_equal(reflect, trace[[2, 1, 0, 1, 2, 3]])
    edge = extract_windows(volume, *centre, WindowSpec(length=6, pad_mode="edge"))[0, 0]
    np.testing.assert_array_equal(edge, trace[[0, 0, 0, 1, 2, 3]])
    constant = extract_windows(volume, *centre, WindowSpec(length=6, pad_mode="constant"))[0, 0]
    np.testing.assert_array_equal(constant, [0, 0, *trace[[0, 1, 2, 3]]])
    with pytest.raises(ValueError, match="valid"):
        extract_windows(volume, *centre, WindowSpec(length=6, pad_mode="valid"))


def test_constant_padding_zeroes_missing_traces(volume):
    spec = WindowSpec(length=3, width=3, axis="inline", pad_mode="constant")
    out = extract_windows(volume, np.array([1]), np.array([6]), np.array([5]), spec)[0, 0]
    np.testing.assert_array_equal(out[2], 0)
    np.testing.assert_array_equal(out[1], volume[1, 6, 4:7])


def test_valid_mode_centres_always_fit(volume):
    spec = WindowSpec(length=8, width=3, axis="crossline", pad_mode="valid")
    labels = np.zeros(volume.shape, dtype=np.uint8)
    il, xl, t = sample_centres(labels, 500, spec, balance=False, seed=0)
    assert il.min() >= 1 and il.max() <= 4 and t.min() >= 4 and t.max() <= 16
    extract_windows(volume, il, xl, t, spec)  # raises if any window reached outside
    with pytest.raises(ValueError, match="no centre"):
        valid_centre_ranges((2, 7, 20), spec)


def test_balanced_sampling_equalises_classes():
    rng = np.random.default_rng(0)
    labels = (rng.random((10, 10, 200)) < 0.05).astype(np.uint8)  # class 1 is rare
    il, xl, t = sample_centres(labels, 2000, WindowSpec(length=16), balance=True, seed=1)
    counts = np.bincount(labels[il, xl, t], minlength=2)
    assert counts.tolist() == [1000, 1000]
    il, xl, t = sample_centres(labels, 2000, WindowSpec(length=16), balance=False, seed=1)
    assert np.bincount(labels[il, xl, t])[1] < 250


def test_sampling_is_seeded():
    labels = np.random.default_rng(0).integers(0, 4, (8, 8, 50)).astype(np.uint8)
    a = sample_centres(labels, 300, WindowSpec(), balance=True, seed=5)
    b = sample_centres(labels, 300, WindowSpec(), balance=True, seed=5)
    c = sample_centres(labels, 300, WindowSpec(), balance=True, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_split_blocks_are_ordered_disjoint_and_gapped():
    blocks = SplitSpec(fractions=(0.7, 0.15, 0.15), gap=3).blocks(100)
    assert blocks["train"][0] == 0 and blocks["test"][1] == 100
    assert blocks["val"][0] - blocks["train"][1] == 3
    assert blocks["test"][0] - blocks["val"][1] == 3
    sizes = {k: hi - lo for k, (lo, hi) in blocks.items()}
    assert sum(sizes.values()) == 94 and sizes["train"] == 66


def test_split_rejects_what_cannot_fit():
    with pytest.raises(ValueError, match="cannot hold three blocks"):
        SplitSpec(gap=5).blocks(12)
    with pytest.raises(ValueError, match="permutation"):
        SplitSpec(order=("train", "train", "test"))
    with pytest.raises(ValueError, match="unknown key"):
        SplitSpec.from_mapping({"fraction": [1, 1, 1]})


def test_window_trace_indices_report_the_footprint(volume):
    spec = WindowSpec(length=4, width=5, axis="crossline", pad_mode="reflect")
    il_idx, xl_idx, _ = window_trace_indices(np.array([0]), np.array([2]), spec, volume.shape)
    assert il_idx.tolist() == [[2, 1, 0, 1, 2]] and xl_idx.tolist() == [[2] * 5]


def test_normalisation_fits_on_the_block_it_is_given():
    rng = np.random.default_rng(0)
    block = (rng.normal(3.0, 2.0, size=(20, 20, 100))).astype(np.float32)
    norm = fit_normalisation(block, max_traces=400)
    assert norm.mean == pytest.approx(3.0, abs=0.05) and norm.std == pytest.approx(2.0, abs=0.05)
    scaled = norm.apply(block)
    assert abs(scaled.mean()) < 0.05 and np.abs(scaled).max() <= norm.clip_sigma
    assert Normalisation.from_mapping(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="zero"):
        fit_normalisation(np.zeros((3, 3, 10), dtype=np.float32))
