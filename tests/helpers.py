"""Builders shared by the test modules: tiny SRANet artifacts (checkpoint and ONNX, same weights), a small ONNX graph
with the contract's interface, TensorRT engine sidecars, DICOM series on disk, HU phantoms, a small prepared cache,
and the real CT data in tests/data.

Import as ``from tests.helpers import ...``: pyproject.toml's ``[tool.pytest.ini_options] pythonpath = ["."]`` puts
the repository root on sys.path (``tests`` is a namespace package, no __init__.py). Heavy imports (torch, onnx,
pydicom) stay inside the functions. Session fixtures built from these live in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sranet.runtime.sidecar import DeviceEnv

DATA_DIR = Path(__file__).resolve().parent / "data"
REAL_CT = DATA_DIR / "realct"  # real CT/MR files with their licences (see the LICENSE files there)
PATIENT_NAME, PATIENT_ID = "DOE^JANE", "SECRET-ID-4711"  # identifying tags written by write_dicom_series


# -- SRANet artifacts ---------------------------------------------------------------------------------------------
def tiny_model(seed: int = 0, preset: str = "tiny"):
    """SRANet(ModelConfig.preset(preset)) in eval mode, weights from torch.manual_seed(seed): the same every call."""
    import torch

    from sranet.config import ModelConfig
    from sranet.model.sranet import SRANet

    torch.manual_seed(seed)
    return SRANet(ModelConfig.preset(preset)).eval()


def write_checkpoint(path: str | Path, model=None, *, seed: int = 0, preset: str = "tiny", threshold: float = 0.5,
                     epoch: int = 0, metrics: dict | None = None) -> Path:
    """``model`` (default ``tiny_model(seed, preset)``) saved by sranet.model.checkpoint.save_checkpoint."""
    from sranet.config import PreprocessConfig
    from sranet.model.checkpoint import save_checkpoint

    model = model if model is not None else tiny_model(seed, preset)
    return save_checkpoint(path, model=model, preprocess_config=PreprocessConfig.for_model(model.cfg),
                           threshold=threshold, epoch=epoch, metrics=metrics or {}, train_config={})


def write_onnx(path: str | Path, model=None, *, seed: int = 0, threshold: float = 0.5) -> Path:
    """``model`` (default ``tiny_model(seed)``) through the exporter of `sranet export` (sranet.export.onnx
    .to_onnx_proto: ct (B,1,S,S,S) -> prob (B,), attention (B,N)) with its ArtifactInfo metadata and content digest
    (sranet.runtime.integrity.seal_onnx); no parity gate."""
    import onnx

    from sranet.config import PreprocessConfig
    from sranet.export.onnx import DEFAULT_OPSET, EXPORTER, to_onnx_proto
    from sranet.runtime.artifact import ArtifactInfo
    from sranet.runtime.integrity import seal_onnx

    model = model if model is not None else tiny_model(seed)
    proto = to_onnx_proto(model)
    info = ArtifactInfo(model.cfg, PreprocessConfig.for_model(model.cfg), threshold,
                        extra={"sranet.exporter": EXPORTER, "sranet.opset": str(DEFAULT_OPSET)})
    onnx.helper.set_model_props(proto, info.to_metadata())
    seal_onnx(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def save_tiny(folder: str | Path, *, name: str = "model", seed: int = 0,
              threshold: float = 0.5) -> tuple[Path, Path]:
    """The same SRANet(tiny) weights as ``folder/<name>.onnx`` (write_onnx) and ``folder/<name>.pt`` (checkpoint)."""
    folder = Path(folder)
    model = tiny_model(seed)
    pt_path = write_checkpoint(folder / f"{name}.pt", model, threshold=threshold)
    return write_onnx(folder / f"{name}.onnx", model, threshold=threshold), pt_path


def with_threshold(onnx_path: str | Path, out_path: str | Path, threshold: float) -> Path:
    """A copy of an ONNX artifact whose sranet metadata carries another decision threshold (same graph), sealed
    again (as an export with that threshold would be)."""
    import onnx

    from sranet.runtime.artifact import ArtifactInfo
    from sranet.runtime.integrity import seal_onnx

    proto = onnx.load(str(onnx_path))
    info = ArtifactInfo.from_metadata({p.key: p.value for p in proto.metadata_props}, path=onnx_path)
    info.threshold = threshold
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, info.to_metadata())
    seal_onnx(proto)
    onnx.save(proto, str(out_path))
    return Path(out_path)


def small_graph_onnx(path: str | Path, *, variant: str = "fp32", outputs=("prob", "attention")) -> Path:
    """A small graph with the contract's I/O and sranet metadata: ct (B,1,48,48,48) -> prob (B,), attention (B,64).

    variant "fp16" adds a float16 weight path (Cast to FLOAT16), "int8" adds a QuantizeLinear/DequantizeLinear pair,
    like the precision variants of `sranet export`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.runtime.artifact import ArtifactInfo

    S = 48
    nodes = [helper.make_node("AveragePool", ["ct"], ["pooled"], kernel_shape=[12, 12, 12], strides=[12, 12, 12]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1)]  # (B, 64)
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
    src = "flat"
    if variant == "fp16":
        nodes += [helper.make_node("Cast", ["flat"], ["flat16"], to=TensorProto.FLOAT16),
                  helper.make_node("Cast", ["flat16"], ["flat32"], to=TensorProto.FLOAT)]
        src = "flat32"
    if variant == "int8":
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "zero")]
        nodes += [helper.make_node("QuantizeLinear", ["flat", "scale", "zero"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"])]
        src = "dq"
    nodes += [helper.make_node("Softmax", [src], [outputs[1]], axis=1),
              helper.make_node("ReduceMean", [src, "axes"], ["mean"], keepdims=0),
              helper.make_node("Sigmoid", ["mean"], [outputs[0]])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("ct", TensorProto.FLOAT, ["batch", 1, S, S, S])],
        [helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info(outputs[1], TensorProto.FLOAT, ["batch", 64])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    cfg = ModelConfig.preset("tiny")
    meta = ArtifactInfo(model=cfg, preprocess=PreprocessConfig.for_model(cfg), threshold=0.5, precision=variant).to_metadata()
    helper.set_model_props(model, meta)
    from sranet.runtime.integrity import seal_onnx

    seal_onnx(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


# -- TensorRT engine sidecars (no TensorRT needed) ----------------------------------------------------------------
H100 = DeviceEnv(tensorrt="10.7.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                 cuda_runtime="12.6", cuda_driver="12.8")  # the machine write_engine records by default


RTX_BUILDER = DeviceEnv(tensorrt="1.7.1.116", gpu_name="", compute_capability="", flavour="tensorrt-rtx",
                        cuda_runtime="12", machine="x86_64", system="Linux")  # an ahead-of-time TensorRT-RTX build
RTX_OFFERED = ["7.5", "8.0", "8.6", "8.9", "12.0", "12.1"]  # TensorRT-RTX 1.7's targets


def write_engine(folder: Path, *, env: DeviceEnv = H100, targets: list[str] | None = None, **cli) -> Path:
    """``folder/model.engine`` (arbitrary bytes: the sidecar only hashes it) and its sidecar, built with `cli`
    options of EngineOptions.from_cli (precision defaults to fp16) on ``env``; ``targets`` (with a TensorRT-RTX
    ``env``, e.g. RTX_BUILDER) are the compute capabilities the plan was built for."""
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.export.sidecar import make_sidecar, write_sidecar
    from sranet.export.tensorrt import EngineOptions
    from sranet.runtime.artifact import ArtifactInfo

    engine = folder / "model.engine"
    engine.write_bytes(b"not a real plan, only hashed" * 10)
    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(b"onnx bytes")
    cfg = ModelConfig.preset("tiny")
    info = ArtifactInfo(model=cfg, preprocess=PreprocessConfig.for_model(cfg), threshold=0.42)
    options = EngineOptions.from_cli(cli.pop("precision", "fp16"), flavour=env.flavour, **cli)
    sidecar = make_sidecar(plan_path=engine, onnx_path=onnx_path, info=info, env=env,
                           options=options.to_dict(), profile={"ct": options.profile_shapes(cfg.input_size)},
                           build={"path": "trt10-fp16-builder-flag", "decisions": []}, source="runs/a/best.pt",
                           targets=None if targets is None else {"compute_capabilities": targets,
                                                                 "offered": RTX_OFFERED})
    write_sidecar(engine, sidecar)
    return engine


# -- volumes and DICOM --------------------------------------------------------------------------------------------
def phantom_hu(shape=(40, 64, 64), seed: int = 0) -> np.ndarray:
    """(D, H, W) float32 HU: air, soft tissue, and a bright 'femoral head' sphere at a seed-dependent place."""
    rng = np.random.default_rng(seed)
    d, h, w = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    hu = np.full(shape, 40.0) + rng.normal(0, 20, shape)
    c = rng.uniform(0.3, 0.7, 3) * np.array(shape)
    hu[((d - c[0]) * 2) ** 2 + (h - c[1]) ** 2 + (w - c[2]) ** 2 < 14**2] = 900.0
    hu[:, :4] = -1000.0
    return np.round(hu).astype(np.float32)


def write_dicom_series(folder: Path, hu: np.ndarray, spacing_mm=(2.0, 0.8, 0.8), origin_mm=(-60.0, -50.0, -700.0),
                       series_uid: str | None = None) -> Path:
    """A real CT series on disk with pydicom: ``hu`` (D, H, W) as axial slices (D along +z), int16 + rescale,
    spacing_mm (z, y, x), identifying tags PATIENT_NAME / PATIENT_ID set. Returns ``folder``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    for z in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{z:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = "CT", PATIENT_NAME, PATIENT_ID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.InstanceNumber = z + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin_mm[0], origin_mm[1], origin_mm[2] + z * spacing_mm[0]]
        ds.PixelSpacing = [spacing_mm[1], spacing_mm[2]]
        ds.SliceThickness = spacing_mm[0]
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (np.round(hu[z]) + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"{z:04d}.dcm", enforce_file_format=True)
    return folder


PELVIS_GRID = {"slices": 80, "slice_mm": 3.0}  # small whole-pelvis phantoms: 80 slices of 256 x 256


def write_pelvis_study(folder: Path, seed: int, *, dicom: bool = True, **kwargs):
    """A whole-pelvis phantom study (``sranet.data.synthetic_pelvis``, PELVIS_GRID unless given) on disk: a DICOM
    series under ``folder`` (identifying tags PATIENT_NAME / PATIENT_ID), or ``folder``.npy with a JSON geometry
    sidecar. Returns (path, the PelvisStudy with its truth)."""
    import json

    from sranet.data.dicom_write import write_dicom_series as write_series
    from sranet.data.synthetic_pelvis import generate_pelvis_study

    study = generate_pelvis_study(seed, **{**PELVIS_GRID, **kwargs})
    if dicom:
        write_series(study.hu, study.spacing_mm, folder, origin_mm=study.origin_mm, direction=study.direction,
                     patient_name=PATIENT_NAME, patient_id=PATIENT_ID, patient_position=study.patient_position)
        return folder, study
    path = folder.with_suffix(".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, study.hu.astype(np.int16))
    path.with_suffix(".json").write_text(json.dumps({"spacing_mm": list(study.spacing_mm),
                                                     "origin_mm": list(study.origin_mm),
                                                     "direction": np.asarray(study.direction).tolist()}))
    return path, study


def unpack_ge_series(dest: Path) -> Path:
    """The real GE CT series (28 axial 512x512 slices, tilted and irregular; dcm_qa_ct, BSD-2) from tests/data,
    unpacked under ``dest``; returns the folder holding its slices."""
    import tarfile

    with tarfile.open(REAL_CT / "dcm_qa_ct" / "GE.tar.xz") as tar:
        tar.extractall(dest, filter="data")
    return next(p.parent for p in sorted(Path(dest).rglob("*.dcm")))


# -- prepared cache -----------------------------------------------------------------------------------------------
def write_small_cache(root: Path, size: int = 48) -> Path:
    """A minimal prepared cache (docs/CONTRACTS.md layout): 4 train + 4 val cases of ``size``^3, labels alternate;
    positives carry a bright cube. Returns ``root``."""
    import json

    from sranet.config import PreprocessConfig
    from sranet.data.prepare import write_cases_csv

    for sub in ("volumes", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "cache.json").write_text(json.dumps({"preprocess": PreprocessConfig(output_size=size).to_dict(), "grid": 4}))
    rng = np.random.default_rng(0)
    rows = []
    for n in range(8):
        label, split = n % 2, ("train" if n < 4 else "val")
        vol = rng.normal(size=(size,) * 3).astype(np.float32)
        if label:
            vol[10:30, 10:30, 10:30] += 3
        np.save(root / "volumes" / f"c{n}.npy", vol)
        np.save(root / "masks" / f"c{n}.npy", ((vol > 1) * 255).astype(np.uint8))
        rows.append({"case_id": f"c{n}", "label": label, "split": split, "volume": f"volumes/c{n}.npy",
                     "mask": f"masks/c{n}.npy"})
    write_cases_csv(root, rows)
    return root
