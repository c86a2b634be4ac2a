"""Distributed training: two worker processes on localhost train a tiny model with
`train.strategy: multi_worker` (tf.distribute.MultiWorkerMirroredStrategy over $TF_CONFIG)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import random_prepared, write_params

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_to_completion_and_only_the_chief_writes(tmp_path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    random_prepared(prepared, 32)
    params = write_params(
        tmp_path / "params.yaml",
        *("model.width=0.125", "model.dense_units=16", "train.epochs=2", "train.warmup_epochs=0"),
        *("train.batch_size=8", "train.strategy=multi_worker", "train.precision=float32"),
    )

    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        out = tmp_path / f"worker{index}"
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        cmd = [
            sys.executable,
            str(ROOT / "stages" / "train.py"),
            "--params", str(params),
            "--input", str(prepared),
            "--model", str(out / "model.keras"),
            "--metrics", str(out / "metrics.json"),
            "--report", str(out / "train.json"),
            "--plots", str(out / "plots"),
        ]  # fmt: skip
        workers.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    logs = []
    try:
        for proc in workers:
            logs.append(proc.communicate(timeout=600)[0])
    finally:
        for proc in workers:
            proc.kill()
    for index, proc in enumerate(workers):
        assert proc.returncode == 0, f"worker {index} failed:\n{logs[index][-20000:]}"
    assert "2 replica(s)" in logs[0]

    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    summary = json.loads((chief / "train.json").read_text())
    assert summary["epochs"] == 2
    assert summary["train_images"] == 24
    assert (chief / "model.keras").is_file()
    assert len(json.loads((chief / "plots" / "loss.json").read_text())) == 4  # 2 epochs, 2 splits
    assert json.loads((chief / "classes.json").read_text()) == ["not_blast", "blast"]
    assert not other.exists()  # the other worker trained in step but wrote nothing
