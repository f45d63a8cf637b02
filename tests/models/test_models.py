"""Contract tests run over every registered model (a newly registered model gets them automatically)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from seismic.models import (
    CNN1D,
    CNN2D,
    NORMS,
    POOLS,
    FaciesNet,
    ModelConfigError,
    build_model,
    get_model_class,
    list_models,
    model_defaults,
    model_task,
    register_model,
)
from seismic.models.blocks import centre_slice
from seismic.models.registry import _REGISTRY

MODELS = list_models()
NUM_CLASSES = 5
T, W = 64, 16


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def make(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=NUM_CLASSES, **kwargs)


def example(model: nn.Module, batch: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    spatial = (T,) if model.input_ndim == 1 else (W, T)
    return torch.randn(batch, getattr(model, "in_channels", 1), *spatial, generator=gen)


def logits_shape(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """What the contract promises: one row per window (classification) or per input sample (segmentation)."""
    if model_task(model) == "segmentation":
        return (x.shape[0], NUM_CLASSES, *x.shape[2:])
    return (x.shape[0], NUM_CLASSES)


def targets(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shape = logits_shape(model, x)
    return torch.arange(int(np.prod((shape[0], *shape[2:])))).reshape(shape[0], *shape[2:]) % NUM_CLASSES


def test_builtin_models_registered():
    assert {"cnn1d", "cnn2d", "unet1d", "unet2d"} <= set(MODELS)
    assert [model_task(n) for n in ("cnn1d", "cnn2d", "unet1d", "unet2d")] == [
        "classification",
        "classification",
        "segmentation",
        "segmentation",
    ]
    assert get_model_class("cnn1d") is CNN1D
    assert get_model_class("cnn2d") is CNN2D
    assert model_defaults("cnn2d")["channels_last"] is True


@pytest.mark.parametrize("name", MODELS)
def test_contract_attributes(name):
    model = make(name)
    assert isinstance(model, FaciesNet)
    assert model.num_classes == NUM_CLASSES
    assert model.input_ndim in (1, 2)
    assert model.embedding_dim >= 1


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("name", MODELS)
def test_output_shapes(name, batch):
    model = make(name).eval()
    x = example(model, batch)
    with torch.no_grad():
        logits, embedding = model(x)
    assert logits.shape == logits_shape(model, x)
    assert embedding.shape == (batch, model.embedding_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(embedding).all()


@pytest.mark.parametrize("name", MODELS)
def test_train_mode_batch(name):
    model = make(name).train()
    x = example(model, 7)
    logits, embedding = model(x)
    assert logits.shape == logits_shape(model, x) and embedding.shape == (7, model.embedding_dim)


@pytest.mark.parametrize("name", MODELS)
def test_embedding_dim_as_declared(name):
    model = make(name, embedding_dim=24).eval()
    assert model.embedding_dim == 24
    assert model(example(model, 3))[1].shape == (3, 24)
    bare = make(name, embedding_dim=None).eval()
    assert bare(example(bare, 3))[1].shape == (3, bare.embedding_dim)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    model = make(name).train()
    x = example(model, 8)
    logits, _ = model(x)
    nn.functional.cross_entropy(logits, targets(model, x)).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {pname}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", MODELS)
def test_eval_deterministic_and_batch_independent(name):
    model = make(name).eval()
    x = example(model, 7)
    with torch.no_grad():
        a_logits, a_emb = model(x)
        b_logits, b_emb = model(x)
        one_logits, one_emb = model(x[2:3])
    assert torch.equal(a_logits, b_logits) and torch.equal(a_emb, b_emb)
    torch.testing.assert_close(one_logits, a_logits[2:3], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(one_emb, a_emb[2:3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast(name):
    model = make(name).train()
    x = example(model, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, embedding = model(x)
        loss = nn.functional.cross_entropy(logits, targets(model, x))
    assert logits.dtype == torch.bfloat16
    assert torch.isfinite(logits.float()).all() and torch.isfinite(embedding.float()).all()
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_torch_export_dynamic_batch(name):
    """The graph the ONNX exporter starts from: no data-dependent control flow, a symbolic batch axis."""
    model = make(name).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (example(model, 4),), dynamic_shapes=({0: batch},))
    exported = program.module()
    for size in (1, 9):
        x = example(model, size, seed=size)
        with torch.no_grad():
            want = model(x)
            got = exported(x)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_and_onnxruntime_parity(name, tmp_path):
    """The project's exporter on every registered model: dynamic batch, 3 outputs, onnxruntime parity."""
    import onnx
    import onnxruntime as ort

    from seismic.export.onnx import export_onnx

    model = make(name).eval()
    shape = list(example(model, 1).shape[1:])
    metadata = {"input": {"name": "windows", "shape": [None, *shape]}, "normalisation": {"clip_sigma": 5.0}}
    written = export_onnx(model, tmp_path, metadata, real_windows=example(model, 33).numpy(), large_batch=33)
    assert written["parity"]["passed"] and written["parity"]["max_abs_error"] <= 1e-4
    dense = model_task(model) == "segmentation"
    large = 32 if dense else 33  # segmentation tiles: SEGMENTATION_LARGE_BATCH
    expected = {("random", 1), ("random", large), ("real", 1), ("real", large)}
    if dense:  # the dynamic spatial axes are checked at a second tile size
        expected |= {("random_2x_tile", 1), ("random_2x_tile", 4)}
    assert {(c["inputs"], c["batch"]) for c in written["parity"]["checks"]} == expected
    graph = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(graph)
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param, "the batch axis must be symbolic"
    assert all(bool(d.dim_param) == dense for d in list(dims)[2:]), "spatial axes: symbolic iff dense"
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    sizes = [(1, None), (7, None)] + ([(2, model.size_multiple * 3)] if dense else [])
    for size, length in sizes:  # batch sizes (and a tile length) the parity check did not use
        x = example(model, size, seed=size + 100)
        if length is not None:
            x = torch.randn(*x.shape[:-1], length)
        logits, probabilities, embedding = session.run(None, {"windows": x.numpy()})
        with torch.no_grad():
            want_logits, want_embedding = model(x)
        assert logits.shape == logits_shape(model, x) and embedding.shape == (size, model.embedding_dim)
        torch.testing.assert_close(torch.from_numpy(logits), want_logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(torch.from_numpy(embedding), want_embedding, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            torch.from_numpy(probabilities), torch.softmax(want_logits, dim=1), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["cnn1d", "cnn2d"])
def test_norm_and_pool_variants(name, norm, pool):
    model = make(name, norm=norm, pool=pool, width=8, depth=2, centre_size=3).train()
    logits, embedding = model(example(model, 3))
    assert logits.shape == (3, NUM_CLASSES) and embedding.shape == (3, model.embedding_dim)


@pytest.mark.parametrize("name", ["cnn1d", "cnn2d"])
def test_odd_sizes_and_no_residual(name):
    model = make(name, residual=False, depth=4, kernel_size=3).eval()
    spatial = (37,) if model.input_ndim == 1 else (5, 37)
    logits, _ = model(torch.randn(2, 1, *spatial))
    assert logits.shape == (2, NUM_CLASSES)


def test_cnn2d_channels_last():
    model = make("cnn2d")
    conv = model.stages[0].conv1[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert model.features(example(model, 2)).is_contiguous(memory_format=torch.channels_last)
    plain = make("cnn2d", channels_last=False)
    plain.load_state_dict(model.state_dict())
    assert plain.stages[0].conv1[0].weight.is_contiguous()
    model.eval()
    plain.eval()
    x = example(model, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], plain(x)[0], rtol=1e-4, atol=1e-5)
    assert make("cnn2d", kernel_size=(3, 5)).stem[0].kernel_size == (3, 5)


@pytest.mark.parametrize("name", [n for n in MODELS if model_task(n) == "segmentation"])
def test_segmentation_nets_take_any_legal_size_and_refuse_others(name):
    model = make(name).eval()
    m = model.size_multiple
    spatial = (3 * m,) if model.input_ndim == 1 else (2 * m, 5 * m)
    with torch.no_grad():
        logits, embedding = model(torch.randn(2, 1, *spatial))
    assert logits.shape == (2, NUM_CLASSES, *spatial) and embedding.shape == (2, model.embedding_dim)
    bad = (3 * m + 1,) if model.input_ndim == 1 else (2 * m, 5 * m - 2)
    with pytest.raises(ValueError, match=rf"multiple of {m}, got shape \[2, 1, {', '.join(map(str, bad))}\]"):
        model(torch.randn(2, 1, *bad))


@pytest.mark.parametrize("name", [n for n in MODELS if model_task(n) == "segmentation"])
def test_segmentation_logits_follow_the_input_locally(name):
    """Dense output: a spike changes the logits near it far more than far from it (no global head)."""
    model = make(name, dropout=0.0).eval()
    x = torch.zeros(1, 1, *((128,) if model.input_ndim == 1 else (16, 128)))
    spiked = x.clone()
    spiked[..., 8] = 5.0
    with torch.no_grad():
        delta = (model(spiked)[0] - model(x)[0]).abs()
    assert delta[..., :16].sum() > 10 * delta[..., -16:].sum()


def test_centre_slice_picks_the_centre():
    x = torch.arange(8.0).view(1, 1, 8)
    assert centre_slice(x, 2, 1).flatten().tolist() == [4.0]
    assert centre_slice(x, 2, 3).flatten().tolist() == [3.0, 4.0, 5.0]
    assert centre_slice(x, 2, 20).flatten().tolist() == list(range(8))
    assert centre_slice(torch.arange(2.0).view(1, 1, 2), 2, 1).flatten().tolist() == [1.0]


def test_centre_pooling_reads_the_centre_of_the_window():
    """A centre-pooled embedding responds to a spike at the window centre far more than to one at an edge."""
    model = make("cnn1d", pool="centre", embedding_dim=None).eval()
    base = torch.zeros(1, 1, T)
    responses = []
    for position in (T // 2, 2):
        x = base.clone()
        x[..., position] = 5.0
        with torch.no_grad():
            responses.append((model(x)[1] - model(base)[1]).abs().sum().item())
    assert responses[0] > 2 * responses[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 4}, "odd"),
        ({"norm": "layer"}, "norm"),
        ({"pool": "max"}, "pool"),
        ({"depth": -1}, "depth"),
        ({"dropout": 1.0}, "dropout"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"width": 0}, "width"),
    ],
)
def test_bad_values_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model("cnn1d", **kwargs)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet999'") as info:
        build_model("resnet999")
    for name in MODELS:
        assert name in str(info.value)


def test_unknown_kwarg_names_kwarg_and_model():
    with pytest.raises(TypeError, match=r"'cnn2d'.*\['widht'\]"):
        build_model("cnn2d", widht=8)
    with pytest.raises(ValueError, match="widht"):  # also catchable as ValueError (config errors)
        build_model("cnn2d", widht=8)
    assert issubclass(ModelConfigError, TypeError) and issubclass(ModelConfigError, ValueError)


def test_register_new_model_and_reject_duplicates():
    @register_model("_test_linear")
    class Linear(nn.Module):
        input_ndim = 1

        def __init__(self, num_classes: int = 3, in_channels: int = 1, length: int = T) -> None:
            super().__init__()
            self.num_classes, self.in_channels, self.embedding_dim = num_classes, in_channels, 4
            self.embed = nn.Linear(in_channels * length, 4)
            self.head = nn.Linear(4, num_classes)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            e = self.embed(x.flatten(1))
            return self.head(e), e

    try:
        assert "_test_linear" in list_models()
        assert isinstance(build_model("_test_linear", num_classes=4), Linear)
        with pytest.raises(ValueError, match="already registered"):
            register_model("_test_linear")(CNN1D)
        with pytest.raises(TypeError, match=r"nn\.Module"):
            register_model("_test_other")(object)
    finally:
        _REGISTRY.pop("_test_linear", None)
    assert "_test_linear" not in list_models()
