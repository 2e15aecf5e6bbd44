"""experiments/sir/table.py: Tables 2-3 from run folders, with paired t-tests against the V0 run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "sir" / "table.py"
spec = importlib.util.spec_from_file_location("sir_table", SCRIPT)
table = importlib.util.module_from_spec(spec)
sys.modules["sir_table"] = table  # dataclasses look their module up while the script loads
spec.loader.exec_module(table)


def fake_run(root: Path, name: str, strategy: str, selection, levels: list[int], mrr: list[float]) -> None:
    """A finished run folder as lit_ir.train writes it: config.yaml, metrics.json, per_query.csv."""
    folder = root / name / "metrics" / "dev"
    folder.mkdir(parents=True)
    (root / name / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"strategy": strategy, "selection": selection, "levels": levels}}))
    queries = [f"q{i}" for i in range(len(mrr))]
    frame = pd.DataFrame({"system": ["first_stage"] * len(mrr) + ["reranker"] * len(mrr),
                          "query_id": queries * 2, "mrr@10": [0.1] * len(mrr) + mrr})
    frame.to_csv(folder / "per_query.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(
        {"metrics": {"first_stage": {"mrr@10": 0.1}, "reranker": {"mrr@10": sum(mrr) / len(mrr)}}}))


def test_tables_rows_labels_and_t_tests(tmp_path, monkeypatch, capsys):
    v0, v3 = [0.2, 0.3, 0.1, 0.5, 0.4], [0.9, 0.8, 0.7, 1.0, 0.9]
    v1 = [0.25, 0.3, 0.1, 0.45, 0.4]
    fake_run(tmp_path, "sir_v0", "v0", [], [16], v0)
    fake_run(tmp_path, "sir_v3", "v3", "top", [16, 8, 4], v3)
    fake_run(tmp_path, "sir_v1", "v1", "top", [16, 8, 4], v1)
    fake_run(tmp_path, "sir_v1_random", "v1", ["random", "random"], [16, 8, 4], v1)
    fake_run(tmp_path, "sir_v4_4levels", "v4", "top", [16, 8, 4, 2], v3)
    monkeypatch.setattr(sys, "argv", ["table.py", str(tmp_path), "--metrics", "mrr@10"])
    table.main()

    table3 = (tmp_path / "table3.md").read_text().splitlines()
    rows = [line.split(" | ")[0].lstrip("| ") for line in table3 if line.startswith("| ") and "---" not in line]
    assert rows == ["model", "first stage", "V0 random negatives (16)", "V1 Random 4", "V1 Top 4", "V3 Top 4",
                    "V4 Top 2"]
    p_v3 = stats.ttest_rel(v3, v0).pvalue
    v3_row = next(line for line in table3 if line.startswith("| V3 Top 4"))
    assert f"{sum(v3) / 5:.4f}†" in v3_row and f"{p_v3:.3f}" in v3_row  # significant, marked
    v1_row = next(line for line in table3 if line.startswith("| V1 Top 4"))
    assert "†" not in v1_row and f"{stats.ttest_rel(v1, v0).pvalue:.3f}" in v1_row
    # Table 2: V1/V2 Random, V3/V4 Top, 3 levels only
    table2 = (tmp_path / "table2.md").read_text()
    assert "V1 Random 4" in table2 and "V1 Top 4" not in table2 and "V4 Top 2" not in table2
    assert "V3 Top 4" in capsys.readouterr().out


def test_missing_baseline_or_metric_fails_clearly(tmp_path, monkeypatch):
    fake_run(tmp_path, "sir_v3", "v3", "top", [16, 8, 4], [0.5, 0.6])
    monkeypatch.setattr(sys, "argv", ["table.py", str(tmp_path), "--metrics", "mrr@10"])
    with pytest.raises(SystemExit, match="exactly one baseline"):
        table.main()
    monkeypatch.setattr(sys, "argv", ["table.py", str(tmp_path), "--metrics", "ndcg@20"])
    with pytest.raises(SystemExit, match="ndcg@20"):
        table.main()
