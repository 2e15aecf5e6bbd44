"""Shared test setup."""

import os
import tempfile
from pathlib import Path

# numba picks its cache folder when ranx is imported (its functions are decorated with cache=True), so this must be
# set before any test module is collected; a fixture would run too late. The folder outlives the session so that
# ranx's ~60 s JIT compilation happens once per machine, not once per test run.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lit_ir-numba-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from lit_ir.utils.hydra import CONFIG_DIR  # noqa: E402

# A toy collection small enough for seconds-long training runs (the quickstart uses the full default size).
TINY_TOY = [
    "collection.source.n_queries={train:32,dev:8,test:8}",
    "collection.source.n_background_docs=40",
    "collection.source.n_click_queries=20",
]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache (toy collection, BM25 runs, random models) for the whole session: they are deterministic."""
    return tmp_path_factory.mktemp("lit_ir_cache")


def compose_train(output_dir: Path, cache_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The real `train` config, composed as `python -m lit_ir.train` would, shrunk to a tiny CPU run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            return_hydra_config=True,
            overrides=[
                "experiment=quickstart",
                "model.pretrained=random-bert-32x1",
                "model.max_length=48",
                "trainer.max_epochs=1",
                "trainer.check_val_every_n_epoch=1",
                "trainer.log_every_n_steps=1",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "logger=csv",
                "data.train_batch_size=8",
                "data.rerank_depth=20",
                "data.first_stage.k=20",
                f"paths.root_dir={output_dir}",
                f"paths.cache_dir={cache_dir}",
                f"paths.output_dir={output_dir}",
                f"hydra.runtime.output_dir={output_dir}",
                *TINY_TOY,
                *overrides,
            ],
        )
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from 2 threads, and on shared cores competing threads made steps 5-30x slower.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
