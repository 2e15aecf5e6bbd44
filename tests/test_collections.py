"""Collections: BEIR folders, TSV files, ir_datasets ids (local registrations and the offline fail-fast), and the
conf/collection configs."""

import json
import os
import tempfile
import time
import uuid
from pathlib import Path

# ir_datasets fixes each dataset's folder when it is imported, so its home must be set before the import.
os.environ["IR_DATASETS_HOME"] = str(Path(tempfile.gettempdir()) / "lit_ir-tests-ir_datasets")
os.environ["HF_HUB_OFFLINE"] = "1"

import ir_datasets  # noqa: E402
import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import get_class, instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from ir_datasets.datasets.msmarco_document import MsMarcoDocument  # noqa: E402
from ir_datasets.datasets.base import Dataset  # noqa: E402
from ir_datasets.formats import GenericDoc, TitleUrlTextDoc, TrecQrels, TsvDocs, TsvQueries  # noqa: E402
from ir_datasets.util import LocalDownload  # noqa: E402

from lit_ir.data.collections import BeirCollection, Click, check_validation_disjoint  # noqa: E402
from lit_ir.data.ir_datasets_collection import IrDatasetsCollection, doc_text, register_local_dataset  # noqa: E402
from lit_ir.data.tsv_collection import TsvCollection  # noqa: E402
from lit_ir.errors import CollectionUnavailableError, InputError  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


# --- BeirCollection -------------------------------------------------------------------------------------------


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    write(
        tmp_path / "corpus.jsonl",
        jsonl(
            {"_id": "d1", "title": "Wings", "text": "lift and drag"},
            {"_id": "d2", "title": "jet flow", "text": "jet flow in a nozzle"},  # Cranfield repeats the title
            {"_id": "d3", "text": "no title here"},
        ),
    )
    write(tmp_path / "queries.jsonl", jsonl({"_id": "q1", "text": "wing lift"}, {"_id": "q2", "text": "nozzle"}))
    write(tmp_path / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t0\n")
    write(tmp_path / "qrels" / "dev.tsv", "query-id\tcorpus-id\tscore\nq2\td2\t1\n")
    return tmp_path


def test_beir_reads_docs_queries_and_qrels_per_split(beir_dir: Path):
    collection = BeirCollection(beir_dir)
    docs = collection.docs()
    assert collection.splits() == ["dev", "train"]
    assert (len(docs), sorted(docs)) == (3, ["d1", "d2", "d3"])
    assert docs["d1"] == "Wings lift and drag"
    assert docs["d2"] == "jet flow in a nozzle"
    assert docs["d3"] == "no title here"
    assert "d1" in docs and "nope" not in docs
    assert collection.queries("train") == {"q1": "wing lift"}
    assert collection.queries("dev") == {"q2": "nozzle"}
    assert collection.qrels("train") == {"q1": {"d1": 2, "d3": 0}}


def test_beir_held_out_validation_is_a_disjoint_seeded_sample_of_train(tmp_path: Path):
    ids = [f"q{index}" for index in range(30)]
    write(tmp_path / "corpus.jsonl", jsonl({"_id": "d1", "text": "a doc"}))
    write(tmp_path / "queries.jsonl", jsonl(*({"_id": query_id, "text": f"query {query_id}"} for query_id in ids)))
    write(tmp_path / "qrels" / "train.tsv", "".join(f"{query_id}\td1\t1\n" for query_id in ids[:20]))
    write(tmp_path / "qrels" / "dev.tsv", "".join(f"{query_id}\td1\t1\n" for query_id in ids[20:]))
    collection = BeirCollection(tmp_path, held_out={"split": "train", "size": 5, "seed": 3})
    assert collection.splits() == ["dev", "train", "train_fit", "train_val"]
    fit, val = set(collection.queries("train_fit")), set(collection.queries("train_val"))
    assert len(val) == 5 and len(fit) == 15 and not fit & val and fit | val == set(ids[:20])
    assert collection.qrels("train_val") == {query_id: {"d1": 1} for query_id in val}
    # the same seed draws the same queries; another seed draws others
    assert set(BeirCollection(tmp_path, held_out={"split": "train", "size": 5, "seed": 3}).queries("train_val")) == val
    assert set(BeirCollection(tmp_path, held_out={"split": "train", "size": 5, "seed": 4}).queries("train_val")) != val
    check_validation_disjoint(collection, "train_val", ["dev"])
    with pytest.raises(InputError, match=r"'train_val' shares 5 queries with the test split 'train'"):
        check_validation_disjoint(collection, "train_val", ["dev", "train"])
    with pytest.raises(InputError, match="held_out.size must be between 1 and 19"):
        BeirCollection(tmp_path, held_out={"split": "train", "size": 20}).queries("train_val")
    with pytest.raises(InputError, match="held_out.split 'nope'"):
        BeirCollection(tmp_path, held_out={"split": "nope", "size": 2}).splits()


def test_beir_unknown_ids_and_splits_are_named(beir_dir: Path):
    collection = BeirCollection(beir_dir)
    with pytest.raises(InputError, match="unknown document id 'nope'"):
        collection.docs()["nope"]
    with pytest.raises(InputError, match="no split 'test'"):
        collection.qrels("test")


def test_beir_qrels_with_unknown_doc_id_names_file_and_id(beir_dir: Path):
    write(beir_dir / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td9\t1\n")
    with pytest.raises(InputError, match=r"test\.tsv: document id 'd9' \(query 'q1'\) is not in .*corpus\.jsonl"):
        BeirCollection(beir_dir).qrels("test")


def test_beir_qrels_with_unknown_query_id_names_file_and_id(beir_dir: Path):
    write(beir_dir / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(InputError, match=r"test\.tsv: query id 'q9' is not in .*queries\.jsonl"):
        BeirCollection(beir_dir).qrels("test")


def test_beir_malformed_json_line_names_file_and_line(beir_dir: Path):
    write(beir_dir / "corpus.jsonl", jsonl({"_id": "d1", "text": "ok"}) + '{"_id": "d2", "text": \n')
    with pytest.raises(InputError, match=r"corpus\.jsonl:2: invalid JSON"):
        BeirCollection(beir_dir).docs()


def test_beir_duplicate_doc_id_names_line(beir_dir: Path):
    write(beir_dir / "corpus.jsonl", jsonl({"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}))
    with pytest.raises(InputError, match=r"corpus\.jsonl:2: duplicate document id 'd1'"):
        BeirCollection(beir_dir).docs()


def test_beir_empty_corpus_is_an_error(beir_dir: Path):
    write(beir_dir / "corpus.jsonl", "\n")
    with pytest.raises(InputError, match="no documents"):
        BeirCollection(beir_dir).docs()


def test_beir_clicks(beir_dir: Path):
    with pytest.raises(InputError, match="has no click log"):
        list(BeirCollection(beir_dir).clicks())
    write(beir_dir / "clicks.tsv", "1\twing lift\td1\thttp://a/1\n2\tnozzle\td2\thttp://a/2\n")
    assert list(BeirCollection(beir_dir).clicks()) == [
        Click("1", "wing lift", "d1", "http://a/1"),
        Click("2", "nozzle", "d2", "http://a/2"),
    ]
    write(beir_dir / "clicks.tsv", "1\twing lift\td1\thttp://a/1\n2\tnozzle\td2\n")
    with pytest.raises(InputError, match=r"clicks\.tsv:2: expected 4 tab-separated columns"):
        list(BeirCollection(beir_dir).clicks())


# --- TsvCollection --------------------------------------------------------------------------------------------


@pytest.fixture
def tsv_files(tmp_path: Path) -> dict:
    return {
        "docs": write(tmp_path / "docs.tsv", "d1\tWings\tlift and drag\nd2\tjet flow\tjet flow in a nozzle\n"),
        "splits": {
            "train": {
                "queries": write(tmp_path / "train.queries.tsv", "q1\twing lift\nq2\tnozzle\n"),
                "qrels": write(tmp_path / "train.qrels", "q1 0 d1 2\nq1 0 d2 0\n"),
            },
            "dev": {
                "queries": write(tmp_path / "dev.queries.tsv", "q3\tjet\n"),
                "qrels": write(tmp_path / "dev.qrels", "q3 0 d2 1\n"),
            },
        },
    }


def test_tsv_reads_docs_queries_and_qrels(tsv_files: dict):
    collection = TsvCollection("mine", **tsv_files)
    assert collection.splits() == ["train", "dev"]
    assert dict(collection.docs()) == {"d1": "Wings lift and drag", "d2": "jet flow in a nozzle"}
    assert collection.queries("train") == {"q1": "wing lift", "q2": "nozzle"}
    assert collection.qrels("train") == {"q1": {"d1": 2, "d2": 0}}
    assert collection.qrels("dev") == {"q3": {"d2": 1}}


def test_tsv_two_column_docs(tsv_files: dict):
    write(tsv_files["docs"], "d1\tlift and drag\nd2\tnozzle\n")
    assert TsvCollection("mine", **tsv_files).docs()["d1"] == "lift and drag"


def test_tsv_docs_line_with_other_column_count_names_file_and_line(tsv_files: dict):
    write(tsv_files["docs"], "d1\tWings\tlift\nd2\tnozzle\n")
    with pytest.raises(InputError, match=r"docs\.tsv:2: expected 3 tab-separated columns like the first line"):
        TsvCollection("mine", **tsv_files).docs()
    write(tsv_files["docs"], "d1\n")
    with pytest.raises(InputError, match=r"docs\.tsv:1: expected 2 or 3 tab-separated columns"):
        TsvCollection("mine", **tsv_files).docs()


def test_tsv_malformed_query_line_names_file_and_line(tsv_files: dict):
    write(tsv_files["splits"]["train"]["queries"], "q1\twing lift\n\nq2 nozzle\n")
    with pytest.raises(InputError, match=r"train\.queries\.tsv:3: expected 2 tab-separated columns"):
        TsvCollection("mine", **tsv_files).queries("train")


def test_tsv_duplicate_ids_name_file_and_line(tsv_files: dict):
    write(tsv_files["docs"], "d1\ta\td\nd1\tb\te\n")
    with pytest.raises(InputError, match=r"docs\.tsv:2: duplicate document id 'd1'"):
        TsvCollection("mine", **tsv_files).docs()
    write(tsv_files["splits"]["dev"]["queries"], "q3\tjet\nq3\tjet again\n")
    with pytest.raises(InputError, match=r"dev\.queries\.tsv:2: duplicate query id 'q3'"):
        TsvCollection("mine", **tsv_files).queries("dev")


def test_tsv_qrels_with_unknown_ids_name_file_and_id(tsv_files: dict):
    write(tsv_files["splits"]["dev"]["qrels"], "q3 0 d9 1\n")
    with pytest.raises(InputError, match=r"dev\.qrels: document id 'd9' \(query 'q3'\) is not in .*docs\.tsv"):
        TsvCollection("mine", **tsv_files).qrels("dev")
    write(tsv_files["splits"]["dev"]["qrels"], "q1 0 d1 1\n")  # q1 is a train query
    with pytest.raises(InputError, match=r"dev\.qrels: query id 'q1' is not in .*dev\.queries\.tsv"):
        TsvCollection("mine", **tsv_files).qrels("dev")


def test_tsv_malformed_qrels_line_names_file_and_line(tsv_files: dict):
    write(tsv_files["splits"]["dev"]["qrels"], "q3 0 d2 1\nq3 0 d1\n")
    with pytest.raises(InputError, match=r"dev\.qrels:2"):
        TsvCollection("mine", **tsv_files).qrels("dev")


def test_tsv_checks_files_and_split_keys_up_front(tsv_files: dict, tmp_path: Path):
    with pytest.raises(InputError, match=r"file .*missing\.tsv does not exist"):
        TsvCollection("mine", docs=tmp_path / "missing.tsv", splits=tsv_files["splits"])
    with pytest.raises(InputError, match="split 'dev' needs exactly the keys queries and qrels"):
        TsvCollection("mine", docs=tsv_files["docs"], splits={"dev": {"queries": tsv_files["docs"]}})


# --- IrDatasetsCollection -------------------------------------------------------------------------------------


@pytest.fixture
def local_ids(tmp_path: Path) -> dict[str, str]:
    """Two tiny splits over one corpus, registered with ir_datasets under fresh ids."""
    docs = write(tmp_path / "docs.tsv", "d1\twing lift and drag\nd2\tjet flow in a nozzle\nd3\tboundary layer\n")
    prefix = f"lit-ir-test-{uuid.uuid4().hex[:8]}"
    train_queries = write(tmp_path / "train.tsv", "q1\twing lift\n")
    train_qrels = write(tmp_path / "train.qrels", "q1 0 d1 2\nq1 0 d3 -1\n")
    dev_queries = write(tmp_path / "dev.tsv", "q2\tnozzle\nq3\tunjudged\n")
    dev_qrels = write(tmp_path / "dev.qrels", "q2 0 d2 1\n")
    return {
        "train": register_local_dataset(f"{prefix}/train", docs, train_queries, train_qrels),
        "dev": register_local_dataset(f"{prefix}/dev", docs, dev_queries, dev_qrels),
    }


def test_ir_datasets_local_registration(local_ids: dict[str, str]):
    collection = IrDatasetsCollection("tiny", local_ids)
    docs = collection.docs()
    assert collection.splits() == ["train", "dev"]
    assert (len(docs), list(docs)) == (3, ["d1", "d2", "d3"])
    assert docs["d2"] == "jet flow in a nozzle"
    assert "d3" in docs and "nope" not in docs
    assert collection.queries("dev") == {"q2": "nozzle", "q3": "unjudged"}
    assert collection.qrels("train") == {"q1": {"d1": 2, "d3": 0}}  # -1 = judged non-relevant -> 0
    with pytest.raises(InputError, match=r"unknown document id 'nope' in collection tiny \(lit-ir-test-.*/train\)"):
        docs["nope"]



def test_the_docs_fingerprint_is_their_content_whatever_the_source(local_ids: dict[str, str], tmp_path: Path):
    # the same texts from ir_datasets (streamed in one pass) and from a TSV file: the same cache key
    streamed = IrDatasetsCollection("tiny", local_ids).docs()
    assert list(streamed.items()) == [("d1", "wing lift and drag"), ("d2", "jet flow in a nozzle"),
                                      ("d3", "boundary layer")]
    queries, qrels = write(tmp_path / "q.tsv", "q1\twing\n"), write(tmp_path / "q.qrels", "q1 0 d1 1\n")
    splits = {"dev": {"queries": queries, "qrels": qrels}}
    same = TsvCollection("other", write(tmp_path / "same.tsv", "d1\twing lift and drag\nd2\tjet flow in a "
                                        "nozzle\nd3\tboundary layer\n"), splits).docs()
    changed = TsvCollection("tiny", write(tmp_path / "changed.tsv", "d1\twing lift and drag\nd2\tjet flow in a "
                                          "nozzle\nd3\tboundary layers\n"), splits).docs()
    assert streamed.fingerprint() == same.fingerprint() != changed.fingerprint()


@pytest.fixture
def nested_ids(tmp_path: Path) -> dict[str, str]:
    """A full dev set of 12 judged queries and its official subset 'small' (q0-q3), as MS MARCO's dev/small is a
    subset of dev/judged; and a test set with no qrels in ir_datasets (as TripClick's)."""
    docs = write(tmp_path / "docs.tsv", "d1\twing lift\nd2\tjet flow\n")
    prefix = f"lit-ir-test-{uuid.uuid4().hex[:8]}"
    full = [f"q{index}" for index in range(12)]
    def split(name: str, ids: list[str]) -> str:
        queries = write(tmp_path / f"{name}.tsv", "".join(f"{q}\tquery {q}\n" for q in ids))
        qrels = write(tmp_path / f"{name}.qrels", "".join(f"{q} 0 d{1 + int(q[1:]) % 2} 1\n" for q in ids))
        return register_local_dataset(f"{prefix}/{name}", docs, queries, qrels)
    test_id = f"{prefix}/test"
    ir_datasets.registry.register(test_id, Dataset(
        TsvDocs(LocalDownload(docs)), TsvQueries(LocalDownload(write(tmp_path / "test.tsv", "t1\tjet\nt2\twing\n")))))
    return {"judged": split("judged", full), "small": split("small", full[:4]), "test": test_id}


def test_ir_datasets_held_out_validation_excludes_the_reported_queries(nested_ids: dict[str, str]):
    """MS MARCO dev 10k, in small: validation queries drawn from the judged dev set, never from dev/small."""
    splits = {"dev": nested_ids["small"], "dev_judged": nested_ids["judged"]}
    collection = IrDatasetsCollection("nested", splits, held_out={"split": "dev_judged", "size": 5, "exclude": ["dev"]})
    assert collection.splits() == ["dev", "dev_judged", "dev_judged_fit", "dev_judged_val"]
    val, fit = collection.queries("dev_judged_val"), collection.queries("dev_judged_fit")
    assert len(val) == 5 and len(fit) == 3 and not set(val) & set(fit)
    assert not set(val) & set(collection.queries("dev")) and set(val) | set(fit) == {f"q{i}" for i in range(4, 12)}
    assert val == {q: f"query {q}" for q in val} and collection.qrels("dev_judged_val").keys() == val.keys()
    assert collection.dataset_id("dev_judged_val") == nested_ids["judged"]
    check_validation_disjoint(collection, "dev_judged_val", ["dev"])
    with pytest.raises(InputError, match=r"'dev_judged' shares 4 queries with the test split 'dev'"):
        check_validation_disjoint(collection, "dev_judged", ["dev"])  # the whole dev set would not do
    same = IrDatasetsCollection("nested", splits, held_out={"split": "dev_judged", "size": 5, "exclude": "dev"})
    assert same.queries("dev_judged_val") == val  # a seeded draw: the same validation set every run
    with pytest.raises(InputError, match=r"held_out.exclude 'nope' is not one of its splits"):
        IrDatasetsCollection("nested", splits, held_out={"split": "dev_judged", "size": 5, "exclude": ["nope"]})
    with pytest.raises(InputError, match=r"held_out.size must be between 1 and 7 .* outside \['dev'\]"):
        IrDatasetsCollection("nested", splits, held_out={"split": "dev_judged", "size": 8, "exclude": ["dev"]}
                             ).queries("dev_judged_val")


def test_ir_datasets_local_qrels_for_a_split_without_them(nested_ids: dict[str, str], tmp_path: Path):
    path = tmp_path / "qrels" / "qrels.raw.head.test.txt"
    collection = IrDatasetsCollection("nested", {"test": nested_ids["test"]}, qrels_files={"test": path})
    with pytest.raises(CollectionUnavailableError, match=r"qrels of split 'test' .* are not in ir_datasets and not "
                                                         r"at .*qrels\.raw\.head\.test\.txt\. Put them there"):
        collection.qrels("test")
    write(path, "t1 0 d2 1\nt2 0 d1 -2\n")
    assert collection.qrels("test") == {"t1": {"d2": 1}, "t2": {"d1": 0}}
    write(path, "t9 0 d2 1\n")
    with pytest.raises(InputError, match=r"qrels\.raw\.head\.test\.txt: query id 't9' .* is not a query of"):
        collection.qrels("test")
    with pytest.raises(InputError, match=r"qrels_files are given for \['tset'\]"):
        IrDatasetsCollection("nested", {"test": nested_ids["test"]}, qrels_files={"tset": path})


def test_tsv_held_out_validation(tsv_files: dict, tmp_path: Path):
    write(tsv_files["splits"]["train"]["qrels"], "q1 0 d1 2\nq2 0 d2 1\nq4 0 d1 1\n")
    write(tsv_files["splits"]["train"]["queries"], "q1\twing lift\nq2\tnozzle\nq4\tdrag\n")
    collection = TsvCollection("mine", docs=tsv_files["docs"], splits=tsv_files["splits"],
                               held_out={"split": "train", "size": 1})
    assert collection.splits() == ["train", "dev", "train_fit", "train_val"]
    val, fit = collection.qrels("train_val"), collection.qrels("train_fit")
    assert len(val) == 1 and len(fit) == 2 and {**val, **fit} == collection.qrels("train")
    assert collection.queries("train_val").keys() == val.keys()


def test_ir_datasets_clicks_from_a_qrels_dataset(local_ids: dict[str, str]):
    collection = IrDatasetsCollection("tiny", local_ids, clicks_id=local_ids["dev"])
    assert list(collection.clicks()) == [Click("q2", "nozzle", "d2", "")]  # GenericDoc has no url
    with pytest.raises(InputError, match="has no click log"):
        next(IrDatasetsCollection("tiny", local_ids).clicks())


def test_ir_datasets_clicks_take_the_url_from_the_clicked_doc(tmp_path: Path):
    clicks_id = f"lit-ir-test-{uuid.uuid4().hex[:8]}/clicks"
    docs = write(tmp_path / "docs.tsv", "d1\tWings\thttp://u/1\tlift\nd2\tJets\thttp://u/2\tnozzle\n")
    qrels = write(tmp_path / "clicks.qrels", "q1 0 d2 1\nq1 0 d1 1\n")
    ir_datasets.registry.register(
        clicks_id,
        Dataset(
            TsvDocs(LocalDownload(docs), doc_cls=TitleUrlTextDoc),
            TsvQueries(LocalDownload(write(tmp_path / "q.tsv", "q1\tjet\n"))),
            TrecQrels(LocalDownload(qrels), qrels_defs={}),
        ),
    )
    collection = IrDatasetsCollection("clicks", {"train": clicks_id}, clicks_id=clicks_id)
    assert list(collection.clicks()) == [Click("q1", "jet", "d2", "http://u/2"), Click("q1", "jet", "d1", "http://u/1")]
    write(qrels, "q1 0 d9 1\n")
    with pytest.raises(InputError, match=r"click on document id 'd9', which is not in the corpus"):
        list(collection.clicks())


def test_ir_datasets_register_errors(local_ids: dict[str, str], tmp_path: Path):
    docs = tmp_path / "docs.tsv"
    with pytest.raises(InputError, match="already registered"):
        register_local_dataset(local_ids["dev"], docs, docs, docs)
    with pytest.raises(InputError, match=r"qrels file .*nope\.qrels does not exist"):
        register_local_dataset("lit-ir-test-other", docs, docs, tmp_path / "nope.qrels")


def test_ir_datasets_bad_config_fails_at_construction():
    with pytest.raises(InputError, match=r"unknown ir_datasets id 'msmarco-passage/dev/smal'; close ids: .*/dev/small'"):
        IrDatasetsCollection("x", {"dev": "msmarco-passage/dev/smal"})
    with pytest.raises(InputError, match=r"no text field 'title'; choose query_field from \['text'\]"):
        IrDatasetsCollection("x", {"dev": "msmarco-passage/dev/small"}, query_field="title")
    with pytest.raises(InputError, match=r"split 'test_head' \(tripclick/test/head\) has no qrels"):
        IrDatasetsCollection("x", {"test_head": "tripclick/test/head"}).qrels("test_head")


def test_ir_datasets_query_field_defaults_to_title_for_trec_topics():
    assert IrDatasetsCollection("x", {"f1": "disks45/nocr/trec-robust-2004/fold1"})._query_field(
        "disks45/nocr/trec-robust-2004/fold1"
    ) == "title"


@pytest.mark.parametrize(
    "doc, text",
    [
        (GenericDoc("1", "plain text"), "plain text"),
        (MsMarcoDocument("D1", "http://x", "A title", "the body"), "A title the body"),
        (TitleUrlTextDoc("2", "Trial", "http://y", "results of the trial"), "Trial results of the trial"),
    ],
)
def test_doc_text_joins_title_and_body(doc, text: str):
    assert doc_text(doc) == text


@pytest.mark.parametrize("read", [lambda c: c.queries("dev"), lambda c: c.docs()["7"]], ids=["queries", "docs"])
def test_ir_datasets_offline_fails_fast_saying_how_to_provide_files(read):
    collection = IrDatasetsCollection("msmarco-passage", {"dev": "msmarco-passage/dev/small"})
    start = time.perf_counter()
    with pytest.raises(CollectionUnavailableError) as caught:
        read(collection)
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert "'msmarco-passage/dev/small' is not available locally" in message
    assert "would download https://" in message
    assert f"IR_DATASETS_HOME ({ir_datasets.util.home_path() / 'msmarco-passage'})" in message
    assert "https://ir-datasets.com/msmarco-passage.html#msmarco-passage/dev/small" in message
    assert "collection.source.download=true" in message and "collection=local_tsv" in message


def test_ir_datasets_manual_download_dataset_names_the_expected_path():
    collection = IrDatasetsCollection("tripclick", {"train": "tripclick/train/head/dctr"})
    with pytest.raises(CollectionUnavailableError, match=r"no file at .*tripclick/benchmark\.tar\.gz"):
        collection.qrels("train")


# --- conf/collection ------------------------------------------------------------------------------------------

COLLECTION_CONFIGS = sorted(path.stem for path in (CONF_DIR / "collection").glob("*.yaml"))
REQUIRED_KEYS = {"source", "train_split", "val_split", "test_splits", "metrics", "relevance_level", "relevance_levels"}


def split_names(value) -> list[str]:
    """A train_split / val_split value: null, a split name, or a list of names (Robust04's folds)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _family(dataset_id: str) -> str:
    """The query set an ir_datasets id draws from: msmarco-passage/dev/small and .../dev/judged share one."""
    return "/".join(dataset_id.split("/")[:2])


@pytest.mark.parametrize("name", COLLECTION_CONFIGS)
def test_collection_config_composes_and_validates_on_queries_it_does_not_report(name: str):
    """Checkpoints are selected on val_split: never a test split, nor (statically, without downloading) one drawn
    from a test split's queries unless those are excluded; train.py checks the query ids themselves at run time."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = compose(overrides=[f"+collection={name}"]).collection
    assert REQUIRED_KEYS <= set(config)
    assert config.metrics and config.test_splits
    train, val, tests = split_names(config.train_split), config.val_split, list(config.test_splits)
    assert val is None or val not in tests, f"{name}: validates on the test split {val!r}"
    assert not set(train) & {val, *tests}, f"{name}: trains on a split it validates or tests on"
    source_class = get_class(config.source._target_)
    if source_class is not IrDatasetsCollection:
        shared = REPO_ROOT.parent / "shared"
        if "${paths.shared_dir}" in OmegaConf.to_container(config.source).get("path", "") and shared.is_dir():
            # the real offline collections: their splits exist and validation never sees a reported query
            source = OmegaConf.to_container(config.source)
            source["path"] = source["path"].replace("${paths.shared_dir}", str(shared))
            collection = instantiate(source)
            check_validation_disjoint(collection, val, tests)
        return  # folds are disjoint by construction; other local folders are the user's (???)
    collection = instantiate(config.source)  # resolves every ir_datasets id; downloads nothing
    for split in [*train, *([val] if val else []), *tests, *config.relevance_levels,
                  *(config.get("relevance_readings") or {})]:
        assert split in collection.splits(), f"{name}: split {split!r} is not in source.splits"
    local_qrels = dict(config.source.get("qrels_files") or {})
    for split in [*train, *([val] if val else []), *tests]:
        has_qrels = split in local_qrels or ir_datasets.load(collection.dataset_id(split)).has_qrels()
        assert has_qrels, f"{name}: {split} has no qrels"
    if val is None:
        return
    held_out = config.source.get("held_out")
    for split in tests:
        assert collection.dataset_id(split) != collection.dataset_id(val), f"{name}: {val} and {split} are one set"
        same_family = _family(collection.dataset_id(split)) == _family(collection.dataset_id(val))
        if held_out and val == f"{held_out.split}_val" and same_family:
            assert split in held_out.exclude, f"{name}: {val} is drawn from queries that {split} may share"
