"""``sranet export``: checkpoint -> gated ONNX (fp32 | fp16 | int8 QDQ) -> optional TensorRT plan and Triton repository.

Order: every option is validated first (engine options with ``EngineOptions.from_cli``, no TensorRT needed; the
signing key is read), then the ONNX is exported and gated against PyTorch, then the plan is built and the Triton
repository written. A failed gate prints the parity numbers and exits 1 without writing a model. Every artifact
carries a content digest; ``--sign KEY`` adds an Ed25519 signature to the ONNX, the plan's sidecar or the OpenVINO IR
(``sranet.runtime.integrity``), which ``sranet predict --trusted-key`` requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import check_output_folder, cli_errors
from sranet.errors import InputError, check_choice
from sranet.runtime.artifact import DEFAULT_PROFILE

_DEFAULT_PROFILE = ":".join(map(str, DEFAULT_PROFILE))


@cli_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (best.pt / last.pt from `sranet train`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write, e.g. model.onnx.")],
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 weights and compute, float32 inputs/outputs.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="int8 QDQ model calibrated on --calib volumes.")] = False,
    calib: Annotated[Path | None, typer.Option("--calib", help="Manifest CSV of typical crops for int8 calibration "
                                                "(train/val cases are used).")] = None,
    calib_limit: Annotated[int, typer.Option("--calib-limit", help="Most calibration volumes to read.")] = 32,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (18-24; TensorRT 10.0 parses up to 20).")] = 18,
    parity_cases: Annotated[int, typer.Option("--parity-cases", help="Phantom volumes in the parity gate.")] = 4,
    conv_impl: Annotated[str | None, typer.Option("--conv-impl", help="direct: Conv nodes (for TensorRT and any "
                                                  "runtime; the default without --target). spectral: fp32 only; the "
                                                  "Conv3d layers whose DFT form halves the arithmetic become MatMuls. "
                                                  "s2d, s2d-spectral: OpenVINO IR only; conv1+pool as an 8-channel "
                                                  "convolution. Default with --target: the target's choice."
                                                  )] = None,
    target: Annotated[str | None, typer.Option("--target", help="onnxruntime-cpu | openvino-cpu | tensorrt: export "
                                               "the graph (and artifact) that runs fastest on that runtime "
                                               "(docs/export.md).")] = None,
    openvino: Annotated[bool, typer.Option("--openvino", help="Write an OpenVINO IR (--out model.xml, weights in "
                                           "model.bin), gated on OpenVINO.")] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="OpenVINO IR computed in bf16 (needs AVX512_BF16 or AMX, "
                                       "here and where it runs).")] = False,
    engine: Annotated[bool, typer.Option("--engine", help="Also build a TensorRT plan (<out>.engine + .json sidecar); "
                                         "needs TensorRT and an NVIDIA GPU, or TensorRT-RTX (no GPU needed).")] = False,
    engine_flavour: Annotated[str, typer.Option("--engine-flavour", help="tensorrt: TensorRT 10/11, built on the GPU "
                                                "it runs on (data-centre GPUs, Jetson). tensorrt-rtx: TensorRT-RTX, "
                                                "built ahead of time for --compute-capability targets (RTX and "
                                                "Ampere/Ada/Blackwell cards, DGX Spark).")] = "tensorrt",
    compute_capability: Annotated[list[str] | None, typer.Option(
        "--compute-capability", help="TensorRT-RTX targets, e.g. 8.9 or 8.6,8.9,12.0 (repeatable; default: every "
        "target the installed TensorRT-RTX offers for the precision).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Engine optimisation profile / Triton batch "
                                                f"range MIN:OPT:MAX (default {_DEFAULT_PROFILE}).")] = None,
    workspace_gib: Annotated[float | None, typer.Option("--workspace-gib", help="TensorRT tactic workspace limit in "
                                                        "GiB (default 4).")] = None,
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="TensorRT timing cache file, read and "
                                                      "updated (faster rebuilds).")] = None,
    version_compatible: Annotated[bool, typer.Option("--version-compatible", help="Build a plan later TensorRT "
                                                     "versions can load.")] = False,
    hardware_compatibility: Annotated[str | None, typer.Option("--hardware-compatibility", help="'ampere+' for a "
                                                               "plan that runs on any Ampere or newer GPU.")] = None,
    dla_core: Annotated[int | None, typer.Option("--dla-core", help="Jetson DLA core (fp16/int8; Conv3d falls back "
                                                 "to the GPU).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Verbose TensorRT log and the layer report.")] = False,
    triton: Annotated[Path | None, typer.Option("--triton", help="Write a Triton model repository here for the "
                                                "plan (with --engine) or the ONNX.")] = None,
    triton_backend: Annotated[str, typer.Option("--triton-backend", help="native: Triton's onnxruntime/tensorrt "
                                                "backend. python: a Python-backend model that runs the artifact "
                                                "through sranet.runtime (needed for TensorRT-RTX plans).")] = "native",
    triton_device: Annotated[str, typer.Option("--triton-device", help="gpu (KIND_GPU) or cpu (KIND_CPU; ONNX "
                                               "only).")] = "gpu",
    sign: Annotated[Path | None, typer.Option("--sign", help="Ed25519 private key (PEM, unencrypted) to sign what "
                                              "is written (ONNX, the plan's sidecar, OpenVINO IR); `sranet predict "
                                              "--trusted-key PUB` then accepts only what this key signed.")] = None,
) -> None:
    """Export CHECKPOINT to ONNX (input ct (B,1,S,S,S), outputs prob (B,) and attention (B,64)), gated against PyTorch."""
    if fp16 + int8 + bf16 > 1:
        raise InputError("more than one of --fp16, --int8 and --bf16 was given; choose one precision.")
    precision = "fp16" if fp16 else "int8" if int8 else "bf16" if bf16 else "fp32"
    from sranet.export.targets import route_export

    route = route_export(target, openvino=openvino, precision=precision, conv_impl=conv_impl, engine=engine,
                         triton=triton is not None, out=out)
    _check_options(checkpoint, int8=int8, calib=calib, conv_impl=conv_impl, engine=engine, profile=profile,
                   triton=triton,
                   engine_only={"--workspace-gib": workspace_gib is not None,
                                "--timing-cache": timing_cache is not None,
                                "--version-compatible": version_compatible,
                                "--hardware-compatibility": hardware_compatibility is not None,
                                "--dla-core": dla_core is not None, "--verbose": verbose,
                                "--engine-flavour": engine_flavour != "tensorrt",
                                "--compute-capability": bool(compute_capability)})
    _check_triton(triton, triton_backend=triton_backend, triton_device=triton_device, engine=engine,
                  engine_flavour=engine_flavour)
    options, max_batch = _engine_options(
        precision, engine=engine, profile=profile, triton=triton, workspace_gib=workspace_gib,
        timing_cache=timing_cache, version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility, dla_core=dla_core, verbose=verbose,
        flavour=engine_flavour, compute_capabilities=compute_capability)
    signing_key = None
    if sign is not None:
        from sranet.runtime.integrity import load_signing_key

        signing_key = load_signing_key(sign)  # a bad key stops the command before any work
    conv_impl = _graph_for(route, checkpoint, precision)
    if route.openvino:
        _export_openvino(checkpoint, out, precision, conv_impl, opset, parity_cases, signing_key)
        return
    result = _export_onnx(checkpoint, out, opset=opset, precision=precision, calib=calib, calib_limit=calib_limit,
                          parity_cases=parity_cases, conv_impl=conv_impl, signing_key=signing_key)
    artifact = _build_engine(result, options, checkpoint, signing_key) if engine else result.path
    if triton is not None:
        from sranet.export.triton import write_triton_repo

        folder = write_triton_repo(artifact, triton, max_batch=max_batch, device=triton_device,
                                   backend=triton_backend)
        typer.echo(f"wrote Triton model {folder} ({triton_backend} backend, max_batch_size {max_batch})")
        if triton_backend == "python":
            typer.echo(f"  start Triton with the packages of this environment importable: see {folder / 'README.md'}")


def _check_options(checkpoint: Path, *, int8: bool, calib: Path | None, conv_impl: str | None, engine: bool,
                   profile: str | None, triton: Path | None, engine_only: dict[str, bool]) -> None:
    """Refuse contradictory options before any work (the precision/target/graph combination is checked by
    ``route_export``)."""
    if int8 and calib is None:
        raise InputError("--int8 needs calibration volumes.",
                         hint="Add --calib MANIFEST (a manifest CSV of typical crops; 16-64 cases is plenty).")
    if calib is not None and not int8:
        raise InputError("--calib is only used with --int8.", hint="Add --int8, or drop --calib.")
    stray = [name for name, given in engine_only.items() if given]
    if stray and not engine:
        raise InputError(f"{', '.join(stray)} only apply to a TensorRT engine.", hint="Add --engine, or drop them.")
    if profile is not None and not (engine or triton):
        raise InputError("--profile sets the engine profile or the Triton batch range.",
                         hint="Add --engine and/or --triton REPO, or drop --profile.")
    if conv_impl == "spectral" and engine:
        raise InputError("--conv-impl spectral is an ONNX Runtime (CPU) graph; a TensorRT plan is built from the "
                         "direct graph, where TensorRT picks its own convolution kernels.",
                         hint="Drop --conv-impl spectral for --engine, or export twice (one ONNX per runtime).")
    if not checkpoint.is_file():
        raise InputError(f"checkpoint {str(checkpoint)!r} does not exist.",
                         hint="Pass a best.pt or last.pt written by `sranet train`.")
    if triton is not None:
        check_output_folder(triton, "--triton")


def _graph_for(route, checkpoint: Path, precision: str) -> str:
    """The graph form: the one asked for, else the target's choice (printed with its reason), else direct."""
    if route.conv_impl is not None or route.target is None:
        return route.conv_impl or "direct"
    from sranet.export.targets import choose_graph
    from sranet.model.checkpoint import load_checkpoint

    conv_impl, why = choose_graph(route.target, precision, load_checkpoint(checkpoint).model_config)
    typer.echo(f"--target {route.target.name}: graph {conv_impl}. {why}")
    return conv_impl


def _check_triton(triton: Path | None, *, triton_backend: str, triton_device: str, engine: bool,
                  engine_flavour: str) -> None:
    """The Triton options, before any work: a TensorRT-RTX plan has no native Triton backend."""
    from sranet.export.triton import TRITON_BACKENDS

    check_choice("--triton-backend", triton_backend, TRITON_BACKENDS, InputError)
    check_choice("--triton-device", triton_device, ("gpu", "cpu"), InputError)
    if triton is None and (triton_backend != "native" or triton_device != "gpu"):
        raise InputError("--triton-backend and --triton-device describe the Triton repository.",
                         hint="Add --triton REPO, or drop them.")
    if triton is not None and engine and engine_flavour == "tensorrt-rtx" and triton_backend == "native":
        raise InputError("Triton has no backend for TensorRT-RTX plans (its tensorrt_plan backend is TensorRT's).",
                         hint="Add --triton-backend python: the model then runs the plan through sranet.runtime.")
    if triton is not None and engine and triton_device == "cpu":
        raise InputError("a TensorRT plan runs on a GPU only; --triton-device cpu serves the ONNX.",
                         hint="Drop --engine for a CPU Triton server, or use --triton-device gpu.")


def _engine_options(precision: str, *, engine: bool, profile: str | None, triton: Path | None, workspace_gib,
                    timing_cache, version_compatible, hardware_compatibility, dla_core, verbose, flavour,
                    compute_capabilities):
    """(EngineOptions or None, Triton max batch), validated without TensorRT."""
    from sranet.runtime.artifact import DEFAULT_MAX_BATCH

    if not (engine or profile is not None):
        return None, DEFAULT_MAX_BATCH
    from sranet.export.tensorrt import EngineOptions, parse_profile

    profile = profile or _DEFAULT_PROFILE
    min_batch, opt_batch, max_batch = parse_profile(profile)
    if engine and triton is not None and min_batch != 1:  # refused by write_triton_repo, but only after the build
        raise InputError(f"--profile {profile} starts at {min_batch}, but Triton may send a batch of 1 to the plan.",
                         hint=f"Use --profile 1:{opt_batch}:{max_batch} with --triton.")
    if not engine:
        return None, max_batch
    options = EngineOptions.from_cli(
        precision, profile=profile, workspace_gib=4.0 if workspace_gib is None else workspace_gib,
        timing_cache=timing_cache, version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility, dla_core=dla_core, verbose=verbose, flavour=flavour,
        compute_capabilities=compute_capabilities)
    return options, max_batch


def _gated(export, *args, **kwargs):
    """``export(*args, **kwargs)``; a failed parity gate prints its numbers, then raises."""
    from sranet.errors import ParityGateError

    try:
        result = export(*args, **kwargs)
    except ParityGateError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            typer.echo(report.summary(), err=True)
        raise
    typer.echo(result.parity.summary())
    return result


def _export_onnx(checkpoint: Path, out: Path, **kwargs):
    """The gated ONNX export; a failed gate prints its numbers, then raises."""
    from sranet.export.onnx import export_onnx

    calib = kwargs.pop("calib")
    result = _gated(export_onnx, checkpoint, out, calib_manifest=calib, log=typer.echo, **kwargs)
    typer.echo(result.trt_ops.summary())
    signed = ", signed" if kwargs.get("signing_key") is not None else ""
    typer.echo(f"wrote {result.path} ({result.info.precision}, opset {result.opset}, sha256 {result.sha256[:12]}..."
               f"{signed})")
    typer.echo(f"wrote {result.parity_path}")
    return result


def _build_engine(result, options, checkpoint: Path, signing_key=None) -> Path:
    """The TensorRT plan next to the ONNX; where TensorRT is missing, say so (the ONNX is already written)."""
    import importlib.util

    from sranet.errors import DependencyMissingError
    from sranet.export.tensorrt import build_engine
    from sranet.runtime.devices import TRT_INSTALL_HINT, TRT_RTX_INSTALL_HINT
    from sranet.runtime.sidecar import FLAVOUR_MODULES

    engine_path = result.path.with_suffix(".engine")
    if importlib.util.find_spec(FLAVOUR_MODULES[options.flavour]) is None:
        rtx = options.flavour == "tensorrt-rtx"
        raise DependencyMissingError(
            f"--engine needs {'TensorRT-RTX' if rtx else 'TensorRT'}, which is not installed here. The ONNX is written "
            f"({result.path}); build the plan where it is installed with the same command"
            + ("." if rtx else f", or with trtexec --onnx={result.path.name}."),
            hint=TRT_RTX_INSTALL_HINT if rtx else TRT_INSTALL_HINT)
    sidecar = build_engine(result.path, engine_path, options, source=str(checkpoint))
    if signing_key is not None:
        from sranet.runtime.integrity import sign_engine

        sign_engine(engine_path, signing_key)
    targets = (sidecar.get("targets") or {}).get("compute_capabilities")
    typer.echo(f"wrote {engine_path} and {engine_path.name}.json ({sidecar['flavour']} {sidecar['tensorrt']}"
               + (f", compute capabilities {', '.join(targets)}" if targets else "") + ")"
               + (" (signed)" if signing_key is not None else ""))
    return engine_path


def _export_openvino(checkpoint: Path, out: Path, precision: str, conv_impl: str, opset: int, parity_cases: int,
                     signing_key=None):
    from sranet.export.openvino import export_openvino

    result = _gated(export_openvino, checkpoint, out, precision=precision, conv_impl=conv_impl, opset=opset,
                    parity_cases=parity_cases, log=typer.echo, signing_key=signing_key)
    typer.echo(f"wrote {result.path} and {result.path.with_suffix('.bin').name} (OpenVINO IR, {precision}, graph "
               f"{conv_impl}, sha256 {result.sha256['xml'][:12]}... / {result.sha256['bin'][:12]}...)")
    typer.echo(f"wrote {result.parity_path}")
