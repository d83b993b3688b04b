"""Engine sidecar: written by the exporter, read and checked for compatibility before a plan is deserialised (no
TensorRT)."""

from __future__ import annotations

import json

import pytest

from sranet.config import ModelConfig
from sranet.errors import ArtifactError, EngineCompatibilityError
from sranet.runtime.sidecar import (
    DeviceEnv,
    check_sidecar,
    compatibility_problems,
    read_sidecar,
    rebuild_command,
    sidecar_info,
    sidecar_path,
)
from tests.helpers import H100, write_engine


def test_sidecar_sits_next_to_the_plan_and_round_trips(tmp_path):
    engine = write_engine(tmp_path, profile="1:4:16")
    assert sidecar_path(engine).name == "model.engine.json"
    data = read_sidecar(engine)
    assert data["tensorrt"] == "10.7.0"
    assert data["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert data["cuda_runtime"] == "12.6"
    assert data["precision"] == "fp16"
    assert data["profile"]["ct"] == [[1, 1, 48, 48, 48], [4, 1, 48, 48, 48], [16, 1, 48, 48, 48]]
    assert len(data["plan"]["sha256"]) == 64 and len(data["onnx"]["sha256"]) == 64
    assert data["build"]["path"] == "trt10-fp16-builder-flag"
    info = sidecar_info(data)
    assert info.threshold == pytest.approx(0.42) and info.model == ModelConfig.preset("tiny")
    assert info.preprocess.output_size == 48
    assert check_sidecar(engine, H100)["plan"]["sha256"] == data["plan"]["sha256"]


def test_another_tensorrt_version_is_refused_with_the_rebuild_command(tmp_path):
    engine = write_engine(tmp_path, profile="1:4:16", workspace_gib=2.0)
    here = DeviceEnv(tensorrt="10.8.0", gpu_name=H100.gpu_name, compute_capability="9.0")
    with pytest.raises(EngineCompatibilityError) as exc:
        check_sidecar(engine, here)
    message = str(exc.value)
    assert "built with TensorRT 10.7.0, this machine has TensorRT 10.8.0" in message
    assert f"Rebuild it on this machine: sranet export runs/a/best.pt --out {tmp_path / 'model.onnx'} --engine" in message
    assert "--fp16 --profile 1:4:16 --workspace-gib 2" in message


@pytest.mark.parametrize(
    ("here", "message"),
    [
        (DeviceEnv("10.7.0", "NVIDIA A100-SXM4-40GB", "8.0"), r"compute capability 9\.0\), this GPU is a NVIDIA A100"),
        (DeviceEnv("10.7.0", "NVIDIA H100 PCIe", "9.0"), "plans are tuned to one GPU model"),
    ],
)
def test_another_gpu_is_refused(tmp_path, here, message):
    engine = write_engine(tmp_path)
    with pytest.raises(EngineCompatibilityError, match=message):
        check_sidecar(engine, here)


def test_hardware_and_version_compatible_plans_relax_the_check(tmp_path):
    data = read_sidecar(write_engine(tmp_path, hardware_compatibility="ampere+", version_compatible=True))
    assert compatibility_problems(data, DeviceEnv("10.9.1", "NVIDIA L4", "8.9")) == []
    assert compatibility_problems(data, DeviceEnv("11.0.0", "NVIDIA A10", "8.6")) == []
    older = compatibility_problems(data, DeviceEnv("10.3.0", "NVIDIA L4", "8.9"))
    assert older and "newer than TensorRT 10.3.0" in older[0]
    turing = compatibility_problems(data, DeviceEnv("10.7.0", "Tesla T4", "7.5"))
    assert turing and "Ampere and newer" in turing[0]

    same_cc = read_sidecar(write_engine(tmp_path, hardware_compatibility="same-compute-capability"))
    assert compatibility_problems(same_cc, DeviceEnv("10.7.0", "NVIDIA H100 PCIe", "9.0")) == []
    assert compatibility_problems(same_cc, DeviceEnv("10.7.0", "NVIDIA L40S", "8.9"))


def test_a_replaced_plan_fails_its_checksum(tmp_path):
    engine = write_engine(tmp_path)
    engine.write_bytes(b"a different plan")
    with pytest.raises(ArtifactError, match="SHA-256 of the plan"):
        check_sidecar(engine, H100)


def test_missing_or_broken_sidecars_say_how_to_rebuild(tmp_path):
    engine = tmp_path / "lonely.plan"
    engine.write_bytes(b"plan")
    with pytest.raises(ArtifactError, match=r"no sidecar lonely.plan.json.*sranet export CHECKPOINT --engine"):
        check_sidecar(engine, H100)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="sidecar format is 'something-else'"):
        read_sidecar(engine)
    good = read_sidecar(write_engine(tmp_path))
    del good["gpu"]
    sidecar_path(engine).write_text(json.dumps(good))
    with pytest.raises(ArtifactError, match="sidecar lacks 'gpu'"):
        read_sidecar(engine)


def test_rebuild_command_carries_every_option(tmp_path):
    data = read_sidecar(write_engine(tmp_path, precision="int8", profile="2:8:32", timing_cache=str(tmp_path / "t.cache"),
                                     version_compatible=True, hardware_compatibility="ampere+"))
    cmd = rebuild_command(data, "out dir/model.engine")
    assert cmd.startswith("sranet export runs/a/best.pt --out 'out dir/model.onnx' --engine --int8 --calib MANIFEST")
    for piece in ("--profile 2:8:32", f"--timing-cache {tmp_path / 't.cache'}", "--version-compatible",
                  "--hardware-compatibility ampere+"):
        assert piece in cmd
    dla = read_sidecar(write_engine(tmp_path, precision="fp16", dla_core=1))
    assert rebuild_command(dla, "m.engine").endswith("--dla-core 1")
