"""The nextitem command, run in-process on tiny files."""
import json
import re

import pandas as pd
import pytest

from nextitem.cli import main, resolve_param_file
from nextitem.config import load_param_file
from nextitem.data import SessionData, read_events
from nextitem.evaluation import evaluate_sessions
from nextitem.models.gru4rec import GRU4Rec

from .toy_sessions import sessions

PS = "layers=16,n_epochs=2,batch_size=8,n_sample=10,learning_rate=0.1,loss=bpr-max,momentum=0.2"
LINE = re.compile(r"^Recall@(\d+): ([0-9.]+) MRR@\1: ([0-9.]+)$", re.M)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    train, test = d / "train.tsv", d / "test.tsv"
    sessions(80, 0).to_csv(train, sep="\t", index=False)
    df = sessions(15, 1, first=1000)
    df.loc[3, "ItemId"] = "never-seen"
    df.to_csv(test, sep="\t", index=False)
    return d, train, test


@pytest.fixture(scope="module")
def model_path(files):
    """A model trained and saved through the library on the training file."""
    d, train, test = files
    path = d / "model.safetensors"
    params = dict(kv.split("=") for kv in PS.split(","))
    GRU4Rec(**params).fit(read_events(train), sample_store_size=2000).save(path)
    return path


def run(capsys, *argv):
    argv = [str(a) for a in argv]
    if "-l" not in argv:
        argv += ["-ss", "2000"]  # a small sample store: the default one takes ~1 s to fill
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def metric_lines(out):
    return {int(k): (float(r), float(m)) for k, r, m in LINE.findall(out)}


def test_train_save_load_evaluate(files, capsys, tmp_path):
    d, train, test = files
    model_path = tmp_path / "model.safetensors"
    code, out, err = run(capsys, "gru4rec", train, "-ps", PS, "-t", test, "-m", 1, 5, "-s", model_path, "-q")
    assert code == 0, err
    trained = metric_lines(out)
    assert sorted(trained) == [1, 5]
    assert "Epoch1 --> loss:" in out and "Epoch2 --> loss:" in out
    assert "Dropped 1 test events" in out
    assert model_path.exists()
    assert err == ""  # -q: no progress bars
    code, out2, err = run(capsys, "gru4rec", model_path, "-l", "-t", test, "-m", 1, 5, "-q")
    assert code == 0, err
    assert LINE.findall(out2) == LINE.findall(out)  # the same printed lines
    assert "Epoch1" not in out2
    # and the printed numbers are what the library computes
    model = GRU4Rec.load(model_path)
    data = SessionData.from_frame(pd.read_csv(test, sep="\t", dtype={"ItemId": str}), vocab=model.vocab)
    res = evaluate_sessions(model, data, cutoffs=(1, 5))
    for k, (r, m) in trained.items():
        assert r == pytest.approx(res.metrics[f"recall@{k}"], abs=1e-6)
        assert m == pytest.approx(res.metrics[f"mrr@{k}"], abs=1e-6)


def test_log_primary_metric(files, model_path, capsys):
    d, train, test = files
    for pm, idx in (("recall", 0), ("mrr", 1)):
        code, out, err = run(capsys, "gru4rec", model_path, "-l", "-t", test, "-m", 5, "-lpm", "-pm", pm, "-q")
        assert code == 0, err
        m = re.search(r"^PRIMARY METRIC: ([0-9.eE+-]+)$", out, re.M)
        assert m, out
        assert float(m.group(1)) == pytest.approx(metric_lines(out)[5][idx], abs=1e-6)
    code, out, err = run(capsys, "gru4rec", model_path, "-l", "-t", test, "-m", 5, 10, "-lpm", "-q")
    assert code == 2 and err.startswith("error:") and "-lpm" in err


@pytest.mark.parametrize("mode", ["conservative", "median"])
def test_eval_type(files, model_path, capsys, mode):
    d, train, test = files
    code, out, err = run(capsys, "gru4rec", model_path, "-l", "-t", test, "-m", 3, "-e", mode, "-q")
    assert code == 0, err
    assert f"using {mode} mode" in out
    assert 3 in metric_lines(out)


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_column_is_a_one_line_error(files, capsys, tmp_path):
    d, train, test = files
    bad = tmp_path / "bad.tsv"
    pd.read_csv(train, sep="\t").rename(columns={"Time": "ts"}).to_csv(bad, sep="\t", index=False)
    code, out, err = run(capsys, "gru4rec", bad, "-ps", PS, "-q")
    assert code == 2
    line = one_line_error(err)
    assert str(bad) in line and "'Time'" in line and "-tk" in line
    # and -tk fixes it
    code, out, err = run(capsys, "gru4rec", bad, "-ps", PS, "-tk", "ts", "-q")
    assert code == 0, err


def test_bad_test_file_is_a_one_line_error(files, model_path, capsys, tmp_path):
    d, train, test = files
    bad = tmp_path / "bad_test.tsv"
    bad.write_text("SessionId\tItemId\tTime\n1\tp1\t5\n1\tp2\tlater\n")
    code, out, err = run(capsys, "gru4rec", model_path, "-l", "-t", bad, "-q")
    assert code == 2
    line = one_line_error(err)
    assert "data row 2" in line and "'later'" in line


def test_not_a_model_file_is_a_one_line_error(files, capsys):
    """-l on a file that is not a saved model (here the training TSV)."""
    d, train, test = files
    code, out, err = run(capsys, "gru4rec", train, "-l", "-t", test, "-q")
    assert code == 2
    assert str(train) in one_line_error(err)


@pytest.mark.parametrize("cutoff", ["0", "-5"])
def test_bad_cutoff_is_a_one_line_error(files, model_path, capsys, cutoff):
    d, train, test = files
    # argparse rejects it before anything runs: exit code 2, usage line, then the error line
    with pytest.raises(SystemExit) as exc:
        main(["gru4rec", str(model_path), "-l", "-t", str(test), "-m", str(cutoff), "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument -m/--measure: cut-offs are positive integers" in err


@pytest.mark.parametrize("ps,expect", [
    ("layers=16,learnig_rate=0.1", "Did you mean 'learning_rate'"),
    ("layers=16,loss=foo", "loss"),
    ("layers=16,dropout_p_embed=1.5", "dropout_p_embed"),
    ("layers16", "name=value"),
])
def test_bad_parameters_are_one_line_errors(files, capsys, ps, expect):
    d, train, test = files
    code, out, err = run(capsys, "gru4rec", train, "-ps", ps, "-q")
    assert code == 2
    assert expect in one_line_error(err)


def test_missing_files_are_one_line_errors(files, capsys, tmp_path):
    d, train, test = files
    code, out, err = run(capsys, "gru4rec", tmp_path / "nope.tsv", "-ps", PS, "-q")
    assert code == 2 and "nope.tsv" in one_line_error(err)
    code, out, err = run(capsys, "gru4rec", tmp_path / "nope.safetensors", "-l", "-t", test, "-q")
    assert code == 2 and "nope.safetensors" in one_line_error(err)
    code, out, err = run(capsys, "gru4rec", train, "-pf", tmp_path / "nope.py", "-q")
    assert code == 2 and "nope.py" in one_line_error(err)


PY_PARAMS = """\
from collections import OrderedDict
gru4rec_params = OrderedDict([
    ('loss', 'cross-entropy'),
    ('layers', [12]),
    ('n_epochs', 1),
    ('batch_size', 8),
    ('n_sample', 5),
    ('logq', 1.0),
])
"""


@pytest.mark.parametrize("suffix", [".py", ".json"])
def test_param_file(files, capsys, tmp_path, suffix):
    d, train, test = files
    path = tmp_path / f"params{suffix}"
    if suffix == ".py":
        path.write_text(PY_PARAMS)
    else:
        path.write_text(json.dumps({"loss": "bpr-max", "layers": [12], "n_epochs": 1, "batch_size": 8,
                                    "n_sample": 5, "constrained_embedding": False, "embedding": "layersize"}))
    code, out, err = run(capsys, "gru4rec", train, "-pf", path, "-t", test, "-m", 5, "-q")
    assert code == 0, err
    assert "SET   layers" in out and "Epoch1 --> loss:" in out and "Epoch2" not in out
    assert 5 in metric_lines(out)


def test_param_file_unknown_key(files, capsys, tmp_path):
    d, train, test = files
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"layers": [8], "n_sampel": 5}))
    code, out, err = run(capsys, "gru4rec", train, "-pf", path, "-q")
    assert code == 2
    line = one_line_error(err)
    assert "'n_sampel'" in line and "Did you mean 'n_sample'" in line and "p.json" in line


def test_shipped_param_file_names_resolve():
    path = resolve_param_file("rsc15_xe_shared_best")
    assert path.endswith("rsc15_xe_shared_best.py")
    assert load_param_file(path)["loss"] == "cross-entropy"
    assert resolve_param_file("rsc15_xe_shared_best.py") == path


def test_unknown_shipped_name_lists_the_shipped_ones(files, capsys):
    d, train, test = files
    code, out, err = run(capsys, "gru4rec", train, "-pf", "no_such_params", "-q")
    assert code == 2 and "rsc15_xe_shared_best" in one_line_error(err)


def test_exactly_one_of_ps_pf_l(files, capsys):
    d, train, test = files
    with pytest.raises(SystemExit) as e:
        main(["gru4rec", str(train), "-ps", PS, "-l"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["gru4rec", str(train)])
    capsys.readouterr()


def test_unavailable_device_is_a_one_line_error(files, capsys):
    import torch

    if torch.cuda.is_available():
        bad = f"cuda:{torch.cuda.device_count()}"  # one past the last device
    else:
        bad = "cuda:0"
    d, train, test = files
    code = main(["gru4rec", str(train), "-ps", "layers=8,n_epochs=1", "-d", bad, "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: device") and err.count("\n") == 1
