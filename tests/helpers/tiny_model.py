"""A linear classifier on 3 features and its data, for the trainer tests (a model that learns in a few steps)."""
import torch


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(3, 2)

    def forward(self, batch):
        return {"logits": self.l(batch["x"])}


def ce(out, batch):
    loss = torch.nn.functional.cross_entropy(out["logits"], batch["y"])
    return loss, {"ce": float(loss.detach())}


def linear_data(n, seed, with_index=False):
    """``n`` events of 3 standard-normal features, class 1 where x0 + 0.5 x1 > 0 (``i``: event index)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    out = {"x": x, "y": (x[:, 0] + 0.5 * x[:, 1] > 0).long()}
    if with_index:
        out["i"] = torch.arange(n)
    return out
