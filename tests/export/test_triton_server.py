"""A real Triton server, started by the tests on 127.0.0.1 (free ports) from the server environment that `make
triton-server` creates (nvidia-pytriton's tritonserver and Python backend): the repository `sranet export --triton
--triton-backend python` writes is loaded, answered over HTTP and gRPC, and compared with the runtime's own answer
for the same inputs; concurrent clients show dynamic batching in the server's statistics. Marker `triton`
(`make test-triton`, which .ci/run runs)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sranet.errors import DependencyMissingError

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_artifacts):
    """(server, onnx path, inputs): the tiny ONNX behind a CPU Python-backend model, and preprocessed phantoms."""
    from sranet.bench.tritonserver import find_server_env, start_tritonserver
    from sranet.export.triton import write_triton_repo

    try:
        env = find_server_env()
    except DependencyMissingError as exc:
        pytest.skip(f"no Triton server environment: {exc}")
    onnx_path, _ = tiny_artifacts
    repo = tmp_path_factory.mktemp("triton_repo")
    write_triton_repo(onnx_path, repo, max_batch=8, device="cpu", backend="python")
    server = start_tritonserver(repo, server_env=env)
    yield server, onnx_path, phantom_inputs(onnx_path)
    server.stop()


def phantom_inputs(onnx_path, n: int = 6) -> np.ndarray:
    """(n, 1, S, S, S) network inputs: HU phantoms through the runtime's preprocessing with the artifact's config."""
    from sranet.runtime.backends.onnxruntime import read_info
    from sranet.runtime.preprocess import preprocess
    from sranet.runtime.volume import Volume
    from tests.helpers import phantom_hu

    cfg = read_info(onnx_path).preprocess
    vols = [preprocess(Volume(hu=phantom_hu(seed=s), spacing_mm=(2.0, 0.8, 0.8)), cfg).input for s in range(n)]
    return np.stack(vols)[:, None].astype(np.float32)


def runtime_answer(onnx_path, x):
    from sranet.runtime.backends.base import open_backend

    with open_backend(onnx_path) as backend:
        return backend.infer(x), backend.info.threshold


def http_infer(url, x):
    import tritonclient.http as th

    client = th.InferenceServerClient(url)
    inp = th.InferInput("ct", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("sranet", [inp])
    return result.as_numpy("prob").reshape(-1), result.as_numpy("attention")


def grpc_infer(url, x):
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(url)
    inp = tg.InferInput("ct", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("sranet", [inp])
    return result.as_numpy("prob").reshape(-1), result.as_numpy("attention")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_answers_what_the_runtime_answers(served, protocol):
    server, onnx_path, x = served
    expected, threshold = runtime_answer(onnx_path, x)
    infer = http_infer if protocol == "http" else grpc_infer
    url = server.http_url if protocol == "http" else server.grpc_url
    probs, attentions = [], []
    for start, size in ((0, 1), (1, 2), (3, 3)):  # batches of 1, 2 and 3 cases
        prob, attention = infer(url, x[start:start + size])
        assert prob.shape == (size,) and attention.shape == (size, expected["attention"].shape[1])
        probs.append(prob)
        attentions.append(attention)
    prob, attention = np.concatenate(probs), np.concatenate(attentions)
    assert np.abs(prob - expected["prob"]).max() < 1e-5
    assert np.abs(attention - expected["attention"]).max() < 1e-5
    assert ((prob >= threshold) == (expected["prob"] >= threshold)).all()  # 0 decision flips
    assert (attention.argmax(1) == expected["attention"].argmax(1)).all()  # the same top patch


def test_concurrent_clients_are_batched_by_the_server(served):
    import tritonclient.http as th

    server, onnx_path, x = served
    expected, _ = runtime_answer(onnx_path, x)
    client = th.InferenceServerClient(server.http_url)
    before = client.get_inference_statistics("sranet")["model_stats"][0]
    errors, answers = [], {}

    def worker(k: int) -> None:
        try:
            for r in range(4):
                i = (k + r) % len(x)
                prob, _ = http_infer(server.http_url, x[i:i + 1])
                answers[(k, r)] = (i, float(prob[0]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(answers) == 32
    for i, prob in answers.values():  # each client got its own case's answer back, whatever batch it rode in
        assert abs(prob - float(expected["prob"][i])) < 1e-5
    after = client.get_inference_statistics("sranet")["model_stats"][0]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 32
    assert executions < inferences, "no request was batched with another"
    batched = [s for s in after["batch_stats"] if s["batch_size"] > 1]
    assert batched, after["batch_stats"]


def test_a_bad_request_gets_its_own_error_and_the_model_keeps_serving(served):
    from tritonclient.utils import InferenceServerException

    server, onnx_path, x = served
    bad = x[:1].copy()
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(InferenceServerException, match="NaN or infinite"):
        http_infer(server.http_url, bad)
    expected, _ = runtime_answer(onnx_path, x[:1])
    prob, _ = grpc_infer(server.grpc_url, x[:1])
    assert abs(float(prob[0]) - float(expected["prob"][0])) < 1e-5
