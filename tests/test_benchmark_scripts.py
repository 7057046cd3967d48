"""The step profiler reaches into the trainer's internals by name; this catches it drifting from them."""
import importlib.util
import pathlib

from tests.toy_sessions import sessions

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_gru4rec_step_times_every_part(tmp_path, capsys):
    path = tmp_path / "train.tsv"
    sessions(300, seed=1).to_csv(path, sep="\t", index=False)
    load("profile_gru4rec_step").main([str(path), "-ps", "layers=16,batch_size=8,n_sample=16,loss=bpr-max",
                                       "--steps", "20", "--warmup", "3"])
    out = capsys.readouterr().out
    assert "20 steps after 3 warm-up" in out
    for part in ("GRU forward", "GRU backward", "loss", "item-table update", "dense update", "iterator"):
        line = next(l for l in out.splitlines() if l.strip().startswith(part))
        assert float(line.split()[-3]) > 0, line  # each part was really timed
    # the trainer is left as it was: a full fit runs past the profiled steps
    from nextitem.models import GRU4Rec

    GRU4Rec(layers=[16], batch_size=8, n_sample=16, n_epochs=1).fit(sessions(300, seed=1))


def test_ab_gru4rec_step_alternates_two_checkouts(tmp_path, capsys):
    path = tmp_path / "train.tsv"
    sessions(300, seed=2).to_csv(path, sep="\t", index=False)
    load("ab_gru4rec_step").main([str(path), "-ps", "layers=16,batch_size=8,n_sample=16", "--trees", str(ROOT), str(ROOT),
                                  "--steps", "5", "--turns", "4"])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(str(ROOT))]
    assert len(lines) == 2
    for line in lines:
        assert line.split(":")[1].split()[0] == "2"  # 4 turns, the first 2 warm-up


def test_ab_gru4rec_step_names_a_wrong_tree(tmp_path):
    import pytest

    with pytest.raises(SystemExit):
        load("ab_gru4rec_step").main([str(tmp_path / "x.tsv"), "-ps", "layers=4", "--trees", str(tmp_path), str(ROOT)])
