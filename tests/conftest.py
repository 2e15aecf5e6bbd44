"""Shared test setup."""

import json
import os
import random
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

from lit_ir.data.trec import write_run  # noqa: E402
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


def compose_train(output_dir: Path, cache_dir: Path, overrides: list[str] = (), toy: bool = True) -> DictConfig:
    """The real `train` config, composed as `python -m lit_ir.train` would, shrunk to a tiny CPU run (on the tiny
    toy collection unless `toy=False`)."""
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
                *(TINY_TOY if toy else []),
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


# --- a collection whose right answers are known -----------------------------------------------------------------
MARKERS = ("alpha", "beta")


def write_known_answer_collection(folder: Path, asks: dict[str, str] | None = None, positive_marker: str | None = None,
                                  queries_per_split: dict[str, int] | None = None, negatives: int = 5,
                                  seed: int = 0) -> Path:
    """A BEIR folder in which the relevant document of every query is known, and TREC runs that know nothing.

    Documents carry a marker, `alpha` or `beta` (repeated, plus two filler words). For every query the corpus holds
    two candidate lists: one `alpha` document among `negatives` `beta` ones, and the mirror image. Which list a query
    gets (its qrels, and `runs/<split>.trec`, where the relevant document sits at a random rank):
    - `asks` {query word: marker}: queries alternate between the words (the query is the word twice) and get the
      list whose relevant document has the marker their word asks for: a model must learn what each word asks for.
    - `positive_marker`: every query ("find find") gets the list whose relevant document has that marker.
    The texts depend only on `seed`, not on the mode, so a model built from them is the same for every mode.
    """
    if (asks is None) == (positive_marker is None):
        raise ValueError("give asks or positive_marker")
    queries_per_split = queries_per_split or {"train": 96, "dev": 8, "test": 16}
    texts, orders = random.Random(seed), random.Random(seed + 1)
    filler = [f"w{index}" for index in range(40)]
    corpus, queries, qrels, runs = [], [], {}, {}
    for split, count in queries_per_split.items():
        qrels[split], runs[split] = {}, {}
        for index in range(count):
            query_id = f"{split}-q{index}"
            lists = {}
            for relevant in MARKERS:
                other = MARKERS[1 - MARKERS.index(relevant)]
                lists[relevant] = []
                for rank, marker in enumerate([relevant] + [other] * negatives):
                    doc_id = f"{query_id}-{relevant}{rank}"
                    corpus.append({"_id": doc_id, "text": " ".join([marker] * 4 + texts.sample(filler, 2))})
                    lists[relevant].append(doc_id)
            word = sorted(asks)[index % len(asks)] if asks else "find"
            queries.append({"_id": query_id, "text": f"{word} {word}"})
            docs = lists[asks[word] if asks else positive_marker]
            qrels[split][query_id] = docs[0]
            docs = orders.sample(docs, len(docs))
            runs[split][query_id] = {doc_id: float(len(docs) - rank) for rank, doc_id in enumerate(docs)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(query) + "\n" for query in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    for split, judged in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text("".join(f"{q}\t{d}\t1\n" for q, d in judged.items()))
        write_run(runs[split], folder / "runs" / f"{split}.trec", tag="chance")
    return folder


def known_answer_overrides(folder: Path) -> list[str]:
    """Train on `folder`'s train split, validate on dev, test on test, candidates from its chance runs."""
    return ["collection=local_beir", f"collection.source.path={folder}", "collection.train_split=train",
            "collection.val_split=dev", "collection.test_splits=[test]",
            "first_stage@data.first_stage=run_files", f"data.first_stage.folder={folder / 'runs'}"]
