"""Prepared cache: layout of docs/CONTRACTS.md, lesion alignment, failures recorded, reruns skip, atomic writes."""

import csv
import json
import shutil

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.data.prepare import CASE_COLUMNS, prepare_cache
from sranet.data.synthetic_dataset import write_dataset
from sranet.errors import InputError
from sranet.runtime.manifest import read_manifest

SIZE = 32
CFG = PreprocessConfig(output_size=SIZE)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    manifest = write_dataset(root, 5, seed=4, shape=(24, 40, 40), stage_mix={0: 0.4, 2: 0.2, 3: 0.2, 4: 0.2})
    return root, manifest


def _copy(dataset, tmp_path):
    root, _ = dataset
    shutil.copytree(root, tmp_path / "ds")
    return tmp_path / "ds", tmp_path / "ds" / "manifest.csv"


def _rows(cache):
    with open(cache / "cases.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_cache_layout_and_contents(dataset, tmp_path):
    _, manifest = dataset
    cache = tmp_path / "cache"
    result = prepare_cache(manifest, cache, CFG)
    assert result.ok and len(result.done) == 5 and not result.skipped
    meta = json.loads((cache / "cache.json").read_text())
    assert meta["grid"] == 4 and PreprocessConfig.from_dict(meta["preprocess"]) == CFG and meta["mask"]["floor_hu"] == 150
    rows = _rows(cache)
    assert list(rows[0]) == list(CASE_COLUMNS)
    cases = {c.case_id: c for c in read_manifest(manifest)}
    assert [r["case_id"] for r in rows] == list(cases)
    for row in rows:
        case = cases[row["case_id"]]
        assert (int(row["label"]), int(row["stage"]), row["split"]) == (case.label, case.stage, case.split)
        volume, mask = np.load(cache / row["volume"]), np.load(cache / row["mask"])
        lesion = np.load(cache / row["lesion"])
        assert volume.shape == mask.shape == lesion.shape == (SIZE,) * 3
        assert volume.dtype == np.float32 and abs(float(volume.mean())) < 1e-3  # z-scored
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255} and mask.any()
        assert lesion.dtype == np.uint8 and set(np.unique(lesion)) <= {0, 1}
        assert bool(lesion.any()) == (case.stage > 0)
    assert (cache / "failures.jsonl").read_text() == ""


def test_cached_lesion_is_aligned_with_the_resampled_volume(dataset, tmp_path):
    """Where the disease changed the HU (stage >= 2 minus the same hip at stage 0), the cached lesion mask is."""
    from sranet.data.synthetic import generate_case
    from sranet.runtime.io import load_volume
    from sranet.runtime.preprocess import preprocess
    from sranet.runtime.roi import parse_roi

    root, manifest = dataset
    seeds = {k: v["seed"] for k, v in json.loads((root / "synth.json").read_text())["cases"].items()}
    cache = tmp_path / "cache"
    prepare_cache(manifest, cache, CFG)
    checked = 0
    for case in read_manifest(manifest):
        if case.stage < 2:
            continue
        lesion = np.load(cache / "lesions" / f"{case.name}.npy").astype(bool)
        roi = parse_roi(case.roi, case.side)
        sick = preprocess(load_volume(case.path), CFG, roi=roi).hu
        healthy = preprocess(generate_case(seeds[case.case_id], 0, shape=(24, 40, 40)).to_volume(), CFG, roi=roi).hu
        diff = np.abs(sick - healthy)
        assert diff[lesion].mean() > 3 * diff[~lesion].mean()
        assert diff[lesion].mean() > 2 * diff[lesion[::-1, ::-1, ::-1]].mean()  # a flipped mask would miss it
        checked += 1
    assert checked == 3


def test_rerun_skips_cached_cases_and_redoes_interrupted_ones(dataset, tmp_path):
    _, manifest = dataset
    cache = tmp_path / "cache"
    prepare_cache(manifest, cache, CFG)
    volume = cache / "volumes" / "SYNTH_0002.npy"
    stamp = volume.stat().st_mtime_ns
    again = prepare_cache(manifest, cache, CFG)
    assert again.ok and not again.done and len(again.skipped) == 5 and volume.stat().st_mtime_ns == stamp
    (cache / "meta" / "SYNTH_0003.json").unlink()  # as if the run died before finishing this case
    (cache / "volumes" / ".SYNTH_0004.123.tmp.npy").write_bytes(b"half")  # and left a temp file elsewhere
    third = prepare_cache(manifest, cache, CFG)
    assert third.done == ["SYNTH_0003"] and len(third.skipped) == 4
    assert len(_rows(cache)) == 5


def test_a_corrupt_case_in_the_middle_is_recorded_and_the_rest_done(dataset, tmp_path):
    root, manifest = _copy(dataset, tmp_path)
    for f in sorted((root / "cases" / "SYNTH_0003").glob("*.dcm")):
        f.write_bytes(b"not a dicom file at all" * 10)
    np.save(root / "lesions" / "SYNTH_0004.npy", np.zeros((3, 3, 3), np.uint8))  # wrong grid
    cache = tmp_path / "cache"
    result = prepare_cache(manifest, cache, CFG, workers=2)
    assert not result.ok and sorted(result.done) == ["SYNTH_0001", "SYNTH_0002", "SYNTH_0005"]
    failures = [json.loads(line) for line in (cache / "failures.jsonl").read_text().splitlines()]
    assert [f["case_id"] for f in failures] == ["SYNTH_0003", "SYNTH_0004"]
    assert failures[0]["error"].endswith("Error") and "SYNTH_0003" in failures[0]["message"]
    assert failures[1]["error"] == "VolumeError" and "(3, 3, 3)" in failures[1]["message"]
    assert [r["case_id"] for r in _rows(cache)] == ["SYNTH_0001", "SYNTH_0002", "SYNTH_0005"]
    assert not (cache / "volumes" / "SYNTH_0003.npy").exists()


def test_other_settings_on_an_existing_cache_are_refused(dataset, tmp_path):
    _, manifest = dataset
    prepare_cache(manifest, tmp_path / "cache", CFG)
    with pytest.raises(InputError, match="other settings"):
        prepare_cache(manifest, tmp_path / "cache", PreprocessConfig(output_size=48))
    with pytest.raises(InputError, match="patch grid"):
        prepare_cache(manifest, tmp_path / "c2", PreprocessConfig(output_size=30))


def test_rerun_prepares_again_a_case_whose_manifest_row_changed(dataset, tmp_path):
    root, manifest = _copy(dataset, tmp_path)
    cache = tmp_path / "cache"
    prepare_cache(manifest, cache, CFG)
    rows = list(csv.DictReader(manifest.open()))
    changed = next(r for r in rows if r["case_id"] == "SYNTH_0002")
    d, h, w = (tuple(int(v) for v in part.split(":")) for part in changed["roi"].split(","))
    changed["roi"] = f"{d[0]}:{d[1]},{h[0]}:{h[1]},{w[0] + 2}:{w[1]}"  # the user tightened the box
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    again = prepare_cache(manifest, cache, CFG)
    assert again.done == ["SYNTH_0002"] and len(again.skipped) == 4
