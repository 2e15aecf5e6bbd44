import numpy as np
import pytest

from lit_ir.data.trec import rank_documents, read_qrels, read_run, write_qrels, write_run
from lit_ir.errors import InputError


def write_text(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_run_round_trip_keeps_exact_scores(tmp_path):
    run = {"q1": {"d1": 0.1 + 0.2, "d2": -3.5e-12, "d3": 7.0}, "q2": {"d9": 1.0}}
    path = write_run(run, tmp_path / "run.trec")
    assert read_run(path) == run


def test_write_run_ranks_by_score_then_doc_id_like_trec_eval(tmp_path):
    # numpy scores (what a model returns) are written as plain numbers
    run = {"q1": {"b": np.float32(0.5), "a": np.float32(0.5), "c": np.float32(2.0)}}
    path = write_run(run, tmp_path / "run.trec", tag="test")
    assert path.read_text().splitlines() == [
        "q1 Q0 c 1 2.0 test",
        "q1 Q0 b 2 0.5 test",
        "q1 Q0 a 3 0.5 test",
    ]
    assert [docid for docid, _ in rank_documents({"b": 0.5, "a": 0.5, "c": 2.0})] == ["c", "b", "a"]


def test_write_run_depth_keeps_the_top_documents(tmp_path):
    run = {"q1": {f"d{i}": float(i) for i in range(10)}}
    written = read_run(write_run(run, tmp_path / "run.trec", depth=3))
    assert written == {"q1": {"d9": 9.0, "d8": 8.0, "d7": 7.0}}


def test_write_run_leaves_no_temporary_file(tmp_path):
    write_run({"q1": {"d1": 1.0}}, tmp_path / "run.trec")
    assert [p.name for p in tmp_path.iterdir()] == ["run.trec"]


@pytest.mark.parametrize("run", [{"q 1": {"d1": 1.0}}, {"q1": {"d\t1": 1.0}}, {"": {"d1": 1.0}}])
def test_write_run_rejects_ids_the_format_cannot_hold(tmp_path, run):
    with pytest.raises(InputError, match="whitespace"):
        write_run(run, tmp_path / "run.trec")
    assert not (tmp_path / "run.trec").exists()


def test_qrels_round_trip_trec(tmp_path):
    qrels = {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": -1}}
    path = write_qrels(qrels, tmp_path / "qrels.txt")
    assert path.read_text().splitlines() == ["q1 0 d1 2", "q1 0 d2 0", "q2 0 d3 -1"]
    assert read_qrels(path) == qrels
    assert read_qrels(path, format="trec") == qrels


def test_read_beir_qrels_with_header(tmp_path):
    path = write_text(tmp_path, "test.tsv", "query-id\tcorpus-id\tscore\nq1\tdoc 1\t1\nq1\td2\t0\n\nq2\td3\t2\n")
    expected = {"q1": {"doc 1": 1, "d2": 0}, "q2": {"d3": 2}}
    assert read_qrels(path) == expected
    assert read_qrels(path, format="beir") == expected


def test_blank_lines_are_skipped_and_empty_files_read_as_empty(tmp_path):
    assert read_run(write_text(tmp_path, "run.trec", "\nq1 Q0 d1 1 1.5 t\n\n")) == {"q1": {"d1": 1.5}}
    assert read_run(write_text(tmp_path, "empty.trec", "")) == {}
    assert read_qrels(write_text(tmp_path, "empty.qrels", "")) == {}


MALFORMED = [
    # (reader, file text, 1-based number of the bad line, bad line, words in the reason)
    (read_run, "q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 1.0\n", 2, "q1 Q0 d2 2 1.0", "6 columns"),
    (read_run, "q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 high t\n", 2, "q1 Q0 d2 2 high t", "score 'high'"),
    (read_run, "q1 Q0 d1 first 1.0 t\n", 1, "q1 Q0 d1 first 1.0 t", "rank 'first'"),
    (read_run, "q1 Q0 d1 1 nan t\n", 1, "q1 Q0 d1 1 nan t", "NaN"),
    (read_run, "q1 Q0 d1 1 2.0 t\nq2 Q0 d1 1 1.0 t\n\nq1 Q0 d1 2 1.0 t\n", 4, "q1 Q0 d1 2 1.0 t", "first on line 1"),
    (read_qrels, "q1 0 d1 1\nq1 0 d2\n", 2, "q1 0 d2", "4 columns"),
    (read_qrels, "q1 0 d1 1\nq1 0 d2 1.5\n", 2, "q1 0 d2 1.5", "grade '1.5'"),
    (read_qrels, "q1 0 d1 1\nq1 0 d1 0\n", 2, "q1 0 d1 0", "duplicate"),
    (read_qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\n", 3, "q1\\td1", "3 columns"),
    (read_qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\tyes\n", 3, "q1\\td2\\tyes", "grade 'yes'"),
    (read_qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", 3, "q1\\td1\\t2", "first on line 2"),
]


@pytest.mark.parametrize(("reader", "text", "number", "line", "reason"), MALFORMED)
def test_malformed_line_names_file_line_number_and_line(tmp_path, reader, text, number, line, reason):
    path = write_text(tmp_path, "input.txt", text)
    with pytest.raises(InputError) as error:
        reader(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{number}: ")
    assert repr(line.replace("\\t", "\t")) in message
    assert reason in message


def test_unknown_qrels_format_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown qrels format"):
        read_qrels(write_text(tmp_path, "q.txt", "q1 0 d1 1\n"), format="csv")


def test_header_less_beir_qrels_keep_a_first_line_with_a_decimal_grade(tmp_path):
    # pandas and other tools write integral grades as "2.0"; such a first line is data, not a header
    path = write_text(tmp_path, "dev.tsv", "q1\td1\t2.0\nq1\td2\t0\nq2\td3\t1.0\n")
    assert read_qrels(path) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    assert read_qrels(write_text(tmp_path, "dev.trec", "q1 0 d1 2.0\n")) == {"q1": {"d1": 2}}


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore", "qid\tdocid\trelevance", "Query_ID\tDoc_ID\tGrade"])
def test_known_qrels_headers_are_skipped(tmp_path, header):
    assert read_qrels(write_text(tmp_path, "q.tsv", f"{header}\nq1\td1\t1\n")) == {"q1": {"d1": 1}}


def test_a_first_line_that_is_neither_data_nor_a_known_header_is_an_error(tmp_path):
    path = write_text(tmp_path, "q.tsv", "q1\td1\thigh\nq1\td2\t1\n")
    with pytest.raises(InputError, match=rf"{path}:1: grade 'high' is not an integer"):
        read_qrels(path)
    path = write_text(tmp_path, "q.tsv", "q1\td1\t2.5\n")
    with pytest.raises(InputError, match=rf"{path}:1: grade '2.5' is not an integer"):
        read_qrels(path)
