"""The built-in toy collection: generated, deterministic from a seed, written in BEIR layout.

It is small enough for a CPU quickstart and has structure that a neural ranker can learn but BM25 cannot:

- Documents are about one *topic*. Each topic has its own *concepts*, and each concept has a document form and a
  query form (a synonym) that never appears in any document, so exact-match retrieval cannot see it.
- *Anchor* words are ambiguous: they occur in documents of every topic.
- A query names an anchor (as written in documents) plus two concepts of its topic, usually in their query form.
- Relevant documents (grade 3) are on the query's topic and contain the anchor and both concepts; partially
  relevant ones (grade 1) are on the topic and contain the anchor but other concepts. Distractors (grade 0)
  repeat the anchor but are about another topic, so BM25, which mostly sees only the anchor, ranks them high.
- Topics and concepts recur across train, dev and test queries in new combinations, so a model that learns the
  synonyms and topics on train queries generalises to test queries.

The click log (``clicks.tsv``, ORCAS layout) holds extra keyword queries built the same way from documents,
with a click on the document they came from.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import OmegaConf

from lit_ir.data.collections import BeirCollection
from lit_ir.utils.io import atomic_write, write_json

CONSONANTS = "bcdfghjklmnprstvz"
VOWELS = "aeiou"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class ToyConfig:
    seed: int = 0
    n_topics: int = 10
    concepts_per_topic: int = 6
    n_anchors: int = 40
    n_filler_words: int = 200
    n_queries: dict | None = None  # split -> count; see queries_per_split
    n_background_docs: int = 600
    n_click_queries: int = 2000
    p_query_synonym: float = 0.75  # chance that a concept appears in the query in its query form
    doc_length: tuple[int, int] = (20, 40)

    def queries_per_split(self) -> dict[str, int]:
        return dict(self.n_queries or {"train": 500, "dev": 60, "test": 100})


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    """Distinct pronounceable nonsense words (2-3 syllables), so no pretrained knowledge leaks in."""
    words: set[str] = set()
    ordered: list[str] = []
    while len(ordered) < count:
        word = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.choice((2, 3))))
        if word not in words:
            words.add(word)
            ordered.append(word)
    return ordered


class _Generator:
    def __init__(self, config: ToyConfig):
        self.config = config
        self.rng = random.Random(config.seed)
        n_concepts = config.n_topics * config.concepts_per_topic
        words = iter(_pseudo_words(self.rng, 2 * n_concepts + config.n_anchors + config.n_filler_words))
        per_topic = config.concepts_per_topic
        self.doc_form = [[next(words) for _ in range(per_topic)] for _ in range(config.n_topics)]
        self.query_form = [[next(words) for _ in range(per_topic)] for _ in range(config.n_topics)]
        self.anchors = [next(words) for _ in range(config.n_anchors)]
        self.filler = list(words)
        self.docs: dict[str, str] = {}
        self.doc_terms: dict[str, tuple[int, str, list[int]]] = {}  # doc id -> (topic, anchor, concepts)

    def _filler_words(self, count: int) -> list[str]:
        # Zipf-like background: low-index filler words are frequent, as in natural text
        weights = [1.0 / (rank + 1) for rank in range(len(self.filler))]
        return self.rng.choices(self.filler, weights=weights, k=count)

    def add_doc(self, topic: int, anchor: str, anchor_tf: int, concepts: list[int]) -> str:
        low, high = self.config.doc_length
        tokens = [anchor] * anchor_tf
        tokens += [self.doc_form[topic][c] for c in concepts for _ in range(self.rng.randint(1, 2))]
        # a topical document also mentions a few other words of its topic
        tokens += [self.rng.choice(self.doc_form[topic]) for _ in range(3)]
        tokens += self._filler_words(max(0, self.rng.randint(low, high) - len(tokens)))
        self.rng.shuffle(tokens)
        doc_id = f"D{len(self.docs):05d}"
        self.docs[doc_id] = " ".join(tokens)
        self.doc_terms[doc_id] = (topic, anchor, concepts)
        return doc_id

    def query_text(self, topic: int, anchor: str, concepts: list[int]) -> str:
        words = [anchor]
        for concept in concepts:
            use_synonym = self.rng.random() < self.config.p_query_synonym
            words.append((self.query_form if use_synonym else self.doc_form)[topic][concept])
        self.rng.shuffle(words)
        return " ".join(words)

    def add_topic(self) -> tuple[str, dict[str, int]]:
        """One query with its relevant, partially relevant and distractor documents."""
        topic = self.rng.randrange(self.config.n_topics)
        anchor = self.rng.choice(self.anchors)
        concepts = self.rng.sample(range(self.config.concepts_per_topic), 2)
        others = [c for c in range(self.config.concepts_per_topic) if c not in concepts]
        judged: dict[str, int] = {}
        for _ in range(self.rng.randint(1, 3)):
            judged[self.add_doc(topic, anchor, self.rng.randint(1, 2), concepts)] = 3
        for _ in range(2):
            judged[self.add_doc(topic, anchor, self.rng.randint(1, 2), self.rng.sample(others, 2))] = 1
        for _ in range(self.rng.randint(3, 5)):
            other_topic = self.rng.choice([t for t in range(self.config.n_topics) if t != topic])
            picked = self.rng.sample(range(self.config.concepts_per_topic), 2)
            judged[self.add_doc(other_topic, anchor, self.rng.randint(3, 5), picked)] = 0  # a hard negative for BM25
        return self.query_text(topic, anchor, concepts), judged


def generate_toy_collection(out_dir: str | Path, config: ToyConfig = ToyConfig()) -> Path:
    """Write the toy collection to `out_dir` in BEIR layout (plus clicks.tsv and toy.json) and return the path."""
    out_dir = Path(out_dir)
    generator = _Generator(config)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {split: {} for split in SPLITS}
    for split, count in config.queries_per_split().items():
        for _ in range(count):
            query_id = f"Q{len(queries):04d}"
            queries[query_id], qrels[split][query_id] = generator.add_topic()
    for _ in range(config.n_background_docs):
        topic = generator.rng.randrange(config.n_topics)
        concepts = generator.rng.sample(range(config.concepts_per_topic), 2)
        generator.add_doc(topic, generator.rng.choice(generator.anchors), 1, concepts)

    doc_ids = list(generator.docs)
    generator.rng.shuffle(doc_ids)  # so relevant documents do not sit next to each other by id order
    with atomic_write(out_dir / "corpus.jsonl") as handle:
        for doc_id in sorted(doc_ids):
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": generator.docs[doc_id]}) + "\n")
    with atomic_write(out_dir / "queries.jsonl") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    for split, split_qrels in qrels.items():
        with atomic_write(out_dir / "qrels" / f"{split}.tsv") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for query_id, judged in split_qrels.items():
                for doc_id, grade in judged.items():
                    handle.write(f"{query_id}\t{doc_id}\t{grade}\n")
    with atomic_write(out_dir / "clicks.tsv") as handle:
        for index in range(config.n_click_queries):
            doc_id = generator.rng.choice(doc_ids)
            query = generator.query_text(*generator.doc_terms[doc_id])
            handle.write(f"C{index:05d}\t{query}\t{doc_id}\ttoy://{doc_id}\n")
    # written last: its presence marks a complete collection
    write_json({"generator": "lit_ir.data.toy", **asdict(config)}, out_dir / "toy.json")
    return out_dir


class ToyCollection(BeirCollection):
    """The toy collection, generated into `path` on first use (and regenerated if its settings change)."""

    def __init__(self, path: str | Path, name: str = "toy", **settings):
        # Hydra hands over DictConfig/ListConfig values; the marker compares plain JSON
        settings = {key: OmegaConf.to_object(value) if OmegaConf.is_config(value) else value for key, value in settings.items()}
        config = ToyConfig(**settings)
        path = Path(path)
        marker = path / "toy.json"
        expected = json.loads(json.dumps({"generator": "lit_ir.data.toy", **asdict(config)}))
        if not marker.is_file() or json.loads(marker.read_text()) != expected:
            generate_toy_collection(path, config)
        super().__init__(path, name=name)
