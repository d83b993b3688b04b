"""Two-process DistributedDataParallel training with the gloo backend on CPU, launched by torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.integration
def test_torchrun_two_processes_gloo(tiny_cache, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sranet.cli.main", "train", "--cache", str(tiny_cache), "--out", str(out),
           "--model", "tiny", "--epochs", "1", "--batch-size", "2", "--lr", "3e-3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["world_size"] == 2
    assert record["train_volumes"] == 12  # each rank saw its own half of the 12 training cases
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model_state"])  # saved unwrapped, loads without DDP
    assert proc.stdout.count("best epoch") == 1  # only rank 0 reports


def test_an_explicit_gpu_index_under_torchrun_is_refused(monkeypatch):
    import pytest

    from sranet.errors import InputError
    from sranet.train.distributed import setup

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(InputError, match="all 2 processes on one GPU.*--device cuda"):
        setup("cuda:1")
