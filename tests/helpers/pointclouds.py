"""Padded test batches for the point models, with garbage in the padding (it must never be read)."""
import torch


def make_batch(B=5, N=16, F=4, G=2, seed=0, p_real=0.7, empty_event=False, pos_offset=(1500.0, 0.0, 0.0)):
    """Random padded batch; ``pos`` around ``pos_offset`` mm (a calorimeter-like radius), padding NaN."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, N, generator=g) < p_real
    mask[:, 0] = True
    if empty_event:
        mask[-1] = False
    x = torch.randn(B, N, F, generator=g)
    pos = torch.randn(B, N, 3, generator=g) * 50.0 + torch.tensor(pos_offset)
    x[~mask] = float("nan")
    pos[~mask] = float("nan")
    ge = torch.rand(B, G, generator=g) * 80.0
    return {"x": x, "pos": pos, "mask": mask, "g": ge}


def permute_points(batch, perm):
    return {k: (v[:, perm] if k in ("x", "pos", "mask") else v) for k, v in batch.items()}


def pad_more(batch, extra, seed=1):
    """Append ``extra`` padded points full of garbage and interleave them by a permutation; returns the batch and
    the permutation (``argsort(perm)[:N]`` is where the original points went)."""
    g = torch.Generator().manual_seed(seed)
    B, N = batch["mask"].shape
    out = {"g": batch["g"]}
    for k in ("x", "pos"):
        C = batch[k].shape[-1]
        out[k] = torch.cat([batch[k], 1e4 * torch.randn(B, extra, C, generator=g)], 1)
    out["mask"] = torch.cat([batch["mask"], torch.zeros(B, extra, dtype=torch.bool)], 1)
    perm = torch.randperm(N + extra, generator=g)
    return permute_points(out, perm), perm


def overfit(model, batch, targets, loss_fn, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """Adam on one batch for ``steps`` steps; returns the loss before the first step and after the last one."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = loss_fn(model(batch), targets)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    return first, float(loss_fn(model(batch), targets)[0].detach())


def single_event(batch, e: int) -> dict:
    """Event ``e`` of a padded batch alone, without padding (a batch of one)."""
    m = batch["mask"][e]
    return {"x": batch["x"][e, m][None], "pos": batch["pos"][e, m][None], "g": batch["g"][e:e + 1],
            "mask": torch.ones(1, int(m.sum()), dtype=torch.bool)}


def assert_permuted(got: dict, ref: dict, perm, keys=("logits", "regression", "energy", "global")) -> None:
    """Event-level outputs unchanged and per-point segmentation logits permuted as the points (``perm``)."""
    for key in keys:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["seg_logits"], ref["seg_logits"][:, perm], rtol=1e-4, atol=1e-5)
