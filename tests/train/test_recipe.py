"""Training recipe: learning-rate schedules (hand values), AdamW, weighted sampling, schedules across a resume, and
the decision threshold chosen on a validation split (hand-computed cases)."""
import math

import numpy as np
import pytest
import torch

from pcloud.metrics.classification import best_threshold
from pcloud.train.trainer import Trainer, class_balanced_weights, lr_factor
from helpers.tiny_model import Lin, ce, linear_data


def data(n, seed):
    return linear_data(n, seed, with_index=True)


def test_lr_factor_hand_values():
    assert lr_factor("constant", 0.7) == 1.0
    # cosine, 10 % warm-up: linear ramp, peak at the end of the warm-up, half-way down at p = 0.55, 0 at the end
    assert lr_factor("cosine", 0.05, warmup=0.1) == pytest.approx(0.5)
    assert lr_factor("cosine", 0.0, warmup=0.1) == pytest.approx(0.01)
    assert lr_factor("cosine", 0.1, warmup=0.1) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.55, warmup=0.1) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0, warmup=0.1) == pytest.approx(0.0)
    assert lr_factor("cosine", 1.0, warmup=0.1, final_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor("cosine", 0.325, warmup=0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    # one-cycle (torch OneCycleLR, cosine): lr/25 at 0, lr at the warm-up's end, lr/25/1e4 at the end
    assert lr_factor("onecycle", 0.0, warmup=0.3) == pytest.approx(0.04)
    assert lr_factor("onecycle", 0.15, warmup=0.3) == pytest.approx(0.52)
    assert lr_factor("onecycle", 0.3, warmup=0.3) == pytest.approx(1.0)
    assert lr_factor("onecycle", 1.0, warmup=0.3) == pytest.approx(4e-6)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("step", 0.5)
    with pytest.raises(ValueError, match="warmup"):
        lr_factor("cosine", 0.5, warmup=1.0)


def test_onecycle_matches_torch():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    total = 200
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total + 1, pct_start=0.3,
                                                anneal_strategy="cos", cycle_momentum=False)
    for step in range(total):
        ours = lr_factor("onecycle", step / total, warmup=0.3)
        assert opt.param_groups[0]["lr"] == pytest.approx(ours, rel=2e-2, abs=1e-3), step
        opt.step()
        sched.step()


def test_cosine_schedule_is_followed_in_training():
    torch.manual_seed(0)
    tr = Trainer(Lin(), ce, epochs=4, batch_size=16, lr=0.1, patience=100, schedule="cosine", warmup=0.25, log=None)
    seen = []
    step = tr.optimizer.step

    def record():
        seen.append(tr.optimizer.param_groups[0]["lr"])
        step()

    tr.optimizer.step = record
    tr.fit(data(64, 1), data(32, 2))  # 4 steps per epoch, 16 steps
    expect = [0.1 * lr_factor("cosine", s / 16, 0.25) for s in range(16)]
    np.testing.assert_allclose(seen, expect, rtol=1e-12)
    assert [round(h["lr"], 12) for h in tr.result.history] == [round(e, 12) for e in expect[3::4]]
    assert tr.settings["schedule"] == "cosine" and tr.settings["warmup"] == 0.25


def test_defaults_keep_the_old_recipe():
    tr = Trainer(Lin(), ce, epochs=2, batch_size=16, lr=0.01, log=None)
    assert type(tr.optimizer) is torch.optim.Adam
    assert "schedule" not in tr.settings and "optimizer" not in tr.settings  # old checkpoints still resume
    tr.fit(data(64, 1), data(32, 2))
    assert all(h["lr"] == 0.01 for h in tr.result.history)


def test_adamw_decays_weights_decoupled():
    torch.manual_seed(0)
    a = Trainer(Lin(), ce, epochs=1, batch_size=64, lr=0.01, weight_decay=0.5, optimizer="adamw", log=None)
    assert type(a.optimizer) is torch.optim.AdamW
    torch.manual_seed(0)
    b = Trainer(Lin(), ce, epochs=1, batch_size=64, lr=0.01, weight_decay=0.5, optimizer="adam", log=None)
    a.fit(data(64, 1), data(32, 2))
    b.fit(data(64, 1), data(32, 2))
    assert not torch.allclose(a.model.l.weight, b.model.l.weight)
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(Lin(), ce, optimizer="sgd", log=None)


def test_sample_weights_draw_events_by_weight():
    seen = []

    def loss(out, batch):
        seen.append(batch["i"].clone())
        return ce(out, batch)

    w = torch.zeros(64)
    w[:8] = 1.0  # only events 0-7 may be drawn
    Trainer(Lin(), loss, epochs=3, batch_size=16, lr=0.01, sample_weights=w, log=None).fit(data(64, 1), data(16, 2))
    drawn = torch.cat(seen[:4])  # the training batches of epoch 0 (4 x 16 draws with replacement)
    assert drawn.numel() == 64 and drawn.max() < 8
    lab = torch.tensor([0, 0, 0, 1])
    torch.testing.assert_close(class_balanced_weights(lab), torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0],
                                                                         dtype=torch.float64))
    with pytest.raises(ValueError, match="sample_weights"):
        Trainer(Lin(), ce, sample_weights=torch.zeros(4), log=None)


def test_resume_after_a_kill_follows_the_same_schedule(tmp_path):
    kw = dict(epochs=4, batch_size=16, lr=0.05, patience=100, schedule="onecycle", warmup=0.3, optimizer="adamw",
              weight_decay=0.01, log=None)
    torch.manual_seed(0)
    ref = Trainer(Lin(), ce, run_dir=tmp_path / "a", **kw)
    ref.fit(data(64, 1), data(32, 2))
    torch.manual_seed(0)
    killed = Trainer(Lin(), ce, run_dir=tmp_path / "b", **kw)
    save = killed.save

    def save_then_die(name, epoch):
        path = save(name, epoch)
        if name == "last.pt" and epoch == 1:
            raise KeyboardInterrupt
        return path

    killed.save = save_then_die
    with pytest.raises(KeyboardInterrupt):
        killed.fit(data(64, 1), data(32, 2))
    torch.manual_seed(7)
    res = Trainer(Lin(), ce, run_dir=tmp_path / "b", **kw).fit(data(64, 1), data(32, 2), resume=True)
    assert [h["lr"] for h in res.history] == [h["lr"] for h in ref.result.history]
    np.testing.assert_array_equal([h["val_loss"] for h in res.history], [h["val_loss"] for h in ref.result.history])
    # another schedule is another run: refused
    from pcloud.train.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="schedule"):
        Trainer(Lin(), ce, run_dir=tmp_path / "b", **{**kw, "schedule": "cosine"}).fit(data(64, 1), data(32, 2),
                                                                                     resume=True)


def test_best_threshold_hand_cases():
    # F1: cutting between 0.1 and 0.35 predicts {0.8, 0.4, 0.35}: TP 2, FP 1 -> F1 = 4 / 5
    t, f1 = best_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert t == pytest.approx(0.225) and f1 == pytest.approx(0.8)
    # accuracy ties (3/4 at two cuts) go to the higher threshold
    t, acc = best_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], metric="accuracy")
    assert t == pytest.approx(0.6) and acc == pytest.approx(0.75)
    # weights: the weight-3 negative at 0.4 makes cutting above it best
    t, f1 = best_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], sample_weight=[1, 3, 1, 1])
    assert t == pytest.approx(0.6) and f1 == pytest.approx(2 / 3)
    # all positives: everything predicted positive, below the lowest score
    t, f1 = best_threshold([1, 1], [0.1, 0.4])
    assert t < 0.1 and f1 == 1.0
    # equal scores are never split
    t, _ = best_threshold([1, 0, 1], [0.5, 0.5, 0.9])
    assert t in (0.7, pytest.approx(0.7), -0.5) and (np.array([0.5, 0.5, 0.9]) > t).sum() in (1, 3)
    with pytest.raises(ValueError, match="metric"):
        best_threshold([0, 1], [0.1, 0.2], metric="auc")
