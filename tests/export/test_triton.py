"""Triton repository: the generated config.pbtxt is parsed back and its structure checked (no Triton needed)."""

from __future__ import annotations

import json
import re

import pytest

from sranet.errors import ArtifactError, InputError
from sranet.export.triton import write_triton_repo
from tests.helpers import small_graph_onnx, write_engine

TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_.]*)|(?P<p>[{}\[\]:,]))')


def parse_pbtxt(text: str) -> dict:
    """A small protobuf text-format reader: messages -> dicts, every field -> list of values, scalars typed."""
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot tokenise at {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        tokens.append((kind, json.loads(m.group(kind)) if kind == "str" else m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    i = 0

    def value():
        nonlocal i
        kind, tok = tokens[i]
        if tok == "{":
            i += 1
            return message("}")
        if tok == "[":
            i += 1
            items = []
            while tokens[i][1] != "]":
                items.append(value())
                if tokens[i][1] == ",":
                    i += 1
            i += 1
            return items
        i += 1
        if kind == "num":
            return float(tok) if "." in tok else int(tok)
        if kind == "id" and tok in ("true", "false"):
            return tok == "true"
        return tok

    def message(end):
        nonlocal i
        out: dict = {}
        while i < len(tokens) and tokens[i][1] != end:
            name = tokens[i][1]
            i += 1
            if tokens[i][1] == ":":
                i += 1
            v = value()
            out.setdefault(name, []).extend(v if isinstance(v, list) else [v])  # `f: [a, b]` == repeated f
            if i < len(tokens) and tokens[i][1] == ",":
                i += 1
        i += 1
        return out

    return message(None)


def one(cfg, key):
    values = cfg[key]
    assert len(values) == 1, f"{key} appears {len(values)} times"
    return values[0]


def check_io(cfg, S=48, N=64):
    (ct,) = cfg["input"]
    assert one(ct, "name") == "ct" and one(ct, "data_type") == "TYPE_FP32" and ct["dims"] == [1, S, S, S]
    outputs = {one(o, "name"): o for o in cfg["output"]}
    assert set(outputs) == {"prob", "attention"}
    assert outputs["prob"]["dims"] == [1] and one(outputs["prob"], "reshape") == {"shape": []}  # per-sample scalar
    assert outputs["attention"]["dims"] == [N]
    assert all(one(o, "data_type") == "TYPE_FP32" for o in outputs.values())
    (group,) = cfg["instance_group"]
    assert one(group, "kind") == "KIND_GPU" and one(group, "count") == 1
    (warmup,) = cfg["model_warmup"]
    assert one(warmup, "batch_size") == 1
    inputs = one(warmup, "inputs")
    assert one(inputs, "key") == "ct"
    warm = one(inputs, "value")
    assert one(warm, "zero_data") is True and warm["dims"] == [1, S, S, S]
    params = {one(p, "key"): one(one(p, "value"), "string_value") for p in cfg["parameters"]}
    assert json.loads(params["sranet.preprocess_config"])["output_size"] == S
    return params


def test_onnx_repository(tmp_path):
    model_dir = write_triton_repo(small_graph_onnx(tmp_path / "m.onnx"), tmp_path / "repo", max_batch=16)
    assert model_dir == tmp_path / "repo" / "sranet"
    assert (model_dir / "1" / "model.onnx").read_bytes() == (tmp_path / "m.onnx").read_bytes()
    cfg = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert one(cfg, "name") == "sranet" and one(cfg, "platform") == "onnxruntime_onnx"
    assert one(cfg, "max_batch_size") == 16
    assert one(cfg, "dynamic_batching")["preferred_batch_size"] == [4, 8, 16]
    params = check_io(cfg)
    assert float(params["sranet.threshold"]) == 0.5


def test_plan_repository_takes_its_batch_sizes_from_the_profile(tmp_path):
    engine = write_engine(tmp_path, profile="1:4:16")
    model_dir = write_triton_repo(engine, tmp_path / "repo", max_batch=8, model_name="avn_fp16")
    assert (model_dir / "1" / "model.plan").is_file() and (model_dir / "1" / "model.plan.json").is_file()
    cfg = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert one(cfg, "name") == "avn_fp16" and one(cfg, "platform") == "tensorrt_plan"
    assert one(cfg, "max_batch_size") == 8
    assert one(cfg, "dynamic_batching")["preferred_batch_size"] == [4, 8]
    params = check_io(cfg)
    assert float(params["sranet.threshold"]) == 0.42 and params["sranet.precision"] == "fp16"


@pytest.mark.parametrize(
    ("batch", "max_batch", "message"),
    [("1:4:16", 32, r"exceeds the plan's profile max 16.*--profile 1:4:32"), ("2:4:16", 8, r"starts at 2"),
     ("1:4:16", 0, r"max_batch=0 must be an integer >= 1")],
)
def test_plan_profile_limits_are_enforced(tmp_path, batch, max_batch, message):
    with pytest.raises(InputError, match=message) as caught:
        write_triton_repo(write_engine(tmp_path, profile=batch), tmp_path / "repo", max_batch=max_batch)
    assert "--triton-max-batch" not in str(caught.value)  # `sranet export` has no such option


def test_bad_names_and_artifacts(tmp_path):
    onnx_path = small_graph_onnx(tmp_path / "m.onnx")
    with pytest.raises(InputError, match="Triton model name '../x'"):
        write_triton_repo(onnx_path, tmp_path / "repo", max_batch=4, model_name="../x")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="a Triton repository is made from an .onnx, .engine or .plan"):
        write_triton_repo(tmp_path / "m.pt", tmp_path / "repo", max_batch=4)
    with pytest.raises(ArtifactError, match="does not exist"):
        write_triton_repo(tmp_path / "nope.onnx", tmp_path / "repo", max_batch=4)


def test_onnx_repository_for_a_cpu_only_server(tmp_path):
    onnx_path = small_graph_onnx(tmp_path / "m.onnx")
    gpu = parse_pbtxt((write_triton_repo(onnx_path, tmp_path / "g", max_batch=4) / "config.pbtxt").read_text())
    cpu = parse_pbtxt((write_triton_repo(onnx_path, tmp_path / "c", max_batch=4, device="cpu") / "config.pbtxt").read_text())
    assert one(one(gpu, "instance_group"), "kind") == "KIND_GPU"
    assert one(one(cpu, "instance_group"), "kind") == "KIND_CPU"
    with pytest.raises(InputError, match="Did you mean 'gpu'"):
        write_triton_repo(onnx_path, tmp_path / "x", max_batch=4, device="gpus")


def test_a_plan_cannot_be_served_on_cpus(tmp_path):
    with pytest.raises(InputError, match="runs on a GPU only"):
        write_triton_repo(write_engine(tmp_path, profile="1:4:8"), tmp_path / "repo", max_batch=8, device="cpu")
