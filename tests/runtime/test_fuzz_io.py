"""Fuzzing the loaders with mutated copies of real files: truncation, flipped bytes, removed or altered tags.

Every case must end in a Volume or a typed ``SranetError``, never another exception, and never hang (each case has
a 10 s alarm). The default run does a few hundred cases in well under a minute; ``-m slow`` does thousands.
"""

import signal
import traceback
from pathlib import Path

import numpy as np
import pytest

from sranet.errors import SranetError
from sranet.runtime.io import load_volume
from tests.helpers import REAL_CT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the values we break
SOURCES = [
    REAL_CT / "pydicom" / "CT_small.dcm",  # uncompressed, explicit VR
    REAL_CT / "pydicom" / "693_J2KI.dcm",  # JPEG 2000
    REAL_CT / "pydicom" / "dicomdirtests" / "98892001" / "CT5N" / "2062",  # tiny slice of a series
    REAL_CT / "pydicom-data" / "bad_sequence.dcm",  # JPEG Lossless, UN sequence
    REAL_CT / "pydicom-data" / "eCT_Supplemental.dcm",  # enhanced multi-frame
    REAL_CT / "pylibjpeg-data" / "CT1_JLSN.dcm",  # JPEG-LS
]
TAGS = ["Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "RescaleSlope",
        "RescaleIntercept", "BitsAllocated", "BitsStored", "PixelRepresentation", "Modality", "SOPClassUID",
        "SamplesPerPixel", "PhotometricInterpretation", "PixelData", "NumberOfFrames", "SeriesInstanceUID",
        "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "HighBit", "PlanarConfiguration"]
ODD_VALUES = {"Rows": [0, 1, 65535], "Columns": [0, 7, 65535], "BitsAllocated": [1, 8, 32, 0], "BitsStored": [0, 3, 40],
              "PixelRepresentation": [0, 1, 7], "SamplesPerPixel": [0, 3], "RescaleSlope": ["0", "nan", "1e308"],
              "PixelSpacing": [["0", "0"], ["-1", "1"], ["inf", "1"]], "NumberOfFrames": ["0", "100000", "-1"],
              "ImageOrientationPatient": [["0"] * 6, ["1", "0", "0", "1", "0", "0"], ["nan"] * 6],
              "PhotometricInterpretation": ["RGB", "PALETTE COLOR", ""]}


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _mutate(rng: np.random.Generator, src: Path, out: Path) -> str:
    data = bytearray(src.read_bytes())
    kind = rng.choice(["truncate", "flip", "tag", "value"])
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        out.write_bytes(bytes(data[:cut]))
        return f"truncate {src.name} at {cut}"
    if kind == "flip":
        n = int(rng.integers(1, 20))
        where = rng.integers(0, len(data), n)
        # bias towards the header, where a flipped byte changes lengths and tags
        where = np.where(rng.random(n) < 0.7, where % min(len(data), 2048), where)
        for i in where:
            data[int(i)] ^= int(rng.integers(1, 256))
        out.write_bytes(bytes(data))
        return f"flip {n} bytes of {src.name}"
    import pydicom

    ds = pydicom.dcmread(src)
    tag = str(rng.choice(TAGS))
    if kind == "tag" or tag not in ODD_VALUES:
        if tag in ds:
            delattr(ds, tag)
        what = f"remove {tag} from {src.name}"
    else:
        values = ODD_VALUES[tag]
        value = values[int(rng.integers(0, len(values)))]
        setattr(ds, tag, value)
        what = f"set {tag}={value!r} in {src.name}"
    try:
        ds.save_as(out, enforce_file_format=False)
    except Exception:  # pydicom refuses to write some values: that is not a loader case
        out.write_bytes(bytes(data))
    return what


def _check_loaded(volume, what: str) -> None:
    """What a loader returns is a 3-D volume of finite HU with positive spacing, or it raised a typed error."""
    hu = np.asarray(volume.hu)
    assert hu.ndim == 3 and min(hu.shape) >= 1, f"{what}: HU array of shape {hu.shape}"
    assert np.isfinite(hu).all(), f"{what}: non-finite HU"
    assert all(np.isfinite(s) and s > 0 for s in volume.spacing_mm), f"{what}: spacing {volume.spacing_mm}"


def _run(n_cases: int, seed: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    failures = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(n_cases):
            src = SOURCES[case % len(SOURCES)]
            target = tmp_path / f"case{case}.dcm"
            what = _mutate(rng, src, target)
            signal.alarm(10)
            try:
                _check_loaded(load_volume(target), what)
            except SranetError:
                pass
            except _Hang:
                failures.append(f"{what}: no result after 10 s")
            except AssertionError as exc:
                failures.append(f"{what}: loaded, but {exc}")
            except Exception as exc:
                failures.append(f"{what}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}")
            finally:
                signal.alarm(0)
            target.unlink()
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert not failures, f"{len(failures)} of {n_cases} cases escaped the typed errors:\n" + "\n".join(failures[:10])


@pytest.mark.integration
def test_fuzz_mutated_real_files(tmp_path):
    _run(300, seed=20261127, tmp_path=tmp_path)


def test_fuzz_one_bad_file_in_a_series_folder(tmp_path):
    import shutil

    rng = np.random.default_rng(7)
    for case in range(30):
        folder = tmp_path / f"s{case}"
        shutil.copytree(REAL_CT / "pydicom" / "dicomdirtests" / "98892001" / "CT5N", folder)
        victim = sorted(folder.iterdir())[case % 5]
        _mutate(rng, victim, victim)
        try:
            v = load_volume(folder)
        except SranetError:
            continue
        _check_loaded(v, f"series with {victim.name} mutated")
        assert v.shape[1:] == (16, 16)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".npy"])
def test_fuzz_truncated_and_flipped_nifti_and_npy(tmp_path, suffix):
    from sranet.runtime.nifti import save_nifti
    from sranet.runtime.volume import Volume

    rng = np.random.default_rng(3)
    hu = rng.uniform(-1000, 1000, (12, 16, 20)).astype(np.float32)
    src = tmp_path / f"src{suffix}"
    if suffix == ".npy":
        np.save(src, hu)
    else:
        save_nifti(Volume(hu, (2.0, 1.0, 1.0)), src)
    data = src.read_bytes()
    for case in range(40):
        mutated = bytearray(data)
        if case % 2:
            mutated = mutated[: int(rng.integers(0, len(data)))]
        else:
            for i in rng.integers(0, min(len(data), 400), 4):
                mutated[int(i)] ^= int(rng.integers(1, 256))
        target = tmp_path / f"case{case}{suffix}"
        target.write_bytes(bytes(mutated))
        try:
            volume = load_volume(target, spacing_mm=(1, 1, 1) if suffix == ".npy" else None)
        except SranetError:
            continue
        _check_loaded(volume, f"case {case} ({'truncated' if case % 2 else 'flipped'})")


@pytest.mark.slow
def test_fuzz_mutated_real_files_long(tmp_path):
    _run(3000, seed=1, tmp_path=tmp_path)


@pytest.mark.slow
def test_fuzz_more_seeds(tmp_path):
    for seed in range(2, 6):
        _run(300, seed=seed, tmp_path=tmp_path)
