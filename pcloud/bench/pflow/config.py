"""Configuration of ``pcloud bench pflow``: modes, defaults and :class:`PflowConfig` (see :mod:`pcloud.bench.pflow`)."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

from ...data.point_features import JETPOINTNET_FEATURES

CONSERVATION_TOL_GEV = 1e-6
LEARNED_MODELS = ("pointnet", "dgcnn", "transformer", "gravnet", "cellgraph")
#: the models the medium mode compares by default (``--models`` adds the cell-graph model)
MEDIUM_MODELS = ("pointnet", "dgcnn", "transformer", "gravnet")
BASELINES = ("rule_based", "dr_nearest", "random", "trivial")
#: (target, loss) variants of the PointNet ablation (full mode or ``--ablation``); the default model is the recipe's
#: ("soft", "ce"; legacy recipe: "soft", "energy_weighted").
ABLATION_VARIANTS = (("binary", "ce"), ("hard", "focal"))
#: the training recipe of the per-track models (issue 11): clouds of the topo-clustered cells with E > 0 (the cells
#: the metrics evaluate), per-cell cross-entropy (every cell counts, as in cell F1), AdamW with warm-up + cosine decay
#: timed to the model's budget, decision threshold chosen on the validation events (F1 + energy-weighted accuracy);
#: ``PflowConfig`` fields left at None take these
RECIPE = dict(cells="topo", loss="ce", energy_share=0.5, threshold="val", optimizer="adamw", schedule="cosine",
              warmup=0.05, weight_decay=1e-4, schedule_time=True, ragged=False)
#: the recipe before issue 11 (every cell of the cone, energy-weighted loss, Adam at a constant rate, threshold 0.5,
#: the JetPointNet point features without the cell neighbourhoods)
LEGACY_RECIPE = dict(cells="all", loss="energy_weighted", energy_share=0.5, threshold=None, optimizer="adam",
                     schedule="constant", warmup=0.05, weight_decay=0.0, schedule_time=False, ragged=False,
                     features=list(JETPOINTNET_FEATURES))
#: per-mode defaults (``PflowConfig`` fields left at None take these)
PFLOW_MODES = {
    "quick": dict(models=["pointnet", "dgcnn"], n_events=600, epochs=2, max_points=128, batch_size=64, max_minutes=1.0,
                  ablation=False, seeds=1,
                  model_minutes={"pointnet": 1.0, "dgcnn": 1.0, "transformer": 1.0, "gravnet": 1.0,
                                 "cellgraph": 1.0, "event_pointnet": 0.5},
                  model_cfgs={}, widths="light", ragged=None, patience=3),
    "medium": dict(models=list(MEDIUM_MODELS), n_events=3000, epochs=8, max_points=0, batch_size=128,
                   max_minutes=None, ablation=False, seeds=3,
                   model_minutes={"pointnet": 3.0, "dgcnn": 2.0, "transformer": 3.0, "gravnet": 3.0,
                                  "cellgraph": 3.0, "event_pointnet": 1.5, "ablation": 2.0},
                   model_cfgs={}, widths="light", ragged=None, patience=3),
    "large": dict(models=["pointnet"], n_events=8000, epochs=20, max_points=0, batch_size=128, max_minutes=None,
                  ablation=False, seeds=3, model_minutes={"pointnet": 12.0, "cellgraph": 12.0, "event_pointnet": 1.5},
                  model_cfgs={},
                  widths="small", ragged=True, patience=6),
    # full mode: every learned model, the cell-graph model included (2.2-2.6x PointNet's time per epoch on CPU)
    "full": dict(models=list(LEARNED_MODELS), n_events=4000, epochs=15, max_points=0, batch_size=64, max_minutes=None,
                 ablation=True, seeds=3,
                 model_minutes={}, model_cfgs={}, widths="small", ragged=None, patience=3),
}

#: ``--generator`` choices using Pythia8 (:func:`pcloud.sim.events.generate_pythia`): name -> process.
PYTHIA_GENERATORS = {"pythia-tau": "tau", "pythia-dijet": "dijet"}


@dataclass
class PflowConfig:
    out: str = "out/bench_pflow"
    quick: bool = False
    medium: bool = False                 # between quick and full (see PFLOW_MODES)
    large: bool = False                  # more events and epochs for PointNet (budgets: ~1 h on 2 CPU cores)
    device: str = "auto"
    seed: int = 1                        # events, splits and the first training seed
    seeds: int | None = None             # training seeds seed, seed+1, ... (metrics: mean and spread); quick 1, else 3
    ensemble: bool = True                # with several seeds: also the seeds' mean fraction as one segmenter
    n_events: int | None = None          # per mode (PFLOW_MODES): quick 600, medium 3000, large 8000, full 4000
    epochs: int | None = None            # quick 2, medium 8, large 20, full 15
    models: list | None = None           # learned per-track models (per mode: PFLOW_MODES)
    target: str = "soft"
    loss: str | None = None              # the recipe's (RECIPE / LEGACY_RECIPE)
    recipe: str = "new"                  # "new" (RECIPE) or "legacy" (the recipe before issue 11)
    cells: str | None = None             # "topo" (clustered cells with E > 0) or "all" cells of the cone
    energy_share: float | None = None    # energy-weighted share of the "mixed" loss
    threshold: str | float | None = "recipe"   # "val", a number, None (0.5) or "recipe"
    optimizer: str | None = None
    schedule: str | None = None
    warmup: float | None = None
    weight_decay: float | None = None
    schedule_time: bool | None = None    # cosine timed to the model's budget when it has one
    ragged: bool | None = None           # the ragged path of the point models (large mode: yes; else the recipe's: no)
    #: also train the per-track models on the residual clouds of iterative inference (pcloud.pflow.residual_clouds)
    residual_clouds: bool = False
    #: widths of the per-track models (pcloud.pflow.learned.WIDTHS): "light" (quick / medium: narrower DGCNN,
    #: transformer, GravNet), "small" (CPU-sized; large / full) or "full" (the model classes' own, GPU-sized)
    widths: str | None = None
    features: list | None = None         # per-point features of the per-track models (None: the recipe's)
    dr_max: float = 0.2
    max_points: int | None = None        # points per track cloud: quick 128, medium / large / full 0 = every point
    batch_size: int | None = None
    lr: float = 1e-3
    patience: int | None = None          # early stopping (epochs without a better val loss): large 6, else 3
    max_minutes: float | None = None     # default time budget per model training (checked after each epoch)
    model_minutes: dict | None = None    # per model (a learned model, "event_pointnet", "ablation") budgets
    model_cfg: dict = field(default_factory=dict)      # overrides for every per-track model
    model_cfgs: dict | None = None       # per-model architecture overrides ({"dgcnn": {...}})
    event_model: bool = True             # also train the whole-event ChargedFractionSegmenter ("event_pointnet")
    event_max_points: int = 512
    #: noise-free replicas of the test events for the kinematic oracles (pcloud.pflow.kinematic_oracle); 0: none
    kinematic_replicas: int = 16
    ablation: bool | None = None         # PointNet target/loss ablation (default: full mode only)
    parents: list = field(default_factory=lambda: ["rho", "delta"])
    energy_gev: tuple = (10.0, 100.0)
    n_parents: tuple = (1, 3)
    parent_dr: tuple = (0.02, 0.3)
    dense_fraction: float = 0.3          # share of events from the dense component (pcloud.pflow.samples)
    dense_n_parents: tuple = (2, 3)
    dense_dr: tuple = (0.02, 0.15)
    generator: str = "gun"               # "gun" or a key of PYTHIA_GENERATORS
    pythia_pt_hat_gev: tuple = (20.0, None)  # pT-hat range of pythia-dijet (None: no upper limit)
    dense_cut: float = 0.1               # the "dense environment" DeltaR of the dedicated report section
    fractions: dict = field(default_factory=lambda: {"train": 0.7, "val": 0.1, "test": 0.2})
    cleanup_sigma: float = 2.0
    write_mltree: bool = True
    plots: bool = True
    n_displays: int = 2
    #: MLTree files (with per-cell truth) used instead of generated events; the generator settings are then unused
    data: list = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else ("medium" if self.medium else ("large" if self.large else "full"))

    def resolved(self) -> "PflowConfig":
        if int(self.quick) + int(self.medium) + int(self.large) > 1:
            raise ValueError("bench pflow: choose one of quick, medium and large, found "
                             + " and ".join(m for m in ("quick", "medium", "large") if getattr(self, m)))
        c = PflowConfig(**asdict(self))
        d = PFLOW_MODES[c.mode]
        for k in ("n_events", "epochs", "max_points", "batch_size", "max_minutes", "ablation", "model_minutes",
                  "model_cfgs", "seeds", "models", "widths", "ragged", "patience"):
            if getattr(c, k) is None:
                setattr(c, k, copy.deepcopy(d[k]))
        if c.recipe not in ("new", "legacy"):
            raise ValueError(f"bench pflow: recipe must be 'new' or 'legacy', found {c.recipe!r}")
        rec = RECIPE if c.recipe == "new" else LEGACY_RECIPE
        for k, v in rec.items():
            if k == "threshold":
                if c.threshold == "recipe":
                    c.threshold = v
            elif getattr(c, k) is None:
                setattr(c, k, copy.deepcopy(v))
        budgets = {**(c.model_minutes or {}), "*": c.max_minutes}
        bad = {k: v for k, v in budgets.items() if v is not None and not float(v) > 0}
        if bad:
            raise ValueError(f"bench pflow: training budgets must be > 0 minutes, found {bad}")
        unknown = sorted(set(c.model_minutes or {}) - set(LEARNED_MODELS) - {"event_pointnet", "ablation"})
        if unknown:
            raise ValueError(f"bench pflow: budgets for unknown models {unknown}; known: {list(LEARNED_MODELS)}, "
                             "event_pointnet, ablation")
        if c.kinematic_replicas < 0:
            raise ValueError(f"bench pflow: kinematic_replicas must be >= 0 (0: no kinematic oracle), found "
                             f"{c.kinematic_replicas}")
        if c.max_points < 0:
            raise ValueError(f"bench pflow: max_points must be >= 0 (0: every point), found {c.max_points}")
        if c.patience < 1:
            raise ValueError(f"bench pflow: patience must be >= 1 epoch, found {c.patience}")
        from ...pflow.learned import WIDTHS

        if c.widths not in WIDTHS:
            raise ValueError(f"bench pflow: widths must be one of {', '.join(WIDTHS)}, found {c.widths!r}")
        if c.seeds < 1:
            raise ValueError(f"bench pflow: seeds must be >= 1, found {c.seeds}")
        if c.n_events < 10:
            raise ValueError(f"bench pflow: need at least 10 events, found n_events = {c.n_events}")
        unknown = [m for m in c.models if m not in LEARNED_MODELS]
        if unknown:
            raise ValueError(f"bench pflow: unknown models {unknown}; known: {list(LEARNED_MODELS)}")
        if c.generator != "gun" and c.generator not in PYTHIA_GENERATORS:
            raise ValueError(f"bench pflow: unknown generator {c.generator!r}; known: gun, "
                             f"{', '.join(PYTHIA_GENERATORS)}")
        if not 0.0 <= c.energy_share <= 1.0:
            raise ValueError(f"bench pflow: energy_share must be in [0, 1], found {c.energy_share}")
        if not 0.0 <= c.dense_fraction <= 1.0:
            raise ValueError(f"bench pflow: dense_fraction must be in [0, 1], found {c.dense_fraction}")
        return c

    def minutes(self, name: str):
        """Training time budget (minutes) of model ``name`` (None: unbounded)."""
        return (self.model_minutes or {}).get(name, self.max_minutes)

    def arch(self, model: str) -> dict:
        return {**(self.model_cfgs or {}).get(model, {}), **self.model_cfg}

    @property
    def seed_list(self) -> list[int]:
        """The training seeds: ``seed``, ``seed + 1``, ... (``seeds`` of them)."""
        return [self.seed + i for i in range(self.seeds)]

    def segmenter_kwargs(self) -> dict:
        """Recipe arguments of :class:`pcloud.pflow.learned.FocalTrackSegmenter`."""
        return {"cells": self.cells, "threshold": self.threshold, "energy_share": self.energy_share,
                "ragged": self.ragged, "widths": self.widths, "residual_clouds": bool(self.residual_clouds)}

    def fit_kwargs(self) -> dict:
        """Recipe arguments of ``FocalTrackSegmenter.fit`` (:class:`pcloud.train.trainer.Trainer`)."""
        return {"optimizer": self.optimizer, "schedule": self.schedule, "warmup": self.warmup,
                "weight_decay": self.weight_decay, "schedule_time": self.schedule_time}
