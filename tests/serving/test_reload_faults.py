"""A model file corrupted on disk before a reload: the reload fails in one line naming the file and the old
model keeps answering; the poller (a registry source) is covered in test_registry_faults.py."""

from __future__ import annotations

import shutil

import pytest
import requests
from conftest import amplitudes, start


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupted_model_file_fails_the_reload_and_keeps_serving(model_dirs, tmp_path, damage):
    folder = shutil.copytree(model_dirs["cnn1d"], tmp_path / "model")
    running = start(folder, tmp_path / "log")
    x = amplitudes(3, (1, 64))
    try:
        before = requests.post(running.url + "/predict", json={"windows": x.tolist()}, timeout=10)
        assert before.ok
        onnx = folder / "model.onnx"
        data = onnx.read_bytes()
        onnx.write_bytes(
            {"garbage": b"\x00\xffnot a protobuf" * 64, "truncated": data[: len(data) // 2], "empty": b""}[
                damage
            ]
        )
        response = requests.post(running.url + "/reload", timeout=30)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "\n" not in detail and detail.startswith(
            f"source: {folder}: onnxruntime cannot load the model: "
        )
        assert f"{folder}/model.onnx" in detail  # the file, not only its folder
        after = requests.post(running.url + "/predict", json={"windows": x.tolist()}, timeout=10)
        assert after.ok and after.json()["classes"] == before.json()["classes"]  # the old model, unharmed
        metrics = requests.get(running.url + "/metrics", timeout=10).text
        assert 'result="failed"} 1.0' in metrics
    finally:
        running.stop()
