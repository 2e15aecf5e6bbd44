"""The coarse-tuning paper's two-stage comparisons, chained in one process:

    pre-trained -> fine-tune                 (system `fine_only`, the baseline)
    pre-trained -> coarse-tune -> fine-tune  (`coarse`; ablations `mlm_only`, `qdpp_only`)

Each stage is an ordinary `lit_ir.train` run composed from the experiment configs (`coarse_<clicks>` and
`coarse_finetune_<target>`); the coarse run's exported folder becomes the fine-tune's `model.pretrained`.
Collections with cross-validation folds (Robust04, TREC-COVID, Cranfield) are fine-tuned once per rotation and the
test folds' reranked runs are merged, so every query is tested once and the systems are compared on all queries
with paired t-tests. A finished stage leaves `stage.json` and is skipped when the chain is run again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from lit_ir.data.folds import rotation
from lit_ir.data.trec import Qrels, Run, read_run
from lit_ir.errors import InputError
from lit_ir.evaluation import Comparison, compare_runs, print_table, split_protocol, write_metrics
from lit_ir.tracking.groups import log_to_group
from lit_ir.utils.hydra import CONFIG_DIR
from lit_ir.utils.io import atomic_write, write_json

log = logging.getLogger(__name__)
BASELINE = "fine_only"
# system -> overrides of the coarse stage (None: no coarse stage)
SYSTEMS: dict[str, list[str] | None] = {
    BASELINE: None,
    "coarse": [],
    "mlm_only": ["model.qdpp_weight=0"],
    "qdpp_only": ["model.mlm_weight=0"],
}


@dataclass(frozen=True)
class Target:
    """A fine-tuning collection: its coarse-tuning and fine-tuning experiments and its number of CV folds."""

    coarse_experiment: str
    finetune_experiment: str
    n_folds: int | None  # None: the collection's own train/dev/test splits


TARGETS = {
    "toy": Target("coarse_toy", "coarse_finetune_toy", None),  # offline, seconds: the pipeline's tests
    "cranfield": Target("coarse_cranfield", "coarse_finetune_cranfield", 5),
    # a pseudo click log cut from SciFact's titles; fine-tuned on train_fit, selected on train_val, tested on dev
    "scifact": Target("coarse_scifact", "coarse_finetune_scifact", None),
    "robust04": Target("coarse_orcas", "coarse_finetune_robust04", 5),
    "trec_covid": Target("coarse_orcas", "coarse_finetune_trec_covid", 5),
    "trec_dl": Target("coarse_orcas", "coarse_finetune_trec_dl", None),
}


def compose_train(experiment: str, output_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The `train` config as `python -m lit_ir.train experiment=<experiment> <overrides>` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True, overrides=[
            f"experiment={experiment}", f"paths.root_dir={CONFIG_DIR.parent}", f"paths.output_dir={output_dir}",
            f"hydra.runtime.output_dir={output_dir}", *overrides])
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_stage(experiment: str, output_dir: Path, overrides: Sequence[str] = (), group: str | None = None) -> Path:
    """Run one `lit_ir.train` stage into `output_dir`, unless it already finished there with the same settings.
    `group`: the W&B group of the pipeline's runs (not a setting: a finished stage is reused under any group)."""
    marker = output_dir / "stage.json"
    settings = {"experiment": experiment, "overrides": list(overrides)}
    if marker.is_file():
        if json.loads(marker.read_text()) != settings:
            raise InputError(f"{output_dir} holds a finished stage with other settings ({marker}); "
                             f"use another output folder")
        log.info("stage done already: %s", output_dir)
        return output_dir
    from lit_ir.train import run  # imports Lightning (~10 s): only when a stage really runs

    output_dir.mkdir(parents=True, exist_ok=True)
    log.info("stage %s -> %s (%s)", experiment, output_dir, " ".join(overrides))
    run(compose_train(experiment, output_dir, [*overrides, *([f"run_group={group}"] if group else [])]))
    write_json(settings, marker)
    return output_dir


def coarse_stage(target: Target, system: str, coarse_root: Path, pretrained: str, overrides: Sequence[str],
                 group: str | None = None) -> Path:
    """Coarse-tune `pretrained` for `system` into `coarse_root/<system>`; return the exported model folder."""
    stage_dir = run_stage(target.coarse_experiment, coarse_root / system,
                          [f"model.pretrained={pretrained}", *SYSTEMS[system], *overrides], group)
    return stage_dir / "model"


def rotations(target: Target, selected: Sequence[int] | None = None) -> list[tuple[str, list[str]]]:
    """(name, split overrides) of each fine-tuning run: one per CV rotation, or one run on the given splits."""
    if target.n_folds is None:
        return [("splits", [])]
    folds = selected or range(1, target.n_folds + 1)
    result = []
    for fold in folds:
        splits = rotation(target.n_folds, fold)
        result.append((f"fold{fold}", [f"collection.train_split=[{','.join(splits['train_split'])}]",
                                       f"collection.val_split={splits['val_split']}",
                                       f"collection.test_splits=[{','.join(splits['test_splits'])}]"]))
    return result


def finetune_stages(target: Target, system_dir: Path, pretrained: str, overrides: Sequence[str],
                    selected_folds: Sequence[int] | None = None, group: str | None = None) -> list[Path]:
    return [run_stage(target.finetune_experiment, system_dir / name,
                      [f"model.pretrained={pretrained}", *split_overrides, *overrides], group)
            for name, split_overrides in rotations(target, selected_folds)]


def pipeline_group(out_dir: Path) -> str:
    """The W&B group of every stage a comparison or a sweep runs into `out_dir` (and of its tables and plots)."""
    return f"coarse_tuning:{out_dir.name}"


def _stage_config(stage_dir: Path) -> DictConfig:
    return OmegaConf.load(stage_dir / "config.yaml")


def result_group(split: str) -> str:
    """Test folds of CV rotations are merged into one group, `cv`; other test splits stay apart."""
    return "cv" if split.startswith("fold") else split


def merged_runs(stage_dirs: Sequence[Path], kind: str = "rerank") -> dict[str, Run]:
    """Test runs of the stages, merged per result group: `cv` for CV rotations (each query is in one test fold),
    else one group per test split. `kind`: rerank (the fine-tuned model) or first_stage (BM25)."""
    groups: dict[str, Run] = {}
    for stage_dir in stage_dirs:
        cfg = _stage_config(stage_dir)
        for split in cfg.collection.test_splits:
            path = Path(cfg.model.run_dir) / f"{split}.{kind}.trec"
            if not path.is_file():
                raise InputError(f"{stage_dir}: no {kind} run for test split {split!r} ({path} is missing)")
            run = groups.setdefault(result_group(split), {})
            for query_id, docs in read_run(path).items():
                if query_id in run:
                    raise InputError(f"{path}: query {query_id!r} is tested in more than one rotation")
                run[query_id] = docs
    return groups


def merged_qrels(stage_dirs: Sequence[Path]) -> dict[str, Qrels]:
    """The qrels of the test splits, per result group (as `merged_runs`)."""
    groups: dict[str, Qrels] = {}
    # every rotation reads the same collection; only the split roles differ
    collection = instantiate(_stage_config(stage_dirs[0]).collection.source, _convert_="all")
    for stage_dir in stage_dirs:
        cfg = _stage_config(stage_dir)
        for split in cfg.collection.test_splits:
            groups.setdefault(result_group(split), {}).update(collection.qrels(split))
    return groups


def compare_systems(stage_dirs: dict[str, list[Path]], out_dir: Path, baseline: str = BASELINE,
                    console: Console | None = None) -> dict[str, Comparison]:
    """Merge each system's test runs (+ BM25's), compare them against `baseline` with paired t-tests, write
    `<out_dir>/<group>/metrics.json`, `per_query.csv` and `results.md`, and print the tables."""
    console = console or Console()
    some_dirs = stage_dirs[baseline] if baseline in stage_dirs else next(iter(stage_dirs.values()))
    cfg = _stage_config(some_dirs[0])
    qrels = merged_qrels(some_dirs)
    runs = {"bm25": merged_runs(some_dirs, "first_stage")}
    runs.update({system: merged_runs(dirs) for system, dirs in stage_dirs.items()})
    comparisons = {}
    for group, group_qrels in qrels.items():
        protocol = split_protocol(cfg.collection, group)
        comparison = compare_runs({system: by_group[group] for system, by_group in runs.items()}, group_qrels,
                                  protocol.metrics, baseline=baseline, relevance_level=protocol.relevance_level)
        console.rule(f"{cfg.collection.source.get('name', '') or out_dir.name} / {group}")
        print_table(comparison, console)
        write_metrics(comparison, out_dir / group, extra_meta={"group": group, "stages": {
            system: [str(path) for path in dirs] for system, dirs in stage_dirs.items()}})
        with atomic_write(out_dir / group / "results.md") as handle:
            handle.write(markdown_table(comparison))
        comparisons[group] = comparison
    log_to_group(OmegaConf.to_container(cfg), f"results {out_dir.parent.name}", out_dir,
                 tables={f"results/{group}": results_frame(comparison) for group, comparison in comparisons.items()})
    return comparisons


def results_frame(comparison: Comparison):
    """system x (metric, p_metric) as a DataFrame, the end-of-run table's layout."""
    import pandas as pd

    return pd.DataFrame([{"system": system, **means,
                          **{f"p_{m}": comparison.p_values.get(system, {}).get(m) for m in comparison.metrics}}
                         for system, means in comparison.means.items()])


def markdown_table(comparison: Comparison, digits: int = 4) -> str:
    """Means with the paired t-test p-value against the baseline in brackets."""
    header = "| system | " + " | ".join(comparison.metrics) + " |\n|---|" + "---:|" * len(comparison.metrics) + "\n"
    rows = []
    for system, means in comparison.means.items():
        cells = []
        for metric in comparison.metrics:
            p_value = comparison.p_values.get(system, {}).get(metric)
            note = "" if p_value is None or math.isnan(p_value) else f" (p={p_value:.3f})"
            cells.append(f"{means[metric]:.{digits}f}{note}")
        label = f"{system} (baseline)" if system == comparison.baseline else system
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows) + f"\n\n{comparison.num_queries} queries; paired two-sided t-test vs " \
                                      f"{comparison.baseline}.\n"


def write_tables(comparisons: dict[str, Comparison], path: Path, command: str | None = None) -> Path:
    """The comparisons' markdown tables in one file, a section per test group (`cv`, `dev`, ...)."""
    parts = [f"<!-- written by: {command} -->\n"] if command else []
    parts += [f"## {group}\n\n{markdown_table(comparison)}" for group, comparison in comparisons.items()]
    with atomic_write(path) as handle:
        handle.write("\n".join(parts))
    return path


def run_comparison(target_name: str, out_dir: Path, pretrained: str, systems: Sequence[str] = tuple(SYSTEMS),
                   coarse_overrides: Sequence[str] = (), finetune_overrides: Sequence[str] = (),
                   folds: Sequence[int] | None = None, coarse_root: Path | None = None) -> dict[str, Comparison]:
    """Fine-tune only vs coarse-tune + fine-tune (and ablations) on one target. Coarse stages go to
    `coarse_root/<system>` (default `out_dir/coarse`): share one root to coarse-tune on ORCAS once for Robust04,
    TREC-COVID and TREC DL."""
    target = TARGETS[target_name]
    unknown = [system for system in systems if system not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    stage_dirs, group = {}, pipeline_group(out_dir)
    for system in systems:
        start = pretrained
        if SYSTEMS[system] is not None:
            start = str(coarse_stage(target, system, coarse_root or out_dir / "coarse", pretrained, coarse_overrides,
                                     group))
        stage_dirs[system] = finetune_stages(target, out_dir / "finetune" / system, start, finetune_overrides, folds,
                                             group)
    return compare_systems(stage_dirs, out_dir / "results", baseline=BASELINE if BASELINE in systems else systems[0])


SWEEP_PARAMETERS = {"sample_rate": "data.sample_rate", "epochs": "trainer.max_epochs"}


def run_sweep(target_name: str, parameter: str, values: Sequence[str], out_dir: Path, pretrained: str,
              coarse_overrides: Sequence[str] = (), finetune_overrides: Sequence[str] = (),
              folds: Sequence[int] | None = None) -> Path:
    """Coarse-tune at each value of `parameter` (sample_rate | epochs), fine-tune each, and write a table
    (`sweep.csv`, `sweep.md`) and a plot (`sweep.png`) of the fine-tuned metrics and the held-out click metrics
    against the value, with fine-tuning only as the reference line."""
    import pandas as pd

    if parameter not in SWEEP_PARAMETERS:
        raise ValueError(f"unknown sweep parameter {parameter!r}; choose from {list(SWEEP_PARAMETERS)}")
    target, group = TARGETS[target_name], pipeline_group(out_dir)
    stage_dirs = {BASELINE: finetune_stages(target, out_dir / "finetune" / BASELINE, pretrained, finetune_overrides,
                                            folds, group)}
    held_out = {}
    for value in values:
        system, folder = f"{parameter}={value}", f"{parameter}-{value}"  # no '=' in paths: Hydra parses overrides
        coarse_dir = run_stage(target.coarse_experiment, out_dir / "coarse" / folder,
                               [f"model.pretrained={pretrained}", f"{SWEEP_PARAMETERS[parameter]}={value}",
                                *coarse_overrides], group)
        held_out[system] = json.loads((coarse_dir / "metrics" / "held_out_clicks.json").read_text())
        stage_dirs[system] = finetune_stages(target, out_dir / "finetune" / folder, str(coarse_dir / "model"),
                                             finetune_overrides, folds, group)
    comparisons = compare_systems(stage_dirs, out_dir / "results")
    group, comparison = next(iter(comparisons.items()))
    rows = []
    for system, means in comparison.means.items():
        row = {"system": system, parameter: system.partition("=")[2] or None, **means}
        row.update({f"p({metric})": comparison.p_values.get(system, {}).get(metric) for metric in comparison.metrics})
        clicks = held_out.get(system, {})
        row.update({f"held_out_{name}": value for name, value in clicks.get("held_out_clicks", {}).items()})
        row["train_clicks"] = clicks.get("clicks", {}).get("sampled_train")
        rows.append(row)
    table = pd.DataFrame(rows)
    with atomic_write(out_dir / "sweep.csv") as handle:
        table.to_csv(handle, index=False)
    with atomic_write(out_dir / "sweep.md") as handle:
        handle.write(table.to_markdown(index=False, floatfmt=".4f"))
    plot_sweep(table, parameter, comparison.metrics, out_dir / "sweep.png")
    Console().print(table.to_string(index=False))
    log_to_group(OmegaConf.to_container(_stage_config(stage_dirs[BASELINE][0])), f"sweep {parameter}", out_dir,
                 images={"sweep": out_dir / "sweep.png"}, tables={"sweep": table})
    return out_dir / "sweep.csv"


def plot_sweep(table, parameter: str, metrics: Sequence[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = table[table[parameter].notna()].copy()
    swept[parameter] = swept[parameter].astype(float)
    baseline = table[table["system"] == BASELINE]
    columns = [column for column in ("held_out_qdpp_acc", "held_out_mlm_loss") if column in table]
    figure, axes = plt.subplots(1, 1 + len(columns), figsize=(5 * (1 + len(columns)), 4))
    for metric in metrics:
        line, = axes[0].plot(swept[parameter], swept[metric], marker="o", label=metric)
        if not baseline.empty:
            axes[0].axhline(float(baseline[metric].iloc[0]), linestyle="--", color=line.get_color(), linewidth=0.8)
    axes[0].set(xlabel=parameter, ylabel="fine-tuned (dashed: fine-tune only)", title="retrieval")
    axes[0].legend()
    for axis, column in zip(axes[1:], columns):
        axis.plot(swept[parameter], swept[column], marker="o")
        axis.set(xlabel=parameter, ylabel=column, title="held-out clicks after coarse-tuning")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
