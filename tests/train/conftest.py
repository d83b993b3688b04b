"""A tiny prepared cache (48^3, the "tiny" model's size) built by hand in the layout of docs/CONTRACTS.md.

Positives carry a dark spherical "lesion" inside a bright "femoral head"; negatives do not. The classes are easy to
tell apart, so a few epochs of the tiny model learn them, which keeps the training tests short.
"""

import json

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.data.prepare import write_cases_csv

SIZE = 48


def _case(rng: np.random.Generator, positive: bool):
    d, h, w = np.mgrid[:SIZE, :SIZE, :SIZE].astype(np.float32)
    c = SIZE / 2 + rng.uniform(-4, 4, size=3)
    r = rng.uniform(12, 16)
    dist = np.sqrt((d - c[0]) ** 2 + (h - c[1]) ** 2 + (w - c[2]) ** 2)
    head = dist < r
    hu = np.where(head, 700.0, -100.0) + rng.normal(0, 60, size=head.shape)
    lesion = np.zeros(head.shape, np.uint8)
    if positive:
        lc = c + rng.uniform(-r / 3, r / 3, size=3)
        ld = np.sqrt((d - lc[0]) ** 2 + (h - lc[1]) ** 2 + (w - lc[2]) ** 2)
        lesion = ((ld < r / 2.2) & head).astype(np.uint8)
        hu[lesion > 0] = -50.0 + rng.normal(0, 60, size=int(lesion.sum()))
    vol = ((hu - hu.mean()) / hu.std()).astype(np.float32)
    mask = (head * 255).astype(np.uint8)
    return vol, mask, lesion


def build_cache(root, counts=None, seed=0):
    """Write a cache with counts = {split: (negatives, positives)}; returns root."""
    counts = counts or {"train": (6, 6), "val": (3, 3), "test": (3, 3)}
    rng = np.random.default_rng(seed)
    for sub in ("volumes", "masks", "lesions"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cfg = PreprocessConfig(output_size=SIZE)
    (root / "cache.json").write_text(json.dumps({"preprocess": cfg.to_dict(), "mask": {}, "grid": 4}))
    rows = []
    for split, (neg, pos) in counts.items():
        for n in range(neg + pos):
            label = int(n >= neg)
            case_id = f"{split}{n:02d}"
            vol, mask, lesion = _case(rng, bool(label))
            np.save(root / "volumes" / f"{case_id}.npy", vol)
            np.save(root / "masks" / f"{case_id}.npy", mask)
            les = ""
            if label:
                np.save(root / "lesions" / f"{case_id}.npy", lesion)
                les = f"lesions/{case_id}.npy"
            rows.append({"case_id": case_id, "label": label, "stage": 2 * label, "split": split,
                         "volume": f"volumes/{case_id}.npy", "mask": f"masks/{case_id}.npy", "lesion": les})
    write_cases_csv(root, rows)
    return root


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def cache_builder():
    """build_cache(root, counts, seed) for tests that need a cache of their own."""
    return build_cache



@pytest.fixture(scope="session")
def tiny_run(tiny_cache, tmp_path_factory):
    """(TrainResult, run folder) of 2 epochs of the tiny model on tiny_cache."""
    from sranet.train.config import TrainConfig
    from sranet.train.loop import train

    out = tmp_path_factory.mktemp("run")
    return train(TrainConfig(model="tiny", epochs=2, lr=3e-3, batch_size=4, seed=1), tiny_cache, out), out
