"""Pseudo click logs in ORCAS's layout, cut from document titles, for coarse-tuning where no real click log exists.

The recipe (Cranfield's `clicks.tsv` has this shape: 2-4 keyword queries, about two per document):

1. A title is lower-cased and split into words (runs of letters and digits, inner hyphens kept: `two-dimensional`,
   `5.8` -> `5`, `8`); stop words (`STOP_WORDS`, English function words) are dropped. What is left are its keywords.
2. From each document's keywords, `queries_per_doc` distinct contiguous spans are drawn: a length uniform in
   [`min_words`, `max_words`] (among the lengths the title still has an unused span of), then a start uniform among
   that length's unused spans. The draw depends only on (seed, doc id): the same log whatever the corpus order.
3. A query text drawn for several documents is one query (one id, numbered in corpus order of first appearance)
   with a click on each of those documents, as a real query clicked on several results.

Documents whose title has fewer than `min_words` keywords get no query; they are counted and logged. Only titles
are read, never the collection's queries or qrels, so no query and no judgement of any split (train, dev, test)
can leak into the log.

    python -m lit_ir.data.pseudo_clicks <BEIR folder> [--out clicks.tsv] [--seed 0]

writes the log (default: `$LIT_IR_CACHE/pseudo_clicks/<folder>-seed<seed>.tsv`, `~/.cache/lit_ir` without
LIT_IR_CACHE) and prints its summary. `PseudoClickCollection` (`collection.source._target_`) is a BEIR folder whose
click log is this one, built in memory when a run reads it.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lit_ir.data.collections import BeirCollection, Click, _read_jsonl, _require_id
from lit_ir.errors import InputError, some_ids
from lit_ir.utils.io import atomic_write

log = logging.getLogger(__name__)

WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
# English function words: articles, pronouns, prepositions, conjunctions, auxiliaries, a few quantifiers
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself me more most my myself no nor not of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them themselves then there these they
this those through to too under until up upon very via was we were what when where which while who whom why will with
within without would you your yours yourself yourselves s t
""".split())


@dataclass(frozen=True)
class PseudoClickRecipe:
    """How queries are cut from titles (see the module docstring)."""

    queries_per_doc: int = 2
    min_words: int = 2
    max_words: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.queries_per_doc < 1:
            raise ValueError(f"queries_per_doc must be >= 1, got {self.queries_per_doc}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words} and {self.max_words}")


def keywords(title: str) -> list[str]:
    """A title's words without stop words, lower-cased."""
    return [word for word in WORD.findall(title.lower()) if word not in STOP_WORDS]


def draw_queries(words: list[str], doc_id: str, recipe: PseudoClickRecipe) -> list[str]:
    """Up to `queries_per_doc` distinct keyword spans of one title, drawn from (seed, doc id) alone."""
    rng = random.Random(f"{recipe.seed}/{doc_id}")
    unused = {length: list(range(len(words) - length + 1))
              for length in range(recipe.min_words, min(recipe.max_words, len(words)) + 1)}
    queries: list[str] = []
    while len(queries) < recipe.queries_per_doc:
        lengths = [length for length, starts in unused.items() if starts]
        if not lengths:
            break
        length = rng.choice(lengths)
        start = unused[length].pop(rng.randrange(len(unused[length])))
        query = " ".join(words[start: start + length])
        if query not in queries:  # a title that repeats a phrase can yield the same text twice
            queries.append(query)
    return queries


def read_titles(folder: str | Path) -> dict[str, str]:
    """doc id -> title of a BEIR folder's corpus.jsonl (documents without a title map to "")."""
    path = Path(folder) / "corpus.jsonl"
    if not path.is_file():
        raise InputError(f"{folder}: not a BEIR folder (corpus.jsonl is missing)")
    titles: dict[str, str] = {}
    for line_no, row in _read_jsonl(path):
        doc_id = _require_id(row, path, line_no)
        if doc_id in titles:
            raise InputError(f"{path}:{line_no}: duplicate document id {doc_id!r}")
        titles[doc_id] = str(row.get("title") or "")
    return titles


def title_clicks(titles: Mapping[str, str], recipe: PseudoClickRecipe = PseudoClickRecipe(), url_scheme: str = "doc",
                 source: str = "corpus") -> list[Click]:
    """The pseudo click log of `titles` (doc id -> title), in corpus order, grouped by query id."""
    query_ids: dict[str, str] = {}
    clicks: dict[str, list[str]] = {}
    too_short = []
    for doc_id, title in titles.items():
        queries = draw_queries(keywords(title), doc_id, recipe)
        if not queries:
            too_short.append(doc_id)
        for query in queries:
            query_id = query_ids.setdefault(query, str(len(query_ids) + 1))
            clicks.setdefault(query_id, []).append(doc_id)
    if not query_ids:
        raise InputError(f"{source}: no title has {recipe.min_words} or more keywords; no pseudo click log can be "
                         f"built (are the titles empty?)")
    if too_short:
        log.info("%s: %d of %d documents have fewer than %d title keywords and get no pseudo query (e.g. %s)",
                 source, len(too_short), len(titles), recipe.min_words, some_ids(too_short))
    return [Click(query_id, query, doc_id, f"{url_scheme}://{doc_id}")
            for query, query_id in query_ids.items() for doc_id in clicks[query_id]]


def write_clicks(clicks: list[Click], path: str | Path) -> Path:
    """ORCAS's layout: query id, query, doc id, url; tab-separated, no header (what `read_clicks` reads)."""
    with atomic_write(path) as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        writer.writerows((click.query_id, click.query, click.doc_id, click.url) for click in clicks)
    return Path(path)


def summary(clicks: list[Click], num_docs: int) -> dict[str, float]:
    queries = {click.query_id: click.query for click in clicks}
    return {"documents": num_docs, "documents_clicked": len({click.doc_id for click in clicks}),
            "queries": len(queries), "clicks": len(clicks),
            "words_per_query": round(sum(len(q.split()) for q in queries.values()) / len(queries), 3)}


class PseudoClickCollection(BeirCollection):
    """A BEIR folder whose click log is cut from its own titles (`title_clicks`), not read from clicks.tsv.
    `pseudo_clicks` holds the recipe's fields (queries_per_doc, min_words, max_words, seed)."""

    def __init__(self, path: str | Path, pseudo_clicks: Mapping | None = None, **kwargs):
        super().__init__(path, **kwargs)
        self.recipe = PseudoClickRecipe(**(pseudo_clicks or {}))

    def clicks(self) -> Iterator[Click]:
        yield from title_clicks(read_titles(self.path), self.recipe, url_scheme=self.name, source=str(self.path))


def default_output(folder: Path, seed: int) -> Path:
    cache = Path(os.environ.get("LIT_IR_CACHE", Path.home() / ".cache" / "lit_ir"))
    return cache / "pseudo_clicks" / f"{folder.resolve().name}-seed{seed}.tsv"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a BEIR folder (its corpus.jsonl is read, nothing else)")
    parser.add_argument("--out", type=Path, help="the click log to write (default: in the cache, see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries-per-doc", type=int, default=PseudoClickRecipe.queries_per_doc)
    parser.add_argument("--min-words", type=int, default=PseudoClickRecipe.min_words)
    parser.add_argument("--max-words", type=int, default=PseudoClickRecipe.max_words)
    parser.add_argument("--url-scheme", help="urls are <scheme>://<doc id> (default: the folder's name)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = PseudoClickRecipe(args.queries_per_doc, args.min_words, args.max_words, args.seed)
    titles = read_titles(args.folder)
    clicks = title_clicks(titles, recipe, url_scheme=args.url_scheme or args.folder.resolve().name,
                          source=str(args.folder))
    out = write_clicks(clicks, args.out or default_output(args.folder, args.seed))
    print(f"{out}: {summary(clicks, len(titles))}")
    return out


if __name__ == "__main__":
    main()
