"""Read a W&B offline run (run-<id>.wandb) back: wandb 0.31 has no Python reader for its own offline files
(its datastore moved into the Go core), so this test helper reads the container — a ':W&B' header, then
LevelDB-log blocks of 32 KiB whose records are wandb's own protobuf Record messages (parsed with wandb's
generated classes)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7  # ":W&B", magic 0xBEE1, version


def records(path: Path) -> list:
    from wandb.proto.wandb_internal_pb2 import Record

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    out, buf, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # the tail of a block too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # FULL
            out.append(chunk)
        elif kind == 2:  # FIRST
            buf = chunk
        elif kind == 3:  # MIDDLE
            buf += chunk
        elif kind == 4:  # LAST
            out.append(buf + chunk)
    return [Record.FromString(c) for c in out]


def read_run(run_dir: Path) -> dict:
    """{"name", "config", "history": [{key: value}], "summary": {key: value}, "exit_code"} of one offline run."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    run = {"name": None, "config": {}, "history": [], "summary": {}, "exit_code": None}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run["name"] = r.run.display_name
            run["config"].update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "history":
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            run["summary"].update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in r.summary.update})
        elif kind == "exit":
            run["exit_code"] = r.exit.exit_code
    return run
