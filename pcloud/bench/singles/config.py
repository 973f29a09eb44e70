"""Configuration of ``pcloud bench singles``: :class:`SinglesConfig`, its mode defaults and the YAML layout."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .models import DENSE_MODEL_NAMES, POINT_MODEL_NAMES
from .tasks import TASKS

CLASSICAL_ID = ("ss_fcn", "ss_gbt")
CLASSICAL_ENERGY = ("linear", "tree_regression")
REFERENCE = "ss_fcn"
#: the learned models of quick mode (the README's main job, CPU-bounded): PointNet, DGCNN and the dense CNNs; the
#: point transformer and GravNet join in full mode or when named (``models``)
QUICK_MODELS = ("pointnet", "dgcnn") + tuple(DENSE_MODEL_NAMES)


@dataclass
class SinglesConfig:
    out: str = "out/bench_singles"
    quick: bool = False
    device: str = "auto"
    seed: int = 1
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    #: learned models (None: :data:`QUICK_MODELS` in quick mode, every point and dense model otherwise)
    models: list[str] | None = None
    n_per_class: int | None = None
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 5
    #: training recipe (:class:`pcloud.train.trainer.Trainer`; defaults: the original Adam at a constant rate)
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup: float = 0.05
    weight_decay: float = 0.0
    threshold_mev: float = 0.0
    max_points: int | None = None
    occupancy_study: bool = True
    #: the gamma/pi0 task again at CMS- and ATLAS-like ECAL cells (seed 001 section 5.4; default: on in full mode)
    granularity_study: bool | None = None
    #: showers per class of the granularity study (default: min(n_per_class, 4000))
    granularity_n_per_class: int | None = None
    max_minutes_per_model: float | None = None
    split_seed: int | None = None
    #: continue every model from its ``runs/<task>/<model>/last.pt`` checkpoint (the data are regenerated
    #: identically from the seed)
    resume: bool = False
    #: CPU-sized model widths (default: on in quick mode); full widths follow the papers more closely
    small_models: bool | None = None
    #: the user's files (``FILE[:LABEL]``): one identification task "data" on them instead of the simulated tasks;
    #: ``n_per_class`` then caps the events per class (default: all)
    data: list[str] = field(default_factory=list)
    xml: str | None = None

    def resolved(self) -> "SinglesConfig":
        c = SinglesConfig(**asdict(self))
        for k in ("n_per_class", "epochs", "max_points"):
            v = getattr(c, k)
            if v is not None and v <= 0:
                raise ValueError(f"{k} must be a positive integer, got {v}")
        if c.granularity_study is None:
            c.granularity_study = not c.quick and not c.data
        if c.data:
            c.tasks = ["data"]
            c.occupancy_study = False
            c.granularity_study = False
        else:
            c.n_per_class = c.n_per_class or (700 if c.quick else 20000)
        c.epochs = c.epochs or (8 if c.quick else 40)
        c.max_points = c.max_points or (96 if c.quick else 384)
        if c.max_minutes_per_model is None and c.quick:
            c.max_minutes_per_model = 1.5
        if c.small_models is None:
            c.small_models = c.quick
        unknown = [t for t in c.tasks if t not in TASKS and not (c.data and t == "data")]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
        if c.models is None:
            c.models = list(QUICK_MODELS if c.quick else POINT_MODEL_NAMES + DENSE_MODEL_NAMES)
        bad = [m for m in c.models if m not in POINT_MODEL_NAMES + DENSE_MODEL_NAMES]
        if bad:
            raise ValueError(f"unknown model(s) {bad}; known: {list(POINT_MODEL_NAMES + DENSE_MODEL_NAMES)}")
        return c


TASK_MODE = {"calogan": "total", "clic": "visible", "cms": "visible"}

#: config keys (pcloud.train.config layout) -> SinglesConfig fields
_CONFIG_KEYS = {("seed",): "seed", ("device",): "device", ("train", "epochs"): "epochs",
                ("train", "batch_size"): "batch_size", ("train", "lr"): "lr", ("train", "patience"): "patience",
                ("train", "optimizer"): "optimizer", ("train", "schedule"): "schedule", ("train", "warmup"): "warmup",
                ("train", "weight_decay"): "weight_decay",
                ("split", "seed"): "split_seed"}


def config_from_dict(cfg: dict) -> SinglesConfig:
    """A :class:`SinglesConfig` from a nested config (``pcloud/configs/singles.yaml`` layout: top-level ``seed``,
    ``device``, ``train.*``, ``split.seed`` and the ``singles`` section with the remaining fields). Unknown keys in
    ``singles`` are an error naming the key; ``null`` values keep the mode's defaults."""
    out = SinglesConfig()
    fields = set(asdict(out))
    for path, name in _CONFIG_KEYS.items():
        node = cfg
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if node is not None and name in fields:
            setattr(out, name, node)
    for k, v in (cfg.get("singles") or {}).items():
        if k not in fields:
            raise ValueError(f"config: unknown key singles.{k}; known: {sorted(fields)}")
        if v is not None:
            setattr(out, k, list(v) if isinstance(v, (list, tuple)) else v)
    return out
