"""The compute-vs-occupancy study of ``pcloud bench singles``: inference cost of point vs dense models as the cell
threshold (points per event) and the ECAL granularity change (models untrained: cost does not depend on the
weights)."""
from __future__ import annotations

import numpy as np
import torch

from ...nn.ragged import padded_to_ragged
from ..compute import inference_cost, training_step_cost
from .config import SinglesConfig
from .models import DENSE_MODEL_NAMES, POINT_MODEL_NAMES, build, image_tensors, point_tensors


def occupancy_study(cfg: SinglesConfig, device: torch.device, log=print, granularity: bool = True) -> dict:
    """Inference cost vs points per event (threshold scan, CaloGAN e+) and vs ECAL granularity (CLIC 25 vs 51). In the
    threshold scan every point model is measured on the padded batch (``models``) and on the same events as a ragged
    batch (``ragged``, :mod:`pcloud.nn.ragged`): inference events/s and peak memory, and seconds and peak memory of
    one training step (forward + backward)."""
    from ...geometry import get_geometry
    from ...sim.showers import simulate_showers

    n = 128
    out: dict = {"threshold_scan": [], "granularity": []}
    g = get_geometry("calogan")
    sh = simulate_showers(g, "e+", n, energy_gev=(1.0, 100.0), seed=cfg.seed + 7, spread=True)  # as the e_vs_* tasks
    sh.truth["label"] = np.zeros(n, np.int64)
    train = np.ones(n, bool)
    dense_cost = {}
    for name in DENSE_MODEL_NAMES:
        if name in cfg.models:
            m = build(name, g, 2, False, 0, 3, cfg.small_models).to(device)
            dense_cost[name] = inference_cost(m, image_tensors(sh), device)
    for thr_mev in (0.0, 1.0, 10.0, 100.0):
        pts, info = point_tensors(sh, train, thr_mev / 1000.0, 100000)
        row = {"threshold_mev": thr_mev, "points_per_event_mean": info["points_per_event_mean"],
               "points_per_event_max": info["points_per_event_max"], "models": {}}
        row["ragged"] = {}
        for name in POINT_MODEL_NAMES:
            if name in cfg.models:
                m = build(name, g, 2, False, 0, 3, cfg.small_models).to(device)
                padded = {**pts, "g": torch.zeros(n, 3)}
                ragged = padded_to_ragged(padded)
                row["models"][name] = {**inference_cost(m, padded, device), **training_step_cost(m, padded, device)}
                row["ragged"][name] = {**inference_cost(m, ragged, device), **training_step_cost(m, ragged, device)}
        row["models"].update(dense_cost)
        out["threshold_scan"].append(row)
        log(f"[occupancy] threshold {thr_mev:g} MeV: {info['points_per_event_mean']:.0f} points/event")
    for cells in ((25, 51) if granularity else ()):
        gc = get_geometry("clic", ecal_cells=cells)
        sc = simulate_showers(gc, "e-", 64, energy_gev=(10.0, 100.0), mode="visible", seed=cfg.seed + 11)
        pts, info = point_tensors(sc, np.ones(64, bool), 0.0, 100000)
        row = {"ecal_cells": cells, "n_cells": gc.n_cells, "points_per_event_mean": info["points_per_event_mean"],
               "models": {}}
        for name in cfg.models:
            if name == "upsample_cnn":
                continue  # its common grid is capped (max_cells), so it does not follow the granularity
            m = build(name, gc, 2, False, 0, 2, cfg.small_models).to(device)
            data = {**pts, "g": torch.zeros(64, 2)} if name in POINT_MODEL_NAMES else image_tensors(sc)
            row["models"][name] = inference_cost(m, data, device)
        out["granularity"].append(row)
        log(f"[occupancy] clic ECAL {cells}x{cells}: {info['points_per_event_mean']:.0f} points/event")
    return out
