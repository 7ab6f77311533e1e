"""What MLflow's run list shows for a training run: datasets with digests and contexts, source tags, a LoggedModel
pointing at final/, the experiment's kind, curves with enough points, and progress lines in a non-terminal log."""

from __future__ import annotations

import json
import math
import urllib.request

import pytest

from cvil.config import load_config
from cvil.train import run_metadata


def _qla_folder(root, name="vg", rows=('[{"q": 1}]',)):
    folder = root / name
    (folder / "train").mkdir(parents=True)
    (folder / "train2014_qla_mrcnn.json").write_text(rows[0])
    (folder / "val2014_qla_mrcnn.json").write_text('[{"q": 2}]')
    (folder / "train" / "1.pt").write_bytes(b"x" * 10)
    return folder


def test_dataset_inputs_name_context_and_digest(tmp_path):
    _qla_folder(tmp_path)
    cfg = load_config(None, [f"data.root={tmp_path}", "stages=[{name: s, dataset: vg}]", "evaluate=[val, test]"])
    items = run_metadata.dataset_inputs(cfg)
    assert [(d["name"], d["context"]) for d in items] == [("vg/train", "train"), ("vg/val", "val")]  # no test file
    train = items[0]
    assert len(train["digest"]) == 16 and json.loads(train["source"])["uri"].endswith("vg/train2014_qla_mrcnn.json")
    profile = json.loads(train["profile"])
    assert profile["qla_bytes"] == len('[{"q": 1}]') and profile["features"].endswith("vg/train")
    again = run_metadata.dataset_inputs(cfg)
    assert again == items  # the same files give the same digests
    (tmp_path / "vg" / "train2014_qla_mrcnn.json").write_text('[{"q": 3}]')
    assert run_metadata.dataset_inputs(cfg)[0]["digest"] != train["digest"]  # the questions changed
    (tmp_path / "vg" / "train" / "2.pt").write_bytes(b"y")
    assert run_metadata.dataset_inputs(cfg)[1] == items[1]  # val untouched


def test_source_tags_name_the_command_and_commit(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/x/cvil/__main__.py", "train", "--config", "/a/configs/c.yaml", "seed=1"])
    tags = run_metadata.source_tags("abc123+dirty")
    assert tags["mlflow.source.name"] == "python -m cvil train --config c.yaml"  # the UI shows it as a file name
    assert tags["cvil.command"] == "python -m cvil train --config /a/configs/c.yaml seed=1"
    assert tags["mlflow.source.git.commit"] == "abc123" and tags["mlflow.source.type"] == "LOCAL"


def _rest(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.mark.slow
def test_a_run_as_the_mlflow_ui_sees_it(overrides_for, synthetic_config, tmp_path, mlflow_store, capfd):
    from bench.ui import MlflowServer, free_port
    from cvil.train.api import run

    out = tmp_path / "kd"
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(
        out, "tracking.enabled=true", f"tracking.uri={mlflow_store}", "tracking.experiment=meta",
        "tracking.run_name=baseline-s1", "train.log_every=0", "train.progress=auto"))
    run(cfg)
    err = capfd.readouterr().err
    steps = {}
    for line in err.splitlines():  # stderr is not a terminal here: periodic one-line reports, not a bar
        if line.startswith("[train] "):
            stage, step = line.split()[1], line.split()[3]
            steps.setdefault(stage, []).append(step)
    assert set(steps) == {s.name for s in cfg.stages}
    for stage, seen in steps.items():
        total = seen[-1].split("/")[1]
        every = math.ceil(int(total) / 10)  # a line at every tenth of the stage (and every 30 s)
        assert seen[-1] == f"{total}/{total}" and len(seen) >= int(total) // every, (stage, seen)
    assert "samples/s | ETA" in err

    with MlflowServer(mlflow_store, port=free_port(), log_path=str(tmp_path / "server.log")) as server:
        exp = _rest(server.url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=meta")["experiment"]
        runs = _rest(server.url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
        run_id = runs[0]["info"]["run_id"]
        models = _rest(server.url, "/api/2.0/mlflow/logged-models/search",
                       {"experiment_ids": [exp["experiment_id"]]})["models"]
        history = _rest(server.url, f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=train.loss")
    assert {t["key"]: t["value"] for t in exp["tags"]}["mlflow.experimentKind"] == "custom_model_development"
    assert len(runs) == 1
    tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    inputs = {(d["dataset"]["name"], d["tags"][0]["value"]): d["dataset"] for d in runs[0]["inputs"]["dataset_inputs"]}
    assert set(inputs) == {("vg/train", "train"), ("vg/val", "val"), ("vg/test", "test")}
    expected = {d["name"]: d["digest"] for d in run_metadata.dataset_inputs(cfg)}
    assert {name: d["digest"] for (name, _), d in inputs.items()} == expected
    assert [m["model_id"] for m in runs[0]["outputs"]["model_outputs"]] == [models[0]["info"]["model_id"]]
    info = models[0]["info"]
    assert info["name"] == "baseline-s1" and info["status"] == "LOGGED_MODEL_READY" and info["source_run_id"] == run_id
    model_tags = {t["key"]: t["value"] for t in info["tags"]}
    assert model_tags["cvil.model_path"] == str((out / "final").resolve())
    assert (out / "final" / "config.json").is_file()  # the weights stay there: MLflow holds a pointer
    # log_every=0: about 100 points per stage, so even a run of a few dozen steps has a curve, not one point
    total_steps = sum(int(seen[-1].split("/")[1]) for seen in steps.values())
    assert len(history["metrics"]) >= min(total_steps, 20)
    # the LoggedModel carries the final metrics, each linked to the dataset (name and digest) it was measured on
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_store)
    linked = {m.key: m for m in client.get_logged_model(info["model_id"]).metrics}
    final = json.loads((out / "final_metrics.json").read_text(encoding="utf-8"))
    assert final and set(linked) == set(final)
    assert all(linked[k].value == pytest.approx(final[k]) for k in final)
    test_keys = [k for k in final if k.startswith("test.")]
    assert test_keys and all(linked[k].dataset_name == "vg/test" and linked[k].dataset_digest == expected["vg/test"]
                             for k in test_keys)
    assert len(client.get_metric_history(run_id, "test.accuracy")) == 1  # the run's own point is not duplicated
    # the world is part of the run's identity; bookkeeping is tags, not chart-leading metrics
    assert tags["cvil.world"] == "tiny"
    assert not [k for k in client.get_run(run_id).data.metrics if k.startswith("data.")]
    assert {f"data.{s.name}.train.rows" for s in cfg.stages} <= set(tags)
