import numpy as np
import pytest
import torch

from pcloud.train.config import apply_override, load_config
from pcloud.train.trainer import Trainer
from helpers.tiny_model import Lin, ce, linear_data


def data(n, seed):
    return linear_data(n, seed)


def test_learns_and_keeps_best(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(Lin(), ce, run_dir=tmp_path, epochs=15, batch_size=32, lr=0.05, log=None)
    res = tr.fit(data(512, 1), data(256, 2))
    assert res.history[-1]["val_loss"] < 0.5 * res.history[0]["val_loss"] or res.best_val_loss < 0.3
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()
    pred = tr.predict(data(256, 2))["logits"].argmax(1)
    acc = (pred == data(256, 2)["y"].numpy()).mean()
    assert acc > 0.9


def test_resume_equals_uninterrupted(tmp_path):
    torch.manual_seed(0)
    a = Trainer(Lin(), ce, run_dir=tmp_path / "a", epochs=4, batch_size=16, lr=0.01, patience=100, log=None)
    a.fit(data(128, 1), data(64, 2))
    torch.manual_seed(0)
    b = Trainer(Lin(), ce, run_dir=tmp_path / "b", epochs=2, batch_size=16, lr=0.01, patience=100, log=None)
    b.fit(data(128, 1), data(64, 2))
    torch.manual_seed(123)  # a different initialisation must be overwritten by the checkpoint
    c = Trainer(Lin(), ce, run_dir=tmp_path / "b", epochs=4, batch_size=16, lr=0.01, patience=100, log=None)
    c.fit(data(128, 1), data(64, 2), resume=True)
    assert [h["epoch"] for h in c.result.history] == [0, 1, 2, 3]
    np.testing.assert_allclose([h["val_loss"] for h in c.result.history],
                               [h["val_loss"] for h in a.result.history], rtol=1e-6)


def test_early_stopping_with_frozen_model():
    tr = Trainer(Lin(), ce, epochs=50, batch_size=32, lr=0.0, patience=3, log=None)
    res = tr.fit(data(64, 1), data(64, 2))
    assert res.stopped_early and res.epochs_run == 4  # epoch 0 sets the best, 3 more without improvement


def test_nonfinite_loss_is_reported():
    d = data(32, 1)
    d["x"][0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="training loss"):
        Trainer(Lin(), ce, epochs=1, batch_size=64, log=None).fit(d, data(8, 2))


def test_config_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 0.01\nmodel:\n  name: pointnet\n")
    cfg = load_config(p, ["train.lr=3e-4", "model.k=16", "train.amp=false"])
    assert cfg["train"]["lr"] == pytest.approx(3e-4) and cfg["model"]["k"] == 16 and cfg["train"]["amp"] is False
    assert cfg["train"]["batch_size"] == 128  # default kept
    with pytest.raises(ValueError, match="KEY=VALUE"):
        apply_override(cfg, "train.lr")
    with pytest.raises(ValueError, match="model.name"):
        apply_override(cfg, "model.name.x=1")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_single_event_remainder_batch_is_skipped_for_batchnorm():
    class BN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))

        def forward(self, batch):
            return {"logits": self.l(batch["x"])}

    tr = Trainer(BN(), ce, epochs=2, batch_size=16, log=None)
    res = tr.fit(data(33, 1), data(16, 2))  # 33 = 2 x 16 + 1
    assert res.epochs_run == 2


class _Killed(Exception):
    pass


def _run_until_killed(run_dir, kill_after: int, **kw):
    """Train, but 'kill' the process right after the checkpoint of epoch ``kill_after`` was written."""
    torch.manual_seed(0)
    t = Trainer(Lin(), ce, run_dir=run_dir, log=None, **kw)
    save = t.save

    def save_then_die(name, epoch):
        path = save(name, epoch)
        if name == "last.pt" and epoch == kill_after:
            raise _Killed
        return path

    t.save = save_then_die
    with pytest.raises(_Killed):
        t.fit(data(96, 1), data(48, 2))


@pytest.mark.parametrize("kill_after", [0, 1, 2, 3])
def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path, kill_after):
    # lr 0.3 on this problem: the validation loss stops improving after a few epochs, so early stopping (patience 2)
    # ends the run before the 40 epochs; the patience counter must survive the kill
    kw = dict(epochs=40, batch_size=16, lr=0.3, patience=2)
    torch.manual_seed(0)
    ref = Trainer(Lin(), ce, run_dir=tmp_path / "ref", log=None, **kw)
    ref_res = ref.fit(data(96, 1), data(48, 2))
    assert ref_res.stopped_early and 5 <= ref_res.epochs_run < 40  # every kill point lies inside the run
    _run_until_killed(tmp_path / "k", kill_after, **kw)
    torch.manual_seed(99)  # another initialisation: the checkpoint must replace it
    res = Trainer(Lin(), ce, run_dir=tmp_path / "k", log=None, **kw).fit(data(96, 1), data(48, 2), resume=True)
    assert res.epochs_run == ref_res.epochs_run and res.best_epoch == ref_res.best_epoch and res.stopped_early
    np.testing.assert_array_equal([h["val_loss"] for h in res.history], [h["val_loss"] for h in ref_res.history])
    # resuming a finished run trains nothing more and still reports what was trained
    again = Trainer(Lin(), ce, run_dir=tmp_path / "k", log=None, **kw).fit(data(96, 1), data(48, 2), resume=True)
    assert again.epochs_run == ref_res.epochs_run and again.seconds > 0 and len(again.history) == len(ref_res.history)


def test_resume_with_other_settings_is_refused(tmp_path):
    from pcloud.train.checkpoint import CheckpointError

    Trainer(Lin(), ce, run_dir=tmp_path, epochs=1, batch_size=16, lr=0.01, seed=1, log=None,
            settings={"n_per_class": 700}).fit(data(32, 1), data(16, 2))
    with pytest.raises(CheckpointError, match=r"resume refused.*seed: 1 -> 2"):
        Trainer(Lin(), ce, run_dir=tmp_path, epochs=2, batch_size=16, lr=0.01, seed=2, log=None,
                settings={"n_per_class": 700}).fit(data(32, 1), data(16, 2), resume=True)
    with pytest.raises(CheckpointError, match=r"n_per_class: 700 -> 20000"):
        Trainer(Lin(), ce, run_dir=tmp_path, epochs=2, batch_size=16, lr=0.01, seed=1, log=None,
                settings={"n_per_class": 20000}).fit(data(32, 1), data(16, 2), resume=True)
    # more epochs is not another run: allowed
    res = Trainer(Lin(), ce, run_dir=tmp_path, epochs=2, batch_size=16, lr=0.01, seed=1, log=None,
                  settings={"n_per_class": 700}).fit(data(32, 1), data(16, 2), resume=True)
    assert res.epochs_run == 2


class _Payload:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned_by_checkpoint",))


def test_crafted_checkpoint_is_refused_and_never_runs(tmp_path, monkeypatch):
    from pcloud.train.checkpoint import CheckpointError

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs"
    run.mkdir()
    torch.save({"model": _Payload()}, run / "last.pt")  # a real torch checkpoint whose pickle runs a command
    with pytest.raises(CheckpointError, match="refused to load|not a readable torch checkpoint"):
        Trainer(Lin(), ce, run_dir=run, epochs=1, log=None).fit(data(32, 1), data(16, 2), resume=True)
    assert not (tmp_path / "pwned_by_checkpoint").exists()
    (run / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="last.pt"):
        Trainer(Lin(), ce, run_dir=run, epochs=1, log=None).fit(data(32, 1), data(16, 2), resume=True)
