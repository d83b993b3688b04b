"""OpenVINO backend: the same outputs as ONNX Runtime for the same fp32 artifact, the options it refuses, the
precision it sets (never OpenVINO's own default), and nothing written outside the user's folders."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sranet.errors import ArtifactError, InputError
from sranet.runtime.backends import open_backend
from tests.helpers import tiny_model, write_onnx

if importlib.util.find_spec("openvino") is None:  # not importorskip: a plain `import openvino` starts its telemetry
    pytest.skip("openvino is not installed (pip install 'sranet[openvino]')", allow_module_level=True)
torch = pytest.importorskip("torch")

from sranet.runtime.backends.openvino import OpenVinoBackend, import_openvino, read_info  # noqa: E402


def _inputs(size: int, n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, size, size, size), dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_ir(tmp_path_factory, tiny_artifacts):
    """The tiny checkpoint of tiny_artifacts as an fp32 OpenVINO IR, through `sranet export --openvino`'s exporter."""
    from sranet.export.openvino import export_openvino

    return export_openvino(tiny_artifacts[1], tmp_path_factory.mktemp("ir") / "tiny.xml", parity_cases=2).path


@pytest.mark.integration
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_onnx_matches_onnxruntime(tmp_path, preset):
    onnx_path = write_onnx(tmp_path / f"{preset}.onnx", tiny_model(0, preset))
    x = _inputs(tiny_model(0, preset).cfg.input_size)
    with open_backend(onnx_path, threads=1) as ort_b, OpenVinoBackend(onnx_path, threads=1) as ov_b:
        want, got = ort_b.infer(x), ov_b.infer(x)
    assert got["prob"].shape == (3,) and got["attention"].shape == (3, 64)
    np.testing.assert_allclose(got["prob"], want["prob"], atol=1e-5)
    np.testing.assert_allclose(got["attention"], want["attention"], atol=1e-5)


@pytest.mark.integration
def test_ir_opens_by_suffix_and_matches_onnxruntime(tiny_ir, tiny_artifacts):
    x = _inputs(48)
    with open_backend(tiny_ir, threads=1) as ov_b, open_backend(tiny_artifacts[0]) as ort_b:
        assert isinstance(ov_b, OpenVinoBackend)
        got, want = ov_b.infer(x), ort_b.infer(x)
        one_by_one = [ov_b.infer(x[i:i + 1]) for i in range(3)]  # batch 1 compiled apart from batch 3
    np.testing.assert_allclose(got["attention"], want["attention"], atol=1e-5)
    np.testing.assert_allclose(np.concatenate([o["prob"] for o in one_by_one]), got["prob"], atol=1e-6)


def test_ir_carries_the_artifact_info(tiny_ir, tiny_artifacts):
    from sranet.runtime.artifact import sha256_file
    from sranet.runtime.backends.onnxruntime import read_info as read_onnx_info

    info, ref = read_info(tiny_ir), read_onnx_info(tiny_artifacts[0])
    assert info.model == ref.model and info.preprocess == ref.preprocess and info.threshold == ref.threshold
    assert info.source_sha256 == sha256_file(tiny_artifacts[1]) and info.precision == "fp32"
    assert info.extra["sranet.runtime"] == "openvino" and info.extra["sranet.conv_impl"] == "direct"


def test_fp32_artifact_runs_in_f32_whatever_openvino_defaults_to(tiny_ir):
    """OpenVINO's CPU default is bf16 on CPUs with AVX512_BF16/AMX; an fp32 artifact must not inherit it."""
    with OpenVinoBackend(tiny_ir, threads=2) as b:
        applied = b.describe()["config_applied"]
    assert applied["INFERENCE_PRECISION_HINT"] == "f32"
    assert applied["PERFORMANCE_HINT"] == "LATENCY" and applied["INFERENCE_NUM_THREADS"] == "2"


@pytest.mark.parametrize(("options", "match"), [
    ({"device": "cuda:0"}, "CPU only"),
    ({"device": "gpu"}, "is not 'cpu' or 'cuda:N'"),
    ({"cuda_graphs": True}, "CUDA graphs"),
    ({"threads": -1}, "positive integer"),
    ({"threads": True}, "positive integer"),
    ({"max_batch": 0}, "positive integer"),
])
def test_refuses_options_it_cannot_honour(tiny_artifacts, options, match):
    with pytest.raises(InputError, match=match):
        OpenVinoBackend(tiny_artifacts[0], **options)


def test_threads_none_means_the_library_default(tiny_artifacts):
    with OpenVinoBackend(tiny_artifacts[0], threads=None) as b:
        assert "INFERENCE_NUM_THREADS" not in b.describe()["config_requested"]


def test_max_batch_is_enforced(tiny_artifacts):
    with OpenVinoBackend(tiny_artifacts[0], max_batch=2) as b, pytest.raises(InputError, match="batch size 3"):
        b.infer(_inputs(48))


def test_refuses_artifacts_it_was_not_gated_for(tmp_path, tiny_ir, tiny_artifacts):
    from tests.helpers import with_threshold

    fp16 = with_threshold(tiny_artifacts[0], tmp_path / "fp16.onnx", 0.5)
    import onnx

    model = onnx.load(fp16)
    next(p for p in model.metadata_props if p.key == "sranet.precision").value = "fp16"
    onnx.save(model, fp16)
    with pytest.raises(ArtifactError, match="fp16 artifact"):
        OpenVinoBackend(fp16)
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(Path(tiny_ir).read_bytes())  # no lonely.bin beside it
    with pytest.raises(ArtifactError, match="no weights file lonely.bin"):
        OpenVinoBackend(lonely)
    broken = tmp_path / "broken.xml"
    broken.write_text("<net><layers>")
    with pytest.raises(ArtifactError, match="not a readable OpenVINO IR"):
        read_info(broken)


def test_import_lifts_its_telemetry_block():
    ov = import_openvino()
    import openvino.tools.ovc.telemetry_utils as telemetry_utils

    assert telemetry_utils.tm.__name__ == "openvino.tools.ovc.telemetry_stub"  # OpenVINO's no-op client
    assert sys.modules.get("openvino_telemetry", "absent") is not None  # the block is gone again
    assert ov.__version__


def test_nothing_is_written_to_home(tmp_path, tiny_ir):
    """A fresh process with HOME pointing at an empty folder imports, loads, compiles and runs; the folder stays
    empty (OpenVINO's telemetry client would create HOME/intel on import)."""
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import json, sys, numpy as np\n"
        "from sranet.runtime.backends.openvino import OpenVinoBackend\n"
        f"b = OpenVinoBackend({str(tiny_ir)!r}, threads=1)\n"
        "out = b.infer(np.zeros((2, 1, 48, 48, 48), np.float32))\n"
        "import openvino.tools.ovc.utils as u, openvino.tools.ovc.convert_impl as c\n"
        "print(json.dumps({'prob': out['prob'].tolist(), 'stubs': [u.tm.__name__, c.tm.__name__]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}  # no telemetry opt-out
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(result["prob"]) == 2 and set(result["stubs"]) == {"openvino.tools.ovc.telemetry_stub"}
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
