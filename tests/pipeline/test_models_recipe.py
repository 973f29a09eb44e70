"""``pcloud train`` with the point transformer / GravNet and the training-recipe keys of ``train.yaml``."""
import pytest
import torch

from pcloud.pipeline.config import run_config
from pcloud.pipeline.models import POINT_MODEL_NAMES, build_from_spec, model_spec
from pcloud.pipeline.train import _run_settings


def test_transformer_spec_places_its_columns_by_feature_name():
    s = model_spec("transformer", 5, 2, False, 0, 3, True)  # the default features x, y, z, layer, log_energy
    assert (s["layer_col"], s["energy_col"], s["pair_features"]) == (3, 4, ["dist", "dlayer", "dlogE"])
    s = model_spec("transformer", 4, 2, False, 0, 3, True, feature_names=["log_energy", "x", "y", "z"])
    assert (s["layer_col"], s["energy_col"], s["pair_features"]) == (None, 0, ["dist", "dlogE"])
    s = model_spec("transformer", 3, 2, False, 0, 3, True)  # unknown columns: distance only
    assert (s["layer_col"], s["energy_col"], s["pair_features"]) == (None, None, ["dist"])
    for name in ("transformer", "gravnet"):
        assert name in POINT_MODEL_NAMES
        model = build_from_spec(name, model_spec(name, 5, 2, False, 0, 3, True))
        b = {"x": torch.randn(2, 6, 5), "pos": torch.randn(2, 6, 3) * 100, "mask": torch.ones(2, 6, dtype=torch.bool),
             "g": torch.zeros(2, 3)}
        assert model.eval()(b)["logits"].shape == (2, 2)


def test_recipe_keys_checked_and_identity_unchanged_at_defaults():
    data = ["a.h5:e+"]
    base = run_config(None, [], data=data)
    assert (base.train["optimizer"], base.train["schedule"], base.train["weight_decay"]) == ("adam", "constant", 0.0)
    assert '"optimizer"' not in _run_settings(base)["recipe"]  # checkpoints written before the keys still resume
    new = run_config(None, ["train.optimizer=adamw", "train.schedule=cosine", "train.weight_decay=0.01"], data=data)
    assert '"optimizer": "adamw"' in _run_settings(new)["recipe"] and '"warmup"' not in _run_settings(new)["recipe"]
    for bad, key in (("train.optimizer=sgd", "optimizer"), ("train.schedule=step", "schedule"),
                     ("train.warmup=1.5", "warmup"), ("train.weight_decay=-1", "weight_decay")):
        with pytest.raises(ValueError, match=f"train.{key}"):
            run_config(None, [bad], data=data)
