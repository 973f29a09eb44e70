"""Configuration of ``pcloud bench pflow``: modes, defaults and :class:`PflowConfig` (see :mod:`pcloud.bench.pflow`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

CONSERVATION_TOL_GEV = 1e-6
LEARNED_MODELS = ("pointnet", "dgcnn")
BASELINES = ("rule_based", "dr_nearest", "random", "trivial")
#: (target, loss) variants of the PointNet ablation (non-quick modes); the default is ("soft", "energy_weighted").
ABLATION_VARIANTS = (("binary", "ce"), ("hard", "focal"))
#: a lighter DGCNN (k = 8, narrower EdgeConvs) for the CPU-bounded quick and medium modes
DGCNN_LIGHT = {"k": 8, "edge_channels": (32, 32, 64), "emb_dim": 64}
#: per-mode defaults (``PflowConfig`` fields left at None take these)
PFLOW_MODES = {
    "quick": dict(n_events=600, epochs=2, max_points=128, batch_size=64, max_minutes=1.0, ablation=False,
                  model_minutes={"pointnet": 1.0, "dgcnn": 1.0, "event_pointnet": 0.5},
                  model_cfgs={"dgcnn": DGCNN_LIGHT}),
    "medium": dict(n_events=3000, epochs=8, max_points=128, batch_size=128, max_minutes=None, ablation=True,
                   model_minutes={"pointnet": 3.0, "dgcnn": 2.0, "event_pointnet": 1.5, "ablation": 2.0},
                   model_cfgs={"dgcnn": DGCNN_LIGHT}),
    "full": dict(n_events=4000, epochs=15, max_points=256, batch_size=64, max_minutes=None, ablation=True,
                 model_minutes={}, model_cfgs={}),
}

#: ``--generator`` choices using Pythia8 (:func:`pcloud.sim.events.generate_pythia`): name -> process.
PYTHIA_GENERATORS = {"pythia-tau": "tau", "pythia-dijet": "dijet"}


@dataclass
class PflowConfig:
    out: str = "out/bench_pflow"
    quick: bool = False
    medium: bool = False                 # between quick and full: 2 CPU cores, <= 20 min (see PFLOW_MODES)
    device: str = "auto"
    seed: int = 1
    n_events: int | None = None          # per mode (PFLOW_MODES): quick 600, medium 3000, full 4000
    epochs: int | None = None            # quick 2, medium 8, full 15
    models: list = field(default_factory=lambda: list(LEARNED_MODELS))
    target: str = "soft"
    loss: str = "energy_weighted"
    dr_max: float = 0.2
    max_points: int | None = None        # quick/medium 128, full 256
    batch_size: int | None = None
    lr: float = 1e-3
    patience: int = 3
    max_minutes: float | None = None     # default time budget per model training (checked after each epoch)
    model_minutes: dict | None = None    # per model ("pointnet", "dgcnn", "event_pointnet", "ablation") budgets
    model_cfg: dict = field(default_factory=dict)      # overrides for every per-track model
    model_cfgs: dict | None = None       # per-model architecture overrides ({"dgcnn": {...}})
    event_model: bool = True             # also train the whole-event ChargedFractionSegmenter ("event_pointnet")
    event_max_points: int = 512
    ablation: bool | None = None         # PointNet target/loss ablation (default: on unless quick)
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
        return "quick" if self.quick else ("medium" if self.medium else "full")

    def resolved(self) -> "PflowConfig":
        if self.quick and self.medium:
            raise ValueError("bench pflow: choose one of quick and medium, found both")
        c = PflowConfig(**asdict(self))
        d = PFLOW_MODES[c.mode]
        for k in ("n_events", "epochs", "max_points", "batch_size", "max_minutes", "ablation", "model_minutes",
                  "model_cfgs"):
            if getattr(c, k) is None:
                setattr(c, k, d[k] if not isinstance(d[k], dict) else dict(d[k]))
        if c.n_events < 10:
            raise ValueError(f"bench pflow: need at least 10 events, found n_events = {c.n_events}")
        unknown = [m for m in c.models if m not in LEARNED_MODELS]
        if unknown:
            raise ValueError(f"bench pflow: unknown models {unknown}; known: {list(LEARNED_MODELS)}")
        if c.generator != "gun" and c.generator not in PYTHIA_GENERATORS:
            raise ValueError(f"bench pflow: unknown generator {c.generator!r}; known: gun, "
                             f"{', '.join(PYTHIA_GENERATORS)}")
        if not 0.0 <= c.dense_fraction <= 1.0:
            raise ValueError(f"bench pflow: dense_fraction must be in [0, 1], found {c.dense_fraction}")
        return c

    def minutes(self, name: str):
        """Training time budget (minutes) of model ``name`` (None: unbounded)."""
        return (self.model_minutes or {}).get(name, self.max_minutes)

    def arch(self, model: str) -> dict:
        return {**(self.model_cfgs or {}).get(model, {}), **self.model_cfg}
