"""The retrain trigger: the two policies, the cooldown, the audit log, commands and the webhook action."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from seismic.monitoring.job.retrain import RetrainConfig, RetrainTrigger
from seismic.monitoring.state import MonitorState

sys.path.insert(0, str(Path(__file__).parent))  # report-window builder and receiver of the alert tests
from test_alerts import Receiver, window


def _trigger(tmp_path, **kw) -> RetrainTrigger:
    marker = tmp_path / "ran.txt"
    # a stand-in for train.py: appends its arguments, so the test sees what ran, in which order
    script = tmp_path / "fake_train.py"
    script.write_text(f"import sys\nopen({str(marker)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    cfg = {
        "enabled": True,
        "consecutive_windows": 2,
        "embedding_and_predictions": True,
        "cooldown": dt.timedelta(hours=1),
        "commands": (("{python}", str(script), "env={env}", "{data}", "until={window_end}"),),
        "data": ("data.survey.snr_db=4",),
        "wait": True,
        "audit_log": str(tmp_path / "audit.jsonl"),
        **kw,
    }
    return RetrainTrigger(RetrainConfig(**cfg), MonitorState(None), env="staging", model_name="m")


def _audit(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def _families(w: dict) -> list[str]:
    out = ["raw"] if w["raw"]["drifted"] else []
    return out + (["embedding"] if w["embedding"]["drifted"] else [])


def test_consecutive_windows_then_cooldown(tmp_path):
    t = _trigger(tmp_path)
    drift = ("rms",)
    windows = [
        window(0, drift=drift),  # streak 1
        window(1, status="insufficient_data"),  # neither extends nor breaks the streak
        window(2, drift=drift),  # streak 2: trigger (ends 00:45)
        window(3, drift=drift),
        window(4, drift=drift),  # streak 2 again, but within the hour: cooldown
        window(5),  # clean: streak reset
        window(6, drift=drift),
        window(7, drift=drift),  # streak 2, ends 02:00 >= 00:45 + 1 h: trigger
    ]
    decisions = [t.decide(w, _families(w) if w["status"] == "ok" else []) for w in windows]
    kinds = [None if d is None else d["decision"] for d in decisions]
    assert kinds == ["skip", None, "trigger", "skip", "skip", "skip", "skip", "trigger"]
    assert "cooldown until 2025-03-01T01:45:00+00:00" in decisions[4]["reason"]
    assert decisions[2]["reason"] == "drift on 2 consecutive windows"

    ran = (tmp_path / "ran.txt").read_text().splitlines()
    assert ran == [
        "env=staging data.survey.snr_db=4 until=2025-03-01T00:45:00+00:00",
        "env=staging data.survey.snr_db=4 until=2025-03-01T02:00:00+00:00",
    ]
    audit = _audit(tmp_path)
    assert [a["decision"] for a in audit] == [
        "skip",
        "trigger",
        "finished",
        "skip",
        "skip",
        "skip",
        "skip",
        "trigger",
        "finished",
    ]
    finished = audit[2]
    assert finished["ok"] and finished["commands"][0]["rc"] == 0 and not finished["promoted"]
    assert all("time" in a for a in audit)


def test_embedding_and_prediction_drift_in_one_window_triggers_at_once(tmp_path):
    t = _trigger(tmp_path, consecutive_windows=5)
    assert t.decide(window(0, embedding=True), ["embedding"])["decision"] == "skip"
    decision = t.decide(window(1, embedding=True), ["embedding", "predictions"])
    assert decision["decision"] == "trigger" and decision["reason"].startswith("embedding and prediction")
    # data quality alone is not a reason to retrain
    assert t.decide(window(2), ["quality"])["reason"] == "no drift"


def test_a_refused_promotion_is_recorded_and_a_failed_step_stops_the_rest(tmp_path):
    promote = tmp_path / "promote.py"
    promote.write_text("import sys\nsys.exit(1)\n")  # the gate refuses
    t = _trigger(
        tmp_path, consecutive_windows=1, commands=(("{python}", "-c", "pass"), ("{python}", str(promote)))
    )
    t.decide(window(0, drift=("rms",)), ["raw"])
    finished = _audit(tmp_path)[-1]
    assert finished["ok"] and not finished["promoted"] and [c["rc"] for c in finished["commands"]] == [0, 1]

    (tmp_path / "b").mkdir()
    broken = _trigger(
        tmp_path / "b",
        consecutive_windows=1,
        commands=(("{python}", "-c", "import sys; sys.exit(3)"), ("{python}", str(promote))),
    )
    broken.decide(window(0, drift=("rms",)), ["raw"])
    finished = _audit(tmp_path / "b")[-1]
    assert not finished["ok"] and [c["rc"] for c in finished["commands"]] == [3]  # promote never ran


def test_webhook_action_and_background_run(tmp_path):
    receiver = Receiver()
    try:
        t = _trigger(
            tmp_path,
            consecutive_windows=1,
            action="webhook",
            webhook={"url": receiver.url + "/retrain"},
            wait=False,
        )
        t.decide(window(0, drift=("rms",)), ["raw"])
        t.stop(grace_s=30)
        assert not t.running
        body = receiver.bodies[0]
        assert (
            body["event"] == "retrain" and body["model"] == "m" and body["data"] == ["data.survey.snr_db=4"]
        )
        assert body["window"]["end"] == "2025-03-01T00:15:00+00:00"
        finished = _audit(tmp_path)[-1]
        assert finished["decision"] == "finished" and finished["ok"]
    finally:
        receiver.close()
