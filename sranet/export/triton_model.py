"""Triton Python-backend model: ``ct`` -> ``prob``, ``attention`` through ``sranet.runtime`` (no torch).

``sranet export --triton REPO --triton-backend python`` copies this file to ``REPO/<model>/1/model.py``, next to the
artifact (``model.onnx``, or a TensorRT / TensorRT-RTX plan with its sidecar) that the config's ``sranet.artifact``
parameter names. Triton's Python backend runs it in its stub process, which embeds the Python that the stub was
built for and sees only the packages on its ``sys.path``: start ``tritonserver`` with ``PYTHONPATH`` naming the
site-packages folder where sranet and its dependencies are installed (the model folder's README.md has the exact
command). Without it, ``initialize`` fails with that instruction instead of a bare ImportError.

Dynamic batching: Triton hands ``execute`` several requests at once (their batch sizes add up to at most
``max_batch_size``). Each request's input is checked on its own, so a malformed request gets its own error
response; the valid ones run as one batch through the runtime's backend and are split back per request.
"""

import json
from pathlib import Path

import numpy as np


class TritonPythonModel:
    """The Python-backend entry points: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        try:
            from sranet.runtime.backends.base import open_backend
        except ImportError as exc:
            raise pb_utils.TritonModelException(
                f"cannot import sranet in Triton's Python stub ({exc}). Start tritonserver with PYTHONPATH set to the "
                "site-packages folder where sranet is installed (see README.md next to config.pbtxt).") from exc
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        artifact = Path(args["model_repository"]) / args["model_version"] / params["sranet.artifact"]
        gpu = args["model_instance_kind"] == "GPU"
        device = f"cuda:{args['model_instance_device_id']}" if gpu else "cpu"
        threads = int(params.get("sranet.threads") or 0) or None
        self.backend = open_backend(artifact, device=device, threads=None if gpu else threads,
                                    max_batch=int(config["max_batch_size"]) or None)
        self.pb_utils = pb_utils

    def execute(self, requests):
        pb_utils = self.pb_utils
        responses: list = [None] * len(requests)
        batch, rows = [], []
        for i, request in enumerate(requests):
            ct = pb_utils.get_input_tensor_by_name(request, "ct").as_numpy()
            try:
                batch.append(self.backend.check_input(ct))
                rows.append((i, ct.shape[0]))
            except Exception as exc:  # noqa: BLE001 - this request's error goes back to its client
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))
        if batch:
            try:
                out = self.backend.infer(np.concatenate(batch))
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
                for i, _ in rows:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))
                return responses
            start = 0
            for i, n in rows:
                prob = out["prob"][start:start + n].reshape(n, 1)  # dims [1] per case
                attention = out["attention"][start:start + n]
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("prob", np.ascontiguousarray(prob, dtype=np.float32)),
                    pb_utils.Tensor("attention", np.ascontiguousarray(attention, dtype=np.float32))])
                start += n
        return responses

    def finalize(self):
        if getattr(self, "backend", None) is not None:
            self.backend.close()
