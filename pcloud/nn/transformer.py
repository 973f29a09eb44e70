"""A point transformer for calorimeter point clouds: masked multi-head self-attention over the points of an event,
with pairwise physics features entering the attention as a bias, in the spirit of the Particle Transformer (Qu, Li,
Qian, "Particle Transformer for Jet Tagging", ICML 2022, arXiv:2202.03772).

Particle Transformer (ParT) adds to the attention logits of every head an "interaction" matrix ``U`` computed from
pairwise features of the two particles (there: ln Delta, ln k_T, ln z, ln m^2), embedded by a pointwise MLP into
one channel per head and shared by all particle-attention blocks (paper Sec. 3, Fig. 2-3)::

    P-MHA(Q, K, V) = softmax(Q K^T / sqrt(d_k) + U) V

Here the pairs are calorimeter points and the pairwise features are (``pair_features``, any subset):

* ``"dr"``: ``ln(Delta R + 1e-3)`` between the directions of the points seen from the origin (eta, phi of ``pos``;
  meaningful for geometries in the global frame such as ``atlas``),
* ``"dist"``: ``ln(1 + |pos_i - pos_j| / dist_scale_mm)`` (3D distance),
* ``"dxy"``: ``ln(1 + |(x, y)_i - (x, y)_j| / dist_scale_mm)`` (transverse distance, for local frames),
* ``"dlayer"``: ``x_i[layer_col] - x_j[layer_col]`` (signed layer difference, in the units of the normalised
  feature),
* ``"dlogE"``: ``x_i[energy_col] - x_j[energy_col]``: with ``log_energy`` in that column this is the energy ratio
  ``ln(E_i / E_j)`` divided by the normaliser's scale.

The pair features need no gradient; a pointwise MLP ``pair_features -> pair_hidden -> n_heads`` turns them into
``U`` (``(B, n_heads, N, N)``, computed once per forward pass). Padding keys get a bias of ``-1e9`` (weight exactly
0 after the softmax), so padding never changes the real points' outputs.

Blocks are pre-LayerNorm (``h += MHA(LN(h)); h += FFN(LN(h))``, ParT's particle-attention block without its extra
normalisations). Per-point embedding: a shared MLP with layer norm. The trunk has no batch statistics (layer norm
only), so every event is processed independently of the others; the event-level output pools the final point
features (``pooling``, masked), then :class:`~pcloud.nn.heads.GlobalHead`; segmentation uses
:class:`~pcloud.nn.heads.SegHead` on the final point features and the pooled vector.

Neighbour-restricted attention (``attn_k``): each point attends only to itself and its ``attn_k`` nearest points in
``pos`` (cost ``N k`` instead of ``N^2`` per event; for CPU training), with the same pairwise bias on those pairs.

Ragged path (:mod:`pcloud.nn.ragged`): the per-point embedding runs on ``(P, F)`` rows; the attention blocks run on
groups of events of similar size (:func:`pcloud.nn.ragged.size_groups`), each padded only to its largest event.
Attention needs a dense ``N x N`` block per event, so this is the least padding an exact attention can have.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import GlobalHead, PointCloudModel, SegHead
from .layers import MaskedMLP, masked_pool, pooled_dim, reset_children
from .ragged import group_index, segment_pool, size_groups

__all__ = ["PointTransformer", "PAIR_FEATURES", "pair_features"]

PAIR_FEATURES = ("dr", "dist", "dxy", "dlayer", "dlogE")
#: additive attention bias of padding keys (exp underflows to exactly 0 in float32 and bfloat16)
_MASKED = -1e9


def _eta_phi(pos: Tensor) -> tuple[Tensor, Tensor]:
    rho = torch.sqrt(pos[..., 0] ** 2 + pos[..., 1] ** 2).clamp_min(1e-6)
    return torch.asinh(pos[..., 2] / rho), torch.atan2(pos[..., 1], pos[..., 0])


@torch.no_grad()
def pair_features(x: Tensor, pos: Tensor | None, names: Sequence[str], layer_col: int | None = None,
                  energy_col: int | None = None, dist_scale_mm: float = 100.0, nbr: Tensor | None = None) -> Tensor:
    """Pairwise features ``(B, N, N, len(names))`` (float32) of padded ``x (B, N, F)`` / ``pos (B, N, 3)`` (module
    docstring; values at padding are irrelevant: padding keys are masked). With ``nbr (B, N, K)`` (neighbour slots of
    every point) only those pairs: ``(B, N, K, len(names))``."""
    if nbr is None:
        def pair(v):  # (B, N, C) -> (query (B, N, 1, C), key (B, 1, N, C))
            return v.unsqueeze(2), v.unsqueeze(1)
    else:
        b_idx = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)

        def pair(v):  # (B, N, C) -> (query (B, N, 1, C), key (B, N, K, C))
            return v.unsqueeze(2), v[b_idx, nbr]
    feats = []
    for name in names:
        if name == "dr":
            eta, phi = _eta_phi(pos.float())
            (ei, ej), (fi, fj) = pair(eta.unsqueeze(-1)), pair(phi.unsqueeze(-1))
            de = (ei - ej)[..., 0]
            dp = torch.remainder((fi - fj)[..., 0] + torch.pi, 2 * torch.pi) - torch.pi
            feats.append(torch.log(torch.sqrt(de * de + dp * dp) + 1e-3))
        elif name in ("dist", "dxy"):
            pi, pj = pair(pos.float() if name == "dist" else pos.float()[..., :2])
            feats.append(torch.log1p(torch.sqrt(((pi - pj) ** 2).sum(-1)) / dist_scale_mm))
        elif name in ("dlayer", "dlogE"):
            ci, cj = pair(x[..., layer_col if name == "dlayer" else energy_col].float().unsqueeze(-1))
            feats.append((ci - cj)[..., 0])
        else:
            raise ValueError(f"unknown pair feature {name!r}; known: {PAIR_FEATURES}")
    return torch.stack(feats, dim=-1)


class AttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block with an additive attention bias ``(B, H, N, N)``."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"PointTransformer: dim ({dim}) must be a multiple of n_heads ({n_heads})")
        self.n_heads, self.dropout = n_heads, float(dropout)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))

    def forward(self, h: Tensor, bias: Tensor, nbr: Tensor | None = None) -> Tensor:
        """``bias (B, H, N, N)``, or with ``nbr (B, N, K)`` neighbour slots ``bias (B, H, N, K)``: each point attends to
        those ``K`` points only."""
        B, N, D = h.shape
        H, dh = self.n_heads, D // self.n_heads
        if nbr is None:
            q, k, v = self.qkv(self.ln1(h)).view(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                               dropout_p=self.dropout if self.training else 0.0)
            a = a.transpose(1, 2).reshape(B, N, D)
        else:
            q, k, v = self.qkv(self.ln1(h)).view(B, N, 3, H, dh).unbind(2)  # (B, N, H, dh) each
            b_idx = torch.arange(B, device=h.device).view(-1, 1, 1)
            kn, vn = k[b_idx, nbr], v[b_idx, nbr]  # (B, N, K, H, dh)
            w = torch.einsum("bnhd,bnkhd->bhnk", q, kn) / dh ** 0.5 + bias.to(q.dtype)
            w = F.dropout(torch.softmax(w, -1), self.dropout, self.training)
            a = torch.einsum("bhnk,bnkhd->bnhd", w, vn).reshape(B, N, D)
        h = h + F.dropout(self.proj(a), self.dropout, self.training)
        return h + F.dropout(self.ffn(self.ln2(h)), self.dropout, self.training)


class PointTransformer(PointCloudModel):
    """Point transformer with pairwise attention bias and classification / regression / energy-skip /
    segmentation heads (module docstring).

    Parameters (those shared with :class:`~pcloud.nn.pointnet.PointNet` have the same meaning)
    ----------
    dim, n_heads, n_layers : width, attention heads and number of attention blocks.
    ffn_mult : hidden width of the feed-forward layers = ``ffn_mult * dim``.
    pair_features : names of :data:`PAIR_FEATURES` for the attention bias (empty: plain self-attention).
    layer_col, energy_col : columns of ``batch["x"]`` holding the layer index and ``log_energy`` (needed by
        ``"dlayer"`` / ``"dlogE"``).
    pair_hidden : hidden width of the pairwise MLP.
    dist_scale_mm : length scale of ``"dist"`` / ``"dxy"``.
    use_pos : concatenate ``batch["pos"] / pos_scale_mm`` to the input features.
    attn_dropout : dropout inside the blocks (attention weights, residual branches).
    group_elements : group budget of the ragged path (:func:`pcloud.nn.ragged.size_groups`).
    attn_k : None (default) for attention over the whole cloud; an integer restricts every point's attention to
        itself and its ``attn_k`` nearest points in ``pos`` (pair features and bias on those pairs only), which
        makes the cost linear in the number of points (the local attention of Zhao et al., "Point Transformer",
        arXiv:2012.09164, with ParT's pairwise bias); for CPU-bounded training.
    """

    def __init__(self, in_channels: int, n_classes: int = 0, n_targets: int = 0, n_seg_classes: int = 0,
                 n_global: int = 0, energy_columns: Sequence[int] = (), g_scale: Sequence[float] | float | None = None,
                 energy_scale_gev: float = 100.0, use_pos: bool = False, pos_scale_mm: float = 1.0, dim: int = 64,
                 n_heads: int = 4, n_layers: int = 3, ffn_mult: int = 2,
                 pair_features: Sequence[str] = ("dr", "dist", "dlayer", "dlogE"), layer_col: int | None = None,
                 energy_col: int | None = None, pair_hidden: int = 16, dist_scale_mm: float = 100.0,
                 pooling: str = "max+mean", head_hidden: Sequence[int] = (256, 128),
                 seg_hidden: Sequence[int] = (256, 128), seg_soft: bool = False, norm: str | None = "batch",
                 act: str = "gelu", dropout: float = 0.0, attn_dropout: float = 0.0,
                 group_elements: int = 1 << 22, attn_k: int | None = None):
        super().__init__()
        pair_features = tuple(pair_features)
        bad = [p for p in pair_features if p not in PAIR_FEATURES]
        if bad:
            raise ValueError(f"PointTransformer: unknown pair features {bad}; known: {PAIR_FEATURES}")
        needs_pos = any(p in ("dr", "dist", "dxy") for p in pair_features)
        for name, col in (("dlayer", layer_col), ("dlogE", energy_col)):
            if name in pair_features and (col is None or not 0 <= int(col) < in_channels):
                raise ValueError(f"PointTransformer: pair feature {name!r} needs its column of x "
                                 f"({'layer_col' if name == 'dlayer' else 'energy_col'} in [0, {in_channels})), "
                                 f"found {col!r}")
        if n_layers < 1:
            raise ValueError(f"PointTransformer: n_layers must be >= 1, found {n_layers}")
        if pos_scale_mm <= 0 or dist_scale_mm <= 0:
            raise ValueError("PointTransformer: pos_scale_mm and dist_scale_mm must be > 0")
        self.in_channels, self.n_global = int(in_channels), int(n_global)
        self.use_pos = bool(use_pos)
        self.uses_pos = self.use_pos or needs_pos
        self.pos_scale_mm, self.pooling, self.n_heads = float(pos_scale_mm), pooling, int(n_heads)
        self.pair_names, self.layer_col, self.energy_col = pair_features, layer_col, energy_col
        self.dist_scale_mm, self.group_elements = float(dist_scale_mm), int(group_elements)
        if attn_k is not None and (not isinstance(attn_k, int) or attn_k < 1):
            raise ValueError(f"PointTransformer: attn_k must be None or a positive int, found {attn_k!r}")
        if attn_k is not None:
            self.uses_pos = True  # the neighbours are found in pos
        self.attn_k = attn_k
        d_in = self.in_channels + (3 if use_pos else 0)
        self.embed = MaskedMLP([d_in, dim, dim], "layer", act)
        self.pair_mlp = (nn.Sequential(nn.Linear(len(pair_features), pair_hidden), nn.GELU(),
                                       nn.Linear(pair_hidden, n_heads)) if pair_features else None)
        self.blocks = nn.ModuleList(AttentionBlock(dim, n_heads, ffn_mult * dim, attn_dropout)
                                    for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(dim)
        d_pool = pooled_dim(dim, pooling)
        self.head = GlobalHead(d_pool, n_classes, n_targets, n_global, g_scale, energy_columns, energy_scale_gev,
                               head_hidden, norm, act, dropout)
        self.seg = (SegHead(dim, d_pool, n_seg_classes, seg_hidden, norm, act, dropout, seg_soft)
                    if n_seg_classes > 0 else None)

    def reset_parameters(self) -> None:
        reset_children(self)

    def _bias(self, x: Tensor, pos: Tensor | None, mask: Tensor, nbr: Tensor | None = None,
              key_ok: Tensor | None = None) -> Tensor:
        """Attention bias ``(B, H, N, N)`` (or ``(B, H, N, K)`` over the neighbour slots ``nbr``): the pairwise
        interaction ``U`` plus ``-1e9`` at padding keys (or at the invalid neighbour slots, ``key_ok`` False)."""
        B, N = mask.shape
        if nbr is None:
            key_pad = torch.zeros(B, 1, 1, N, dtype=torch.float32, device=mask.device).masked_fill(
                ~mask.view(B, 1, 1, N), _MASKED)
            shape = (B, self.n_heads, N, N)
        else:
            key_pad = torch.zeros(nbr.shape, dtype=torch.float32, device=mask.device).masked_fill(
                ~key_ok, _MASKED).unsqueeze(1)
            shape = (B, self.n_heads) + tuple(nbr.shape[1:])
        if self.pair_mlp is None:
            return key_pad.expand(shape)
        u = pair_features(x, pos, self.pair_names, self.layer_col, self.energy_col, self.dist_scale_mm, nbr)
        u = self.pair_mlp(u.to(x.dtype)).permute(0, 3, 1, 2)  # (B, H, N, N or K)
        return u.float() + key_pad

    def _neighbours(self, pos: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``attn_k`` nearest points in ``pos`` plus the point itself: slots ``(B, N, K + 1)`` and their validity."""
        from .knn import knn

        idx, valid = knn(pos, self.attn_k, mask, return_valid=True)
        own = torch.arange(mask.shape[1], device=mask.device).view(1, -1, 1).expand(mask.shape[0], -1, 1)
        return torch.cat([own, idx], -1), torch.cat([mask.unsqueeze(-1), valid], -1)

    def _attend(self, h: Tensor, x: Tensor, pos: Tensor | None, mask: Tensor) -> Tensor:
        """The attention blocks on padded ``h (B, N, dim)``; zeros at padding."""
        nbr = ok = None
        if self.attn_k is not None:
            nbr, ok = self._neighbours(pos, mask)
        bias = self._bias(x, pos, mask, nbr, ok)
        for blk in self.blocks:
            h = blk(h, bias, nbr)
        return self.ln_out(h) * mask.unsqueeze(-1).to(h.dtype)

    def _inputs(self, x: Tensor, pos: Tensor | None) -> Tensor:
        return torch.cat([x, (pos / self.pos_scale_mm).to(x.dtype)], dim=-1) if self.use_pos else x

    def forward(self, batch) -> dict[str, Tensor]:
        if self.is_ragged(batch):
            return self._forward_ragged(batch)
        x, pos, mask, g = self.unpack(batch)
        h = self._attend(self.embed(self._inputs(x, pos), mask), x, pos, mask)
        pooled = masked_pool(h, mask, self.pooling)
        out: dict[str, Tensor] = {"global": pooled}
        out.update(self.head(pooled, g))
        if self.seg is not None:
            out.update(self.seg(h, pooled, mask))
        return out

    def _forward_ragged(self, batch) -> dict[str, Tensor]:
        """Ragged path: embedding on ``(P, F)`` rows, attention per group of events of similar size."""
        x, pos, lay, g = self.unpack_ragged(batch)
        e = self.embed(self._inputs(x, pos), None)
        h = torch.zeros_like(e)
        for ev in size_groups(lay.counts, self.group_elements):
            idx, m = group_index(lay, ev)
            hg = self._attend(e[idx], x[idx], None if pos is None else pos[idx], m)
            h = h.index_put((idx[m],), hg[m])
        pooled = segment_pool(h, lay.batch, lay.n_events, self.pooling)
        out: dict[str, Tensor] = {"global": pooled}
        out.update(self.head(pooled, g))
        if self.seg is not None:
            out.update(self.seg.forward_ragged(h, pooled, lay.batch))
        return out
