"""Read an offline W&B run back: the records of its `run-<id>.wandb` file, parsed with wandb's own protobuf classes.

The file is a LevelDB-style log (what wandb's former `sdk.internal.datastore` read): a 7-byte header
(":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of records, each with a 7-byte header (CRC-32, length,
type: 1 full, 2 first, 3 middle, 4 last piece of a record).
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path}: not a W&B transaction log"
    position, pieces, records = HEADER.size, b"", []
    while position + RECORD_HEADER.size <= len(data):
        left = BLOCK - position % BLOCK
        if left < RECORD_HEADER.size:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = RECORD_HEADER.unpack_from(data, position)
        position += RECORD_HEADER.size
        piece, position = data[position : position + length], position + length
        if kind == 0:  # zero padding up to the block's end
            position += BLOCK - position % BLOCK if position % BLOCK else 0
            continue
        pieces = piece if kind in (1, 2) else pieces + piece
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pieces))
    return records


@dataclass
class OfflineRun:
    """What a test asserts on: the run's identity, its summary and history values, tables and artifacts."""

    folder: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    artifacts: list[wandb_internal_pb2.ArtifactRecord] = field(default_factory=list)

    def table(self, key: str) -> dict:
        """A logged wandb.Table (the last one under `key`): {"columns": [...], "data": [[...], ...]}."""
        logged = [row[key] for row in self.history if key in row] or [self.summary[key]]
        return json.loads((self.folder / "files" / logged[-1]["path"]).read_text())

    def artifact(self, name: str) -> wandb_internal_pb2.ArtifactRecord:
        found = [artifact for artifact in self.artifacts if artifact.name == name]
        assert found, f"no artifact {name!r}; logged: {[artifact.name for artifact in self.artifacts]}"
        return found[-1]


def finished_records(path: Path, timeout: float = 60.0) -> list[wandb_internal_pb2.Record]:
    """The records of a finished run. wandb's service writes the log after `run.finish()` returns, so wait for
    the `exit` record that ends it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = read_records(path)
        except (DecodeError, struct.error):  # caught mid-write
            records = []
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        assert time.monotonic() < deadline, f"{path}: the run's log has no exit record after {timeout} s"
        time.sleep(0.2)


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under `root` (a `wandb/offline-run-*` folder), in the order they were made."""
    runs = []
    for log in sorted(Path(root).rglob("offline-run-*/run-*.wandb")):
        run = OfflineRun(log.parent)
        for record in finished_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.name, run.group, run.job_type = record.run.display_name, record.run.run_group, record.run.job_type
                run.tags = list(record.run.tags)
            elif kind == "history":
                row: dict = {}
                for item in record.history.item:
                    _set(row, item)
                run.history.append(row)
            elif kind == "summary":
                for item in record.summary.update:
                    _set(run.summary, item)
            elif kind == "artifact":
                run.artifacts.append(record.artifact)
        runs.append(run)
    return runs


def _set(values: dict, item) -> None:
    """A history or summary item: `key`, or `nested_key` (the path into a logged dict such as a table's)."""
    *parents, last = list(item.nested_key) or [item.key]
    for parent in parents:
        values = values.setdefault(parent, {})
    values[last] = json.loads(item.value_json)
