"""Beyond one process: run folders shared by the ranks and attempts of a job, resuming a requeued SLURM job, the
SLURM launcher config (rendered to its sbatch script, and run through submitit's local executor), multi-node DDP
and SLURM-sharded encoding on CPU, and FAISS indexes for MS MARCO scale."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conftest import TINY_TOY, compose_train
from lit_ir.errors import InputError
from lit_ir.retrieval.dense import DenseIndex, index_memory
from lit_ir.train import checkpoint_to_resume
from lit_ir.utils.cluster import run_stamp
from lit_ir.utils.hydra import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                   "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID")


@pytest.fixture
def no_cluster(monkeypatch):
    for name in SLURM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _job(overrides: list[str]) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        HydraConfig().set_config(compose(config_name="train", return_hydra_config=True, overrides=overrides))


# ---- one run folder per job --------------------------------------------------------------------------------------
def test_run_folder_is_shared_by_the_ranks_and_attempts_of_a_job(no_cluster):
    _job(["seed=1"])
    assert len(run_stamp()) == len("2026-01-31_12-00-00") and run_stamp()[4] == "-"  # a plain process: the time
    no_cluster.setenv("SLURM_JOB_ID", "4242")
    no_cluster.setenv("SLURM_JOB_NAME", "train")
    stamp = run_stamp()
    assert stamp.startswith("slurm-4242-") and run_stamp() == stamp  # every task, every requeued attempt
    _job(["seed=2"])
    assert run_stamp() != stamp and run_stamp().startswith("slurm-4242-")  # another training of the same script
    no_cluster.setenv("SLURM_ARRAY_JOB_ID", "4240")
    no_cluster.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert run_stamp().startswith("slurm-4240_3-")
    no_cluster.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation: several runs, each its own folder
    assert run_stamp()[4] == "-"
    for name in SLURM_VARIABLES:
        no_cluster.delenv(name, raising=False)
    no_cluster.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun without a rendezvous id: nothing shared to go by
    assert run_stamp()[4] == "-"
    no_cluster.setenv("TORCHELASTIC_RUN_ID", "job-17")
    assert run_stamp().startswith("torchrun-job-17-")


def _checkpoint(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"checkpoint")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_requeued_job_resumes_from_its_newest_checkpoint(tmp_path, shared_cache, no_cluster):
    cfg = compose_train(tmp_path, shared_cache)
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))  # the first attempt's
    last = _checkpoint(tmp_path / "checkpoints" / "last.ckpt", age_s=60)
    assert checkpoint_to_resume(cfg, tmp_path) is None  # a first attempt starts fresh, whatever is in the folder
    no_cluster.setenv("SLURM_RESTART_COUNT", "1")
    assert checkpoint_to_resume(cfg, tmp_path) == str(last)
    # Lightning saves an HPC checkpoint when SLURM signals the requeue: newer than last.ckpt, so it wins
    hpc = _checkpoint(tmp_path / "hpc_ckpt_1.ckpt", age_s=5)
    assert checkpoint_to_resume(cfg, tmp_path) == str(hpc)
    explicit = str(tmp_path / "other.ckpt")
    cfg.ckpt_path = explicit
    assert checkpoint_to_resume(cfg, tmp_path) == explicit  # a path is taken as given
    cfg.ckpt_path = None
    cfg.model.optimizer.lr = 0.5  # not the run that is in the folder
    with pytest.raises(InputError, match=r"another config \(1 keys differ: model.optimizer.lr: 0.001 -> 0.5\)"):
        checkpoint_to_resume(cfg, tmp_path)


def test_ckpt_path_auto_resumes_only_what_is_there(tmp_path, shared_cache, no_cluster):
    cfg = compose_train(tmp_path, shared_cache, ["ckpt_path=auto"])
    assert checkpoint_to_resume(cfg, tmp_path) is None  # nothing yet (and no config.yaml): from the start
    last = _checkpoint(tmp_path / "checkpoints" / "last.ckpt", age_s=0)
    assert checkpoint_to_resume(cfg, tmp_path) == str(last)


# ---- the SLURM launcher ------------------------------------------------------------------------------------------
def test_slurm_launcher_config_renders_an_array_job_of_multi_node_tasks(tmp_path, monkeypatch):
    """hydra/launcher=slurm composed and handed to submitit's SLURM executor, which writes the sbatch script it
    would submit (nothing is submitted; the executor only wants an `srun` on the PATH, so it gets a dummy)."""
    import submitit

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}/sweep"])
    HydraConfig().set_config(cfg)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    # what SlurmLauncher.launch hands submitit: shared keys as they are, the others prefixed with the cluster
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit",
                                     slurm_max_num_timeout=launcher.params["max_num_timeout"])
    executor.update_parameters(**{key if key in base else f"slurm_{key}": value for key, value in launcher.params.items()
                                  if key not in ("submitit_folder", "max_num_timeout")})
    executor._executor.parameters["map_count"] = 3  # a sweep of 3 jobs: one array job
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --partition=gpu", "#SBATCH --time=1440",
                 "#SBATCH --signal=USR2@120", "#SBATCH --array=0-2%3"]:  # 3 jobs, min(3, array_parallelism) at once
        assert line in script.splitlines(), line
    assert "srun" in script


def _submitit_env(job_id: str) -> dict[str, str]:
    """What submitit's local executor puts in a job's environment (submitit.local.local)."""
    return {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": job_id, "SUBMITIT_LOCAL_NTASKS": "1",
            "SUBMITIT_LOCAL_GLOBALID": "0", "SUBMITIT_LOCAL_LOCALID": "0", "SUBMITIT_LOCAL_NODEID": "0",
            "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}


@pytest.mark.slow  # ~60 s on 2 busy cores: a sweep through submitit, then the job again as a requeue
def test_a_preempted_sweep_job_is_requeued_into_its_folder_and_resumes(tmp_path):
    """hydra/launcher=slurm_local (submitit's local executor, the SLURM launcher's layout): the job dies in its
    second epoch; re-running its pickled submission as a requeued SLURM job (SLURM_RESTART_COUNT=1) writes into the
    same folder, resumes from the first epoch's last.ckpt and finishes."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    for name in SLURM_VARIABLES:
        env.pop(name, None)
    command = [sys.executable, "-m", "lit_ir.train", "--multirun", "hydra/launcher=slurm_local",
               "experiment=quickstart", "model.pretrained=random-bert-32x1", "model.max_length=48",
               "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1", "trainer.log_every_n_steps=1",
               "trainer.enable_progress_bar=false", "logger=csv", "data.train_batch_size=8", "data.rerank_depth=20", "data.first_stage.k=20",
               "+callbacks.preempt._target_=preemption.PreemptOnce", f"paths.root_dir={tmp_path}",
               f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}", *TINY_TOY]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert first.returncode != 0 and "preempted (simulated)" in first.stderr + first.stdout
    job_dir = sweep / "0"
    assert (job_dir / "checkpoints" / "last.ckpt").is_file() and not (job_dir / "metrics").exists()

    (submission,) = sweep.glob(".submitit/*/*_submitted.pkl")
    job_id = submission.name.split("_")[0]
    requeued = subprocess.run([sys.executable, "-u", "-m", "submitit.core._submit", str(submission.parent)],
                              capture_output=True, text=True, timeout=600, cwd=REPO,
                              env={**env, **_submitit_env(job_id), "SLURM_RESTART_COUNT": "1"})
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "resuming from" in requeued.stderr + requeued.stdout
    assert (job_dir / "metrics" / "test" / "metrics.json").is_file()  # the same folder, finished
    # the requeued attempt trained epoch 1 only (its CSV log replaces the first attempt's: Lightning's CSVLogger)
    logged = pd.read_csv(job_dir / "csv" / "metrics.csv")
    assert set(logged.dropna(subset=["train/loss"])["epoch"].astype(int)) == {1}


# ---- multi-node DDP and sharded encoding, on CPU -------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # ~60 s: two "nodes" (torchrun processes), each importing Lightning
def test_trainer_ddp_over_two_torchrun_nodes_writes_one_run(tmp_path):
    """trainer=ddp with num_nodes=2, one CPU process per node, launched as the README's 2 x 8 GPU command is."""
    port, env = _free_port(), {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    overrides = ["experiment=quickstart", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1",
                 "trainer.num_nodes=2", "model.pretrained=random-bert-32x1", "model.max_length=48",
                 "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "trainer.enable_progress_bar=false",
                 "logger=csv", "data.train_batch_size=8", "data.rerank_depth=20", "data.first_stage.k=20",
                 f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}", *TINY_TOY]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
                               "--rdzv-id=two-nodes", "-m", "lit_ir.train", *overrides],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()  # both nodes wrote into one folder
    assert run.name.startswith("torchrun-two-nodes-")
    assert (run / "metrics" / "test" / "metrics.json").is_file() and (run / "model").is_dir()
    assert "world_size=2" in outputs[0].replace(" ", "") or "GLOBAL_RANK: 0" in outputs[0]


@pytest.mark.slow  # ~60 s: two srun-style processes, each importing torch and transformers
def test_srun_tasks_encode_one_store_across_nodes(tmp_path):
    """`srun python -m lit_ir.encode` over 2 tasks (as on 2 nodes: SLURM's variables, no torchrun's): one store,
    equal to a single process's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    common = ["encoder=random", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
              "progress=false", "chunk_size=16", *TINY_TOY]
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": str(40000 + _free_port() % 9000),
             "SLURM_JOB_NAME": "encode", "SLURM_NODELIST": "127.0.0.1"}
    # first (it also builds the random model the tasks then share)
    single = subprocess.run([sys.executable, "-m", "lit_ir.encode", f"output={tmp_path / 'single'}", *common],
                            cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    tasks = [subprocess.Popen([sys.executable, "-m", "lit_ir.encode", f"output={tmp_path / 'sharded'}", *common],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**env, **slurm, "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0",
                                   "SLURM_NODEID": str(rank)})
             for rank in (0, 1)]
    outputs = [task.communicate(timeout=600)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    from lit_ir.data.embedding_store import EmbeddingStore

    sharded, whole = EmbeddingStore.open(tmp_path / "sharded"), EmbeddingStore.open(tmp_path / "single")
    assert sharded.ids == whole.ids and sharded.meta == whole.meta
    np.testing.assert_allclose(sharded.embeddings, whole.embeddings, atol=1e-3)
    assert "rank 0 of 2 encodes rows 0-" in outputs[0] and "rank 1 of 2 encodes rows" in outputs[1]


# ---- FAISS at MS MARCO scale ---------------------------------------------------------------------------------------
def _clustered(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    vectors = centres[rng.integers(0, 50, count)] + 0.3 * rng.normal(size=(count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_sharded_flat_search_equals_one_flat_index():
    matrix, queries = _clustered(3001, 32), _clustered(50, 32, seed=1)
    ids = [f"d{i}" for i in range(len(matrix))]
    whole = DenseIndex.from_matrix(matrix, ids, "flat", use_gpu=False)
    sharded = DenseIndex.from_matrix(matrix, ids, "flat", use_gpu=False, shards=3)
    assert len(sharded) == len(matrix)
    (scores, rows), (whole_scores, whole_rows) = sharded.search(queries, 10), whole.search(queries, 10)
    np.testing.assert_array_equal(rows, whole_rows)
    np.testing.assert_allclose(scores, whole_scores, rtol=1e-6)
    with pytest.raises(ValueError, match="only a flat index is sharded"):
        DenseIndex.from_matrix(matrix, ids, "ivf", use_gpu=False, shards=2)


def test_ivfpq_finds_most_exact_neighbours_in_a_fraction_of_the_memory():
    matrix, queries = _clustered(20_000, 64), _clustered(200, 64, seed=1)
    ids = [f"d{i}" for i in range(len(matrix))]
    exact = DenseIndex.from_matrix(matrix, ids, "flat", use_gpu=False)
    pq = DenseIndex.from_matrix(matrix, ids, "ivfpq", use_gpu=False, nlist=64, nprobe=16, pq_m=16)
    _, truth = exact.search(queries, 10)
    _, found = pq.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall > 0.5, recall
    # the stated memory is what faiss holds: its serialised index, within 5 %
    for index, kind, params in [(exact, "flat", {}), (pq, "ivfpq", {"nlist": 64, "pq_m": 16})]:
        stated = index_memory(kind, len(matrix), 64, **params)["total"]
        assert abs(faiss.serialize_index(index.index).nbytes - stated) / stated < 0.05, kind
    assert index_memory("ivfpq", len(matrix), 64, nlist=64, pq_m=16)["total"] < 0.3 * stated_flat(len(matrix), 64)


def stated_flat(count: int, dim: int) -> int:
    return index_memory("flat", count, dim)["total"]


def test_memory_of_ms_marco_indexes_per_shard():
    """MS MARCO passage (8,841,823 x 768, TAS-B's dimension), the figures the README states."""
    count, dim = 8_841_823, 768
    flat = index_memory("flat", count, dim, shards=8)
    assert flat["total"] == count * dim * 4 and round(flat["total"] / 1e9, 1) == 27.2
    assert round(flat["per_shard"] / 1e9, 2) == 3.40  # one of 8 GPUs
    pq = index_memory("ivfpq", count, dim)  # nlist 4 * sqrt(n) = 11,894; 96 bytes a code + an 8-byte id
    assert round(pq["total"] / 1e9, 2) == 0.96 and pq["per_shard"] == pq["total"]
