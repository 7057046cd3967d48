"""The shared trainer: repeatable, early stopping, exact resume after a kill, DDP == one process."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from nextitem.config import ConfigError
from nextitem.data.histories import HistoryData, LeaveOneOut
from nextitem.models.sasrec import SASRec
from nextitem.training.sequential import TrainConfig, train

from .sequential_contract import history_frame, toy_histories

MODEL = {"hidden": 16, "max_len": 10, "loss": "ce", "dropout": 0.0, "attn_dropout": 0.0}


def toy_data(n_users=40):
    frame = history_frame(toy_histories(n_users=n_users, n_items=25, seed=4, min_len=4))
    return LeaveOneOut.from_histories(HistoryData.from_frame(frame))


def weights(model):
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def run(epochs=4, checkpoint=None, **cfg):
    model = SASRec(**MODEL)
    train(model, toy_data(), TrainConfig(**{"epochs": epochs, "batch_size": 8, "lr": 5e-3, "patience": 0, **cfg}),
          checkpoint=checkpoint, log=lambda *a: None, progress=False)
    return model


def test_same_seed_same_model_and_learning_happens():
    a, b = run(), run()
    for k, v in weights(a).items():
        assert torch.equal(v, weights(b)[k]), k
    losses = [r["loss"] for r in a.history]
    assert losses[-1] < losses[0]
    peaks = [r["peak_rss_gb"] for r in a.history]  # kept per epoch, so a killed long run still has it
    assert 0.05 < peaks[0] <= peaks[-1] < 100


def test_killed_and_resumed_run_ends_where_an_uninterrupted_run_ends(tmp_path):
    full = run(epochs=4)
    ckpt = tmp_path / "ckpt.pt"
    run(epochs=2, checkpoint=ckpt)  # "killed" after epoch 2: the checkpoint is all that is left
    resumed = run(epochs=4, checkpoint=ckpt)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    for k, v in weights(full).items():
        torch.testing.assert_close(weights(resumed)[k], v, rtol=0, atol=0)
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history], rel=0, abs=0)


def test_low_memory_changes_memory_use_not_results(tmp_path):
    """low_memory only moves where freed memory goes; the run, and a resume across it, are the same."""
    full = run(epochs=3)
    assert [r["loss"] for r in run(epochs=3, low_memory=True).history] == [r["loss"] for r in full.history]
    ckpt = tmp_path / "ckpt.pt"
    run(epochs=1, checkpoint=ckpt)
    resumed = run(epochs=3, checkpoint=ckpt, low_memory=True, eval_batch_size=7)
    for k, v in weights(full).items():
        torch.testing.assert_close(weights(resumed)[k], v, rtol=0, atol=0)
    run(epochs=1)  # back to the default for the rest of the process


def test_resume_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    run(epochs=1, checkpoint=ckpt)
    with pytest.raises(ConfigError, match="other settings"):
        run(epochs=2, checkpoint=ckpt, lr=1e-2)


def test_early_stopping_keeps_the_best_epoch():
    model = SASRec(**MODEL)
    # a learning rate this high makes validation worse after the first epochs
    train(model, toy_data(), TrainConfig(epochs=30, batch_size=8, lr=0.3, patience=2),
          log=lambda *a: None, progress=False)
    evals = [r["valid"]["ndcg@10"] for r in model.history]
    assert len(model.history) < 30
    best = int(np.argmax(evals))
    assert model.best_epoch == best + 1 and len(evals) == best + 1 + 2
    data = toy_data()
    again = model.evaluate(data, "valid", cutoffs=(5, 10, 20))
    assert again.metrics["ndcg@10"] == pytest.approx(evals[best])


def test_bad_training_parameters():
    with pytest.raises(ConfigError, match="metric="):
        TrainConfig(metric="auc@10")
    with pytest.raises(ConfigError, match="lr=0"):
        TrainConfig(lr=0)


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    model = run(epochs=2)
    if rank == 0:
        torch.save(weights(model), out)
    torch.distributed.destroy_process_group()


def test_ddp_with_two_cpu_processes_matches_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.start_processes(_ddp_worker, args=(2, port, str(out)), nprocs=2, join=True, start_method="spawn")
    ddp = torch.load(out, weights_only=True)
    single = weights(run(epochs=2))
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-5)


def test_windows_cover_every_target_once():
    from nextitem.training.sequential import training_sequences

    h = np.arange(23)
    parts = training_sequences([h, np.arange(1), np.arange(5)], max_len=6, windows=True)
    targets = [t for p in parts for t in p[1:]]  # each window predicts its items after the first
    assert sorted(targets) == sorted(list(range(1, 23)) + list(range(1, 5)))
    assert all(len(p) <= 7 for p in parts)
    assert [len(p) for p in training_sequences([h, np.arange(1)], 6, windows=False)] == [23]
