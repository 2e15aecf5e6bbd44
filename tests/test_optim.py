"""The CODER authors' optimisation: weight-decay groups, constant rate after warm-up, reduction on plateau (checked
against torch's ReduceLROnPlateau as the authors configure it, and through Lightning on a toy run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from lit_ir.models.hub import build_random_bert
from lit_ir.modules.coder import CoderModule
from lit_ir.optim import ConstantWithWarmup, ReduceOnPlateau, decay_groups
from lit_ir.train import run
from lit_ir.utils.hydra import CONFIG_DIR
from test_coder_train import TINY_CODER, compose_coder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _names(module: nn.Module, params: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in module.named_parameters() if id(p) in ids}


def test_decay_groups_exempt_biases_and_every_layer_norm(tmp_path):
    folder = build_random_bert(tmp_path, hidden=32, layers=1, vocab_texts=["wind tunnel flow"])
    module = CoderModule(encoder={"path": str(folder)})
    module.configure_model()
    query_encoder = module.model.query_encoder
    decay, exempt = decay_groups([query_encoder, module.scorer])
    assert exempt["weight_decay"] == 0.0 and "weight_decay" not in decay  # decay: the optimizer's own setting
    names = {name for name, _ in query_encoder.named_parameters()}
    assert _names(query_encoder, exempt["params"]) == {n for n in names if n.endswith("bias") or "LayerNorm" in n}
    assert _names(query_encoder, decay["params"]) == {n for n in names if n.endswith("weight") and "LayerNorm" not in n}
    assert len(decay["params"]) + len(exempt["params"]) == len(module.trainable_parameters())
    # by layer type, not by name: DistilBERT's norms are called sa_layer_norm / output_layer_norm
    distil_like = nn.ModuleDict({"sa_layer_norm": nn.LayerNorm(4), "ffn": nn.Linear(4, 4)})
    decay, exempt = decay_groups([distil_like])
    assert _names(distil_like, exempt["params"]) == {"sa_layer_norm.weight", "sa_layer_norm.bias", "ffn.bias"}

    # the paper's optimizer, as model/coder.yaml builds it: decoupled decay (the authors' RAdam) on weights only
    config = OmegaConf.load(CONFIG_DIR / "model" / "coder.yaml")
    optimizer = instantiate(config.optimizer)(params=module.parameter_groups())
    assert isinstance(optimizer, torch.optim.RAdam) and config.exclude_from_weight_decay
    assert [g["weight_decay"] for g in optimizer.param_groups] == [pytest.approx(9.5e-5), 0.0]
    assert all(g["decoupled_weight_decay"] for g in optimizer.param_groups)


def _sgd(lr: float = 1.0) -> torch.optim.SGD:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_constant_with_warmup_ramps_holds_and_keeps_a_reduction():
    optimizer = _sgd()
    schedule = ConstantWithWarmup(optimizer, num_warmup_steps=4)
    lrs = []
    for step in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])  # the rate optimizer step `step` uses
        if step == 5:
            optimizer.param_groups[0]["lr"] *= 0.5  # what a plateau reduction does between two steps
        optimizer.step()
        schedule.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])

    optimizer = _sgd()  # a reduction during warm-up: the ramp continues from the reduced rate
    schedule = ConstantWithWarmup(optimizer, num_warmup_steps=4)
    optimizer.step(), schedule.step()
    optimizer.param_groups[0]["lr"] *= 0.5
    for _ in range(4):
        optimizer.step(), schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


@pytest.mark.parametrize("mode, cooldown", [("max", 0), ("max", 2), ("min", 1)])
def test_plateau_in_steps_is_torch_reduce_on_plateau_in_validations(mode, cooldown):
    """The authors' conversion: patience = ROP_patience / validation_steps validations (8000 / 2000 = 4)."""
    every = 2000
    ours_optimizer, torch_optimizer = _sgd(1e-3), _sgd(1e-3)
    ours = ReduceOnPlateau(ours_optimizer, mode=mode, factor=0.707, patience_steps=8000,
                           cooldown_steps=cooldown * every, threshold=1e-3, min_lr_ratio=0.01)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_optimizer, mode=mode, factor=0.707, patience=4,
                                                           cooldown=cooldown, threshold=1e-3, min_lr=1e-5, eps=0.0)
    rng = np.random.default_rng(0)
    # a metric that improves, then wanders on plateaus (steps of 0 most of the time)
    metric = np.cumsum(np.where(rng.random(150) < 0.15, rng.random(150) * 0.05, 0.0)) + 0.3
    for validation, value in enumerate(metric, start=1):
        ours.step(value, validation * every)
        reference.step(value)
        assert ours_optimizer.param_groups[0]["lr"] == pytest.approx(torch_optimizer.param_groups[0]["lr"]), validation
    assert len(ours.reductions) >= 5  # the sequence did exercise reductions (and the floor: 0.707^13 < 0.01)
    assert ours_optimizer.param_groups[0]["lr"] >= 1e-5 * (1 - 1e-9)


def test_plateau_reduces_after_patience_steps_through_lightning(tmp_path, shared_cache):
    """A toy CODER run whose rate is too small to change the ranking: validation every 2 steps across epochs of 4
    steps; with patience 3 steps the rate halves at the validations of steps 6 and 10 (4 steps after the best of
    step 2, then 4 steps after the first reduction), and it is the configured lr before that."""
    lr = 1e-9
    cfg = compose_coder(tmp_path, shared_cache, [
        *TINY_CODER, "trainer.max_epochs=3", f"model.optimizer.lr={lr}", "model.dropout=0.0",
        "model.plateau.patience_steps=3", "model.plateau.cooldown_steps=0", "model.plateau.factor=0.5",
        "model.base_runs=false"])
    assert cfg.trainer.val_check_interval == 2 and cfg.trainer.check_val_every_n_epoch is None
    run(cfg)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    plateau = checkpoint["lr_schedulers"][1]
    assert plateau["reductions"] == [6, 10] and plateau["best_step"] == 2
    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert logged["val/mrr@10"].dropna().nunique() == 1  # the ranking never changed: a plateau throughout
    rates = logged.dropna(subset=["lr-RAdam/pg1"]).set_index("step")["lr-RAdam/pg1"]
    assert rates.loc[:5].tolist() == pytest.approx([lr] * len(rates.loc[:5]))  # warm-up of 1 step: lr throughout
    assert rates.loc[6:9].tolist() == pytest.approx([lr / 2] * len(rates.loc[6:9]))
    assert rates.loc[10:].tolist() == pytest.approx([lr / 4] * len(rates.loc[10:]))
    assert (logged["lr-RAdam/pg2"].dropna() == logged["lr-RAdam/pg1"].dropna()).all()  # the no-decay group too


def test_plateau_on_a_metric_validation_does_not_log_fails_clearly(tmp_path, shared_cache):
    cfg = compose_coder(tmp_path, shared_cache, [*TINY_CODER, "model.monitor=mrr@1000", "model.base_runs=false"])
    with pytest.raises(ValueError, match=r"plateau monitors 'val/mrr@1000', which validation did not log"):
        run(cfg)
