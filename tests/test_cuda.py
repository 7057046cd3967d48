"""GRU4Rec on a CUDA device gives what it gives on the CPU.

On the CPU training runs through numba kernels; on a GPU through torch ops, replayed as a CUDA graph. With dropout off both
draw the same negative samples (the sample store is generated on the CPU from the same seed), so
the two runs must end with the same weights up to float32 rounding. Skipped, with its reason, where
no CUDA device exists (CI); run on a GPU machine.
"""
import pytest
import torch

from nextitem.data import SessionData
from nextitem.evaluation import evaluate_sessions
from nextitem.models.gru4rec import GRU4Rec

from .test_gru4rec import MODES, brute_force_eval, eval_test_df, heldout_df, params, train_df

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: these compare the GPU path with the CPU path"),
    pytest.mark.filterwarnings("error:GRU4Rec. CUDA graph capture failed"),  # the graphed step must be what is tested
]


def fit(device, mode, loss, **extra):
    p = params(mode, loss, dropout=0.0, **extra)
    return GRU4Rec(device=device, **p).fit(train_df(), sample_store_size=2000)


@pytest.mark.parametrize("loss,extra", [("cross-entropy", {}), ("cross-entropy", {"logq": 1.0}),
                                        ("bpr-max", {"momentum": 0.3}), ("bpr-max", {"elu_param": 0.0})])
@pytest.mark.parametrize("mode", list(MODES))
def test_cuda_training_matches_cpu(mode, loss, extra):
    cpu, gpu = fit("cpu", mode, loss, **extra), fit("cuda:0", mode, loss, **extra)
    for h_cpu, h_gpu in zip(cpu.history, gpu.history):
        assert h_gpu["loss"] == pytest.approx(h_cpu["loss"], rel=1e-4)
        assert h_gpu["events"] == h_cpu["events"]
    want = cpu.net.state_dict()
    for name, value in gpu.net.state_dict().items():
        assert value.device.type == "cuda"
        torch.testing.assert_close(value.cpu(), want[name], rtol=1e-3, atol=1e-4, msg=name)


def test_cuda_training_with_dropout_learns():
    model = GRU4Rec(device="cuda:0", **params("shared", "bpr-max", dropout=0.3)).fit(train_df(), sample_store_size=2000)
    res = evaluate_sessions(model, SessionData.from_frame(heldout_df(), vocab=model.vocab), cutoffs=(5,))
    assert res.metrics["recall@5"] > 0.5  # chance is 5/30


@pytest.mark.parametrize("mode", ["shared", "none"])
def test_cuda_evaluation_equals_brute_force_and_cpu(tmp_path, mode):
    model = fit("cpu", mode, "bpr-max")
    model.save(tmp_path / "m.safetensors")
    gpu = GRU4Rec.load(tmp_path / "m.safetensors", device="cuda:0")
    df = eval_test_df()
    cutoffs = (1, 3, 5, 10)
    res_cpu = evaluate_sessions(model, SessionData.from_frame(df, vocab=model.vocab), cutoffs=cutoffs)
    res_gpu = evaluate_sessions(gpu, SessionData.from_frame(df, vocab=gpu.vocab), cutoffs=cutoffs)
    best, worst, n_pred, _, _ = brute_force_eval(gpu, df, cutoffs)
    assert res_gpu.n_predictions == res_cpu.n_predictions == n_pred
    for key, value in res_gpu.metrics.items():
        assert worst[key] - 1e-12 <= value <= best[key] + 1e-12, (key, value, worst[key], best[key])
        assert value == pytest.approx(res_cpu.metrics[key], abs=0.02)


def test_cuda_live_session_and_score_match_cpu(tmp_path):
    model = fit("cpu", "shared", "cross-entropy")
    model.save(tmp_path / "m.safetensors")
    gpu = GRU4Rec.load(tmp_path / "m.safetensors", device="cuda:0")
    items = list(train_df()["ItemId"][:4])
    s_cpu, s_gpu = model.new_session(), gpu.new_session()
    for item in items:
        s_cpu.add(item), s_gpu.add(item)
    top_cpu, top_gpu = s_cpu.recommend(k=5), s_gpu.recommend(k=5)
    torch.testing.assert_close(torch.tensor(top_gpu["score"].values), torch.tensor(top_cpu["score"].values), rtol=1e-4, atol=1e-5)
    hist = [model.vocab.index_of(items).tolist()]
    torch.testing.assert_close(gpu.score(hist).cpu(), model.score(hist), rtol=1e-4, atol=1e-5)


def test_cli_trains_saves_and_evaluates_on_cuda(tmp_path, capsys):
    from nextitem.cli import main

    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train_df().to_csv(train, sep="\t", index=False)
    heldout_df().to_csv(test, sep="\t", index=False)
    path = tmp_path / "m.safetensors"
    ps = "layers=16,n_epochs=2,batch_size=8,n_sample=10,learning_rate=0.1,loss=cross-entropy,logq=1"
    assert main(["gru4rec", str(train), "-ps", ps, "-t", str(test), "-m", "5", "-s", str(path), "-d", "cuda:0", "-ss", "2000", "-q"]) == 0
    trained = capsys.readouterr().out
    assert main(["gru4rec", str(path), "-l", "-t", str(test), "-m", "5", "-d", "cuda:0", "-q"]) == 0
    loaded = capsys.readouterr().out
    line = [x for x in trained.splitlines() if x.startswith("Recall@5:")]
    assert line and line == [x for x in loaded.splitlines() if x.startswith("Recall@5:")]


def test_cuda_resume_matches_uninterrupted(tmp_path):
    """With dropout on, so the GPU generator's state must travel in the checkpoint. Not bit-exact:
    index_add_ on a GPU sums duplicate rows with atomics, in no fixed order."""
    p = params("shared", "cross-entropy", dropout=0.3, logq=1.0, momentum=0.3)
    full = GRU4Rec(device="cuda:0", **{**p, "n_epochs": 2}).fit(train_df(), sample_store_size=2000)
    ck = tmp_path / "run.ckpt"
    GRU4Rec(device="cuda:0", **{**p, "n_epochs": 1}).fit(train_df(), sample_store_size=2000, checkpoint=ck)
    resumed = GRU4Rec(device="cuda:0", **{**p, "n_epochs": 2}).fit(train_df(), sample_store_size=2000, checkpoint=ck)
    for (name, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)
