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
from tests.helpers import H100, RTX_BUILDER, write_engine


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


# -- TensorRT-RTX plans, platforms, version compatibility ----------------------------------------------------------
def rtx_here(cc: str, name: str = "NVIDIA GeForce RTX 4090", version: str = "1.7.1.116", **kw) -> DeviceEnv:
    return DeviceEnv(tensorrt=version, gpu_name=name, compute_capability=cc, flavour="tensorrt-rtx", **kw)


def test_a_tensorrt_rtx_plan_runs_on_any_gpu_among_its_targets(tmp_path):
    engine = write_engine(tmp_path, env=RTX_BUILDER, targets=["8.6", "8.9"], profile="1:2:4")
    data = read_sidecar(engine)
    assert data["flavour"] == "tensorrt-rtx" and data["targets"]["compute_capabilities"] == ["8.6", "8.9"]
    assert data["platform"] == {"machine": "x86_64", "system": "Linux", "jetson": False}
    for cc, name in (("8.9", "NVIDIA L4"), ("8.9", "NVIDIA GeForce RTX 4090 Laptop GPU"), ("8.6", "NVIDIA A10")):
        assert compatibility_problems(data, rtx_here(cc, name, machine="x86_64", system="Linux")) == []
    assert compatibility_problems(data, rtx_here("8.9", machine="x86_64", system="Windows")) == []  # portable OS


def test_a_gpu_outside_the_targets_is_refused_with_the_rebuild_command(tmp_path):
    engine = write_engine(tmp_path, env=RTX_BUILDER, targets=["8.9"], profile="1:2:4")
    here = rtx_here("12.0", "NVIDIA GeForce RTX 5090", machine="x86_64", system="Linux")
    with pytest.raises(EngineCompatibilityError) as exc:
        check_sidecar(engine, here)
    text = str(exc.value)
    assert "built for compute capabilities 8.9; this GPU is a NVIDIA GeForce RTX 5090 (compute capability 12.0)" in text
    assert "--engine-flavour tensorrt-rtx --compute-capability 8.9,12.0 --profile 1:2:4" in text


def test_a_gpu_tensorrt_rtx_has_no_target_for_gets_the_tensorrt_command(tmp_path):
    """An H200 (compute capability 9.0) is no TensorRT-RTX target at all: the hint builds a TensorRT plan."""
    engine = write_engine(tmp_path, env=RTX_BUILDER, targets=["8.0", "8.9"])
    h200 = rtx_here("9.0", "NVIDIA H200", machine="x86_64", system="Linux")
    with pytest.raises(EngineCompatibilityError) as exc:
        check_sidecar(engine, h200)
    text = str(exc.value)
    assert "TensorRT-RTX 1.7.1.116 has no target for compute capability 9.0" in text
    assert "build a TensorRT plan on this machine: sranet export runs/a/best.pt" in text
    assert "--engine-flavour" not in text.split("machine:")[-1]


def test_tensorrt_rtx_plans_need_the_same_release(tmp_path):
    data = read_sidecar(write_engine(tmp_path, env=RTX_BUILDER, targets=["8.9"]))
    problems = compatibility_problems(data, rtx_here("8.9", version="1.8.0.10", machine="x86_64", system="Linux"))
    assert problems == ["it was built with TensorRT-RTX 1.7.1.116, this machine has TensorRT-RTX 1.8.0.10 (TensorRT-RTX "
                        "engines run only with the release that built them)"]


def test_a_plan_of_the_other_flavour_is_refused(tmp_path):
    rtx = read_sidecar(write_engine(tmp_path, env=RTX_BUILDER, targets=["8.9"]))
    trt_here = DeviceEnv("10.7.0", "NVIDIA L4", "8.9", machine="x86_64", system="Linux")
    assert "a TensorRT-RTX plan loads only in TensorRT-RTX; this runtime is TensorRT 10.7.0" in \
        compatibility_problems(rtx, trt_here)[0]
    (tmp_path / "trt").mkdir()
    engine = write_engine(tmp_path / "trt")
    with pytest.raises(EngineCompatibilityError, match=r"a TensorRT plan loads only in TensorRT; this runtime is "
                                                       r"TensorRT-RTX") as exc:
        check_sidecar(engine, rtx_here("9.0", "NVIDIA H100 80GB HBM3"))
    assert "--fp16 --engine-flavour tensorrt-rtx --profile 1:1:8" in str(exc.value)  # rebuilt for the runtime here


@pytest.mark.parametrize(("built", "here", "message"), [
    ({"machine": "x86_64", "system": "Linux"}, {"machine": "aarch64", "system": "Linux"},
     "it was built on x86_64, this machine is aarch64"),
    ({"machine": "x86_64", "system": "Windows"}, {"machine": "x86_64", "system": "Linux"},
     "it was built on Windows, this machine runs Linux"),
])
def test_a_plan_from_another_platform_is_refused(tmp_path, built, here, message):
    engine = write_engine(tmp_path, env=DeviceEnv(**{**H100.to_dict(), **built}))
    problems = compatibility_problems(read_sidecar(engine), DeviceEnv(**{**H100.to_dict(), **here}))
    assert len(problems) == 1 and problems[0].startswith(message)


def test_hardware_compatible_plans_are_refused_on_jetson(tmp_path):
    data = read_sidecar(write_engine(tmp_path, hardware_compatibility="ampere+"))
    orin = DeviceEnv("10.7.0", "Orin", "8.7", jetson=True)
    assert compatibility_problems(data, orin) == ["it was built hardware-compatible (ampere+), which Jetson does not "
                                                  "support"]
    assert compatibility_problems(data, DeviceEnv("10.7.0", "NVIDIA L4", "8.9")) == []


@pytest.mark.parametrize(("built", "here", "ok"), [
    ("10.3.0", "10.16.1", True), ("10.7.0", "11.1.0", True), ("11.0.0", "11.4.1", True),
    ("10.7.0", "12.0.0", False), ("11.1.0", "11.0.0", False), ("8.6.1", "11.1.0", False), ("8.6.1", "10.3.0", True),
])
def test_version_compatible_plans_load_one_major_version_later_at_most(tmp_path, built, here, ok):
    data = read_sidecar(write_engine(tmp_path, env=DeviceEnv(**{**H100.to_dict(), "tensorrt": built}),
                                     version_compatible=True))
    problems = compatibility_problems(data, DeviceEnv(**{**H100.to_dict(), "tensorrt": here}))
    assert (problems == []) is ok, problems
