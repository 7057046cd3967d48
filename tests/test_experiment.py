"""Experiment folders: train + evaluate any model on a dataset folder, files written, reruns resume."""
import json

import pytest
import torch

from nextitem.config import ConfigError
from nextitem.data.histories import LeaveOneOut, read_histories
from nextitem.models import SASRec
from nextitem.pipeline.experiment import run_experiment, split_params

from .sequential_contract import toy_histories, write_history_folder


@pytest.fixture
def folder(tmp_path):
    return write_history_folder(tmp_path / "toy", toy_histories(n_users=40, n_items=25, seed=2, min_len=4))


TINY = {"hidden": 16, "max_len": 8, "loss": "ce", "epochs": 2, "batch_size": 8}


def test_sasrec_experiment_writes_its_folder_and_rerun_resumes(folder, tmp_path):
    lines = []
    exp = run_experiment("sasrec", folder, TINY, out=tmp_path / "exp", progress=False, sampled=5, log=lines.append)
    names = {p.name for p in (tmp_path / "exp").iterdir()}
    assert {"config.json", "checkpoint.pt", "model.safetensors", "history.json", "metrics.json"} <= names
    metrics = json.loads((tmp_path / "exp" / "metrics.json").read_text())
    assert set(metrics) == {"valid", "test", "test_sampled"}
    assert metrics["test_sampled"]["sampled"] and not metrics["test"]["sampled"]
    assert metrics["test"]["metrics"] == pytest.approx(exp.results["test"].metrics)
    # the saved model reproduces the saved test metrics
    model = SASRec.load(tmp_path / "exp" / "model.safetensors")
    loo = LeaveOneOut.from_histories(read_histories(folder))
    assert model.evaluate(loo, "test").metrics == pytest.approx(metrics["test"]["metrics"])
    # a second run with more epochs continues from the checkpoint instead of starting over
    lines.clear()
    run_experiment("sasrec", folder, {**TINY, "epochs": 3}, out=tmp_path / "exp", progress=False, log=lines.append)
    assert any("Resumed" in str(line) and "after epoch 2" in str(line) for line in lines)
    assert len(json.loads((tmp_path / "exp" / "history.json").read_text())) == 3


def test_gru4rec_runs_on_histories_with_hidden_state_carried_over_the_history(folder, tmp_path):
    exp = run_experiment("gru4rec", folder, {"layers": [16], "n_epochs": 1, "batch_size": 8, "n_sample": 0},
                         out=tmp_path / "g", progress=False, log=lambda *a: None)
    loo = LeaveOneOut.from_histories(read_histories(folder))
    h = loo.test.inputs[0]
    # the score after a history depends on its early items too (state continues through the history)
    changed = h.copy()
    changed[0] = (changed[0] + 1) % loo.n_items
    assert not torch.allclose(exp.model.score([h]), exp.model.score([changed]))
    assert 0 <= exp.results["test"].metrics["ndcg@10"] <= 1


def test_parameters_are_split_and_unknown_ones_suggest_a_name():
    model, train = split_params("sasrec", {"model": {"hidden": 8}, "train": {"lr": 0.01}, "max_len": 5})
    assert model == {"hidden": 8, "max_len": 5} and train == {"lr": 0.01}
    with pytest.raises(ConfigError, match="Did you mean 'patience'"):
        split_params("sasrec", {"patiense": 3})
    with pytest.raises(ConfigError, match="Did you mean 'sasrec'"):
        split_params("sasrek", {})
    with pytest.raises(ConfigError, match="unknown parameter 'lr' for gru4rec.*Valid: .*learning_rate"):
        split_params("gru4rec", {"lr": 0.1})


def test_command_line_train_then_evaluate(folder, tmp_path, capsys):
    from nextitem.cli import main

    out = tmp_path / "cli"
    assert main(["train", "sasrec", str(folder), "-p", "hidden=16,max_len=8,loss=ce,epochs=1,batch_size=8",
                 "--out", str(out), "-q", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Metric | @5 | @10 | @20" in printed and "full ranking over 25 items" in printed
    assert main(["evaluate", str(out / "model.safetensors"), str(folder), "--sampled", "5", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "sampled: target + 5 uniform negatives" in printed and (out / "eval_test.json").exists()
    assert main(["train", "sasrec", str(folder), "-p", "hiden=16", "--out", str(out)]) == 2
    assert "Did you mean 'hidden'" in capsys.readouterr().err
