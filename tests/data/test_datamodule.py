from __future__ import annotations

import pickle

import lightning as L
import numpy as np
import pytest
import torch

from seismic.data.datamodule import SeismicDataModule
from seismic.data.sources import materialise_survey
from seismic.data.survey import Survey
from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.data.windows import fit_normalisation, window_trace_indices
from seismic.io.errors import SurveyFileError
from seismic.io.segy import write_cube

SMALL = {"n_inlines": 40, "n_crosslines": 16, "n_samples": 96, "seed": 3}
SAMPLING = {"train": 600, "val": 200, "test": 200}


def make_dm(tmp_path, **overrides) -> SeismicDataModule:
    options = {
        "source": "synthetic",
        "cache_dir": tmp_path / "cache",
        "survey": SMALL,
        "sampling": SAMPLING,
        "split": {"gap": 2},
        "batch_size": 64,
        **overrides,
    }
    dm = SeismicDataModule(**options)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def footprint(dm: SeismicDataModule, name: str, part: int = 0) -> set[int]:
    """Global inline positions of one survey read by any window of the split."""
    ds = dm.datasets[name]
    (lo, hi), rows = ds.parts[part][1], ds.part == part
    il_idx, _, _ = window_trace_indices(ds.il[rows], ds.xl[rows], ds.spec, ds.arrays(part)[0].shape)
    assert il_idx.min() >= 0 and il_idx.max() < hi - lo
    return set((il_idx + lo).ravel().tolist())


@pytest.mark.parametrize(
    "window",
    [
        {"length": 32},
        {"length": 32, "width": 9, "axis": "inline"},
        {"length": 32, "width": 9, "axis": "crossline", "pad_mode": "reflect"},
        {"length": 32, "width": 9, "axis": "crossline", "pad_mode": "edge"},
    ],
)
def test_no_training_window_touches_a_validation_or_test_trace(tmp_path, window):
    dm = make_dm(tmp_path, window=window)
    train, val, test = (footprint(dm, name) for name in ("train", "val", "test"))
    assert train and val and test
    assert not train & val and not train & test and not val & test
    # and the gap is really left out
    assert min(val) - max(train) > dm.split.gap and min(test) - max(val) > dm.split.gap


def test_batches_have_the_contract_shapes_and_labels(tmp_path):
    dm = make_dm(tmp_path, window={"length": 32, "width": 5})
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 5, 32) and x.dtype == torch.float32
    assert y.shape == (64,) and y.dtype == torch.int64
    assert dm.class_names == generate_survey(SyntheticSurveyConfig(**SMALL)).class_names
    # the target is the label at the window centre
    ds = dm.datasets["val"]
    survey = Survey.load(dm.survey_dirs[0])
    _, il, xl, t = ds.global_centres()
    _, yv = ds.__getitems__(list(range(10)))
    assert yv.tolist() == survey.labels[il[:10], xl[:10], t[:10]].tolist()


def test_training_sampling_is_balanced_and_evaluation_is_not(tmp_path):
    dm = make_dm(tmp_path)
    ys = torch.cat([y for _, y in dm.train_dataloader()])
    counts = torch.bincount(ys, minlength=len(dm.class_names))
    assert counts.max() - counts.min() <= 1
    val_counts = torch.bincount(torch.cat([y for _, y in dm.val_dataloader()]), minlength=len(dm.class_names))
    assert val_counts.max() - val_counts.min() > 1


def test_all_classes_present_in_every_split(tmp_path):
    dm = make_dm(tmp_path)
    survey = Survey.load(dm.survey_dirs[0])
    for lo, hi in dm.blocks[0].values():
        assert set(np.unique(survey.labels[lo:hi])) == set(range(len(dm.class_names)))


def test_normalisation_is_fitted_on_the_training_block_only(tmp_path):
    dm = make_dm(tmp_path)
    survey = Survey.load(dm.survey_dirs[0])
    lo, hi = dm.blocks[0]["train"]
    assert dm.normalisation == fit_normalisation(survey.amplitudes[lo:hi], max_traces=4096, clip_sigma=5.0)
    # changing the held-out blocks does not change it
    amplitudes = np.array(survey.amplitudes)
    amplitudes[hi:] *= 10
    assert fit_normalisation(amplitudes[lo:hi], max_traces=4096, clip_sigma=5.0) == dm.normalisation


def test_dataset_pickles_without_the_survey_and_works_in_workers(tmp_path):
    dm = make_dm(tmp_path, num_workers=2)
    ds = dm.datasets["train"]
    ds.__getitems__([0])  # opens the memmap in this process
    assert len(pickle.dumps(ds)) < 100_000 < Survey.load(dm.survey_dirs[0]).amplitudes.nbytes
    n = sum(len(y) for _, y in dm.train_dataloader())
    assert n == SAMPLING["train"]


def test_survey_cache_is_reused_and_keyed_by_parameters(tmp_path):
    first = materialise_survey("synthetic", tmp_path, survey=SMALL)
    stamp = (first / "amplitudes.npy").stat().st_mtime_ns
    assert materialise_survey("synthetic", tmp_path, survey=SMALL) == first
    assert (first / "amplitudes.npy").stat().st_mtime_ns == stamp
    other = materialise_survey("synthetic", tmp_path, survey={**SMALL, "seed": 4})
    assert other != first


def test_segy_source_reads_the_cube_labels_and_class_names(tmp_path):
    survey = generate_survey(SyntheticSurveyConfig(**SMALL))
    path = tmp_path / "s.sgy"
    write_cube(
        path,
        survey.amplitudes,
        survey.dt_ms,
        labels=survey.labels,
        provenance={"class_names": list(survey.class_names)},
        inlines=np.arange(100, 140),
    )
    dm = make_dm(tmp_path, source="segy", survey=None, segy={"path": str(path)})
    loaded = Survey.load(dm.survey_dirs[0])
    np.testing.assert_array_equal(loaded.amplitudes, survey.amplitudes)
    np.testing.assert_array_equal(loaded.labels, survey.labels)
    assert loaded.class_names == survey.class_names and loaded.inlines[0] == 100
    assert loaded.provenance["source"] == "segy" and len(loaded.provenance["sha256"]) == 64


def test_segy_source_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(ValueError, match=r"data\.segy\.path is required"):
        materialise_survey("segy", tmp_path, segy={})
    with pytest.raises(SurveyFileError, match=r"missing\.sgy: SEG-Y file not found"):
        materialise_survey("segy", tmp_path, segy={"path": str(tmp_path / "missing.sgy")})
    survey = generate_survey(SyntheticSurveyConfig(**SMALL))
    write_cube(tmp_path / "nolabels.sgy", survey.amplitudes, survey.dt_ms)
    with pytest.raises(SurveyFileError, match=r"nolabels\.labels\.npy: label volume not found"):
        materialise_survey("segy", tmp_path, segy={"path": str(tmp_path / "nolabels.sgy")})
    np.save(tmp_path / "wrong.npy", np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(SurveyFileError, match="differs from the SEG-Y cube"):
        materialise_survey(
            "segy",
            tmp_path,
            segy={"path": str(tmp_path / "nolabels.sgy"), "labels_path": str(tmp_path / "wrong.npy")},
        )


def test_config_mistakes_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"window: unknown key\(s\) \['lenght'\]"):
        SeismicDataModule(window={"lenght": 3})
    with pytest.raises(ValueError, match=r"data\.sampling: unknown key"):
        SeismicDataModule(sampling={"trian": 3})
    with pytest.raises(ValueError, match=r"data\.source must be one of"):
        materialise_survey("hdf5", tmp_path)


def test_several_survey_seeds_split_alike_and_share_every_split(tmp_path):
    dm = make_dm(tmp_path, survey={**SMALL, "seed": [3, 5]}, window={"length": 32, "width": 5})
    assert len(dm.survey_dirs) == 2 and dm.survey_dirs[0] != dm.survey_dirs[1]
    surveys = [Survey.load(d) for d in dm.survey_dirs]
    for name in ("train", "val", "test"):
        ds = dm.datasets[name]
        assert len(ds) == SAMPLING[name]
        assert np.bincount(ds.part).tolist() == [SAMPLING[name] // 2] * 2
        for part in (0, 1):  # leak-free in each survey
            assert footprint(dm, name, part)
        # every window is the right survey's window, normalised, with the label at its centre
        idx = np.arange(len(ds))
        x, y = ds.__getitems__(idx)
        part, il, xl, t = ds.global_centres()
        labels = np.stack([s.labels for s in surveys])
        assert y.numpy().tolist() == labels[part, il, xl, t].tolist()
        centre = x.numpy()[:, 0, 2, 16]
        amplitudes = np.stack([s.amplitudes for s in surveys])
        np.testing.assert_allclose(centre, dm.normalisation.apply(amplitudes[part, il, xl, t]), atol=1e-6)
    for part in (0, 1):
        train, val, test = (footprint(dm, name, part) for name in ("train", "val", "test"))
        assert not train & val and not train & test and not val & test
    # the training draw is class-balanced over both surveys together
    counts = np.bincount(dm.datasets["train"].raw(np.arange(SAMPLING["train"]))[1])
    assert counts.max() - counts.min() <= 2
    assert dm.meta["provenance"]["content_hashes"] == [s.content_hash() for s in surveys]
    single = make_dm(tmp_path, survey=SMALL)
    assert dm.data_hash != single.data_hash and len(dm.data_hash) == 64


def test_a_bad_list_of_survey_seeds_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"data\.survey\.seed: .* repeats a seed"):
        make_dm(tmp_path, survey={**SMALL, "seed": [1, 1]})
    with pytest.raises(ValueError, match=r"data\.survey\.seed: the list of survey seeds is empty"):
        make_dm(tmp_path, survey={**SMALL, "seed": []})


def centres(ds) -> set[tuple[int, int, int, int]]:
    return set(zip(ds.part.tolist(), ds.il.tolist(), ds.xl.tolist(), ds.t.tolist(), strict=True))


class _Linear(L.LightningModule):
    """The smallest module a Trainer can fit on the datamodule's batches."""

    def __init__(self, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(n_inputs, n_classes)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _SeenWindows(L.Callback):
    def __init__(self) -> None:
        self.per_epoch: list[set] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.per_epoch.append(centres(trainer.train_dataloader.dataset))


def test_resample_train_draws_new_training_windows_each_epoch_and_keeps_val_test(tmp_path):
    fixed = make_dm(tmp_path)
    dm = make_dm(tmp_path, sampling={**SAMPLING, "resample_train": True})
    val, test = centres(dm.datasets["val"]), centres(dm.datasets["test"])
    seen = _SeenWindows()
    trainer = L.Trainer(
        max_epochs=3,
        reload_dataloaders_every_n_epochs=1,  # what train() sets when resample_train is on
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[seen],
    )
    trainer.fit(_Linear(dm.window.length, len(dm.class_names)), datamodule=dm)
    first, second, third = seen.per_epoch
    assert first == centres(fixed.datasets["train"])  # epoch 0 is the plain sample
    for later in (second, third):
        assert len(later) > 0.9 * len(first)
        assert len(later & first) < 0.05 * len(first)
    assert len(second & third) < 0.05 * len(first)
    assert centres(dm.datasets["val"]) == val and centres(dm.datasets["test"]) == test
    # still leak-free and balanced: the new windows come from the training blocks only
    assert footprint(dm, "train").isdisjoint(footprint(dm, "val") | footprint(dm, "test"))
    train = dm.datasets["train"]
    _, labels = train.raw(np.arange(len(train)))
    counts = np.bincount(labels)
    assert counts[counts > 0].min() >= 0.8 * counts.max()
