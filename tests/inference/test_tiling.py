"""Blended tile inference (seismic.inference.tiling): the prefetching loop and the class argmax."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from seismic.inference.tiling import blend_sections, class_argmax, summarise_tiles


def _net(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stand-in for a segmentation net: softmax of three amplitude transforms."""
    x = tiles[:, 0]
    logits = np.stack([x, -x, np.abs(x) - 1.0], axis=1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32), x.reshape(len(x), -1)[:, :4].copy()


@pytest.mark.parametrize("tile", [(8, 16), (16,)])
def test_prefetching_runs_the_net_off_the_caller_thread_and_blends_the_same(tile):
    rng = np.random.default_rng(0)
    sections = rng.normal(size=(3, 20, 50) if len(tile) == 2 else (5, 50)).astype(np.float32)
    threads, seen = [], []

    def run(tiles):
        threads.append(threading.current_thread().name)
        return _net(tiles)

    def on_batch(raw, probabilities, embedding, where):
        seen.append([w[0] for w in where])

    options = {"overlap": 0.25, "num_classes": 3, "batch_size": 4}
    serial = blend_sections(sections, _net, tile, **options)
    prefetched = blend_sections(sections, run, tile, prefetch=True, on_batch=on_batch, **options)
    np.testing.assert_array_equal(prefetched, serial)
    assert all(name.startswith("blend") for name in threads)
    # batches reach on_batch in order, section-major, each once
    flat = [i for batch in seen for i in batch]
    assert flat == sorted(flat) and len(seen) == len(threads)


def test_a_failing_net_fails_the_prefetching_blend_with_its_own_error():
    def broken(tiles):
        raise RuntimeError("net exploded")

    with pytest.raises(RuntimeError, match="net exploded"):
        blend_sections(np.zeros((2, 8, 32), np.float32), broken, (8, 16), num_classes=3, prefetch=True)


def test_class_argmax_equals_numpy_including_ties_to_the_first_class():
    rng = np.random.default_rng(1)
    p = rng.random((4, 5, 6, 7)).astype(np.float32)
    p[:, 3] = p[:, 1]  # exact ties: the first of the tied classes wins, as np.argmax
    p[0, :, 0, 0] = 0.2
    classes, top = class_argmax(p)
    np.testing.assert_array_equal(classes, p.argmax(axis=1))
    np.testing.assert_array_equal(top, p.max(axis=1))


def test_summarise_tiles_gives_shares_majority_and_mean_confidence():
    p = np.zeros((1, 3, 2, 2), np.float32)
    p[0, 0] = [[0.6, 0.6], [0.2, 0.1]]
    p[0, 1] = [[0.4, 0.4], [0.7, 0.1]]
    p[0, 2] = [[0.0, 0.0], [0.1, 0.8]]
    rows = summarise_tiles(p)
    np.testing.assert_allclose(rows["class_shares"][0], [0.5, 0.25, 0.25])
    assert rows["class"][0] == 0
    np.testing.assert_allclose(rows["mean_max_probability"][0], (0.6 + 0.6 + 0.7 + 0.8) / 4)
    np.testing.assert_allclose(rows["probabilities"][0], p[0].reshape(3, -1).mean(axis=1), rtol=1e-6)
