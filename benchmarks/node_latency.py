"""`sranet serve` against a real Orthanc on this machine: latency from the last instance acknowledged to the results
stored in Orthanc, and studies per minute with several studies in flight.

What it does, in one command:
  1. a model artifact: by default a paper-configuration SRANet (128^3, seeded random weights: latency does not depend
     on the weights) saved as a checkpoint and exported with `sranet export`'s gated exporter (``--artifact`` takes
     an existing one instead);
  2. Orthanc (the Debian binary, tests/node/orthanc.py) on 127.0.0.1 with free ports, and `sranet serve ARTIFACT`
     as a subprocess sending its results to it (``--idle`` seconds of quiet before a study is processed);
  3. a whole-pelvis phantom (``generate_pelvis_study``: 512 x 512 x 300, 0.8 mm pixels, 1 mm slices, both hips),
     written as a fresh DICOM study (new UIDs) for every study sent;
  4. one warm-up study (recorded as ``first_study``), then ``--studies`` studies one after the other: each sent by
     C-STORE from this process on one association; t_last = the moment the last C-STORE was acknowledged; Orthanc's
     REST API is polled every ``--poll-ms`` for the study's results; t_stored = the first poll that sees all of them
     (the count the node's health line gives) and t_sr = the first that sees the SR.
     latency = t_stored - t_last; beyond_idle = latency - idle (the configured wait, which a site chooses);
  5. ``--rounds`` throughput rounds: ``--in-flight`` studies sent at once, each on its own association; studies per
     minute = in_flight * 60 / (last results stored - first send).
The node's health line for each study (process_s, send_s, the real idle wait, its stage timings) is kept with it.

    .venv/bin/python benchmarks/node_latency.py                    # about 3 minutes on a 2-core machine
    .venv/bin/python benchmarks/node_latency.py --quick --out /tmp/node.json   # tiny model, small study: the script

Results go to benchmarks/results/node_latency.json with the machine, versions (Orthanc's too), command, date and the
load average before and after: on a shared machine other processes inflate every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(REPO))  # tests.node.orthanc: the Orthanc the node tests use
sys.path.insert(0, str(Path(__file__).parent))  # study_e2e.export_model


class Phantom:
    """One phantom volume, written as a new study (new Study, Series, SOP Instance and Frame of Reference UIDs)
    each time ``write`` is called: the node sends each study's results once, so every study must be new to it."""

    def __init__(self, slices: int, pixel_mm: float, slice_mm: float, preset: str, seed: int = 3):
        from sranet.data.synthetic_pelvis import generate_pelvis_study

        self.study = generate_pelvis_study(seed, preset=preset, slices=slices, slice_mm=slice_mm, pixel_mm=pixel_mm,
                                           stages={"L": 2, "R": 0}, patient_position="HFS")
        self.count = 0

    @property
    def shape(self) -> list[int]:
        return list(self.study.hu.shape)

    def write(self, folder: Path) -> tuple[str, list[Path]]:
        from pydicom.uid import generate_uid

        from sranet.data.dicom_write import write_dicom_series

        self.count += 1
        uid = generate_uid()
        s = self.study
        files = write_dicom_series(s.hu, s.spacing_mm, folder, origin_mm=s.origin_mm, direction=s.direction,
                                   patient_name="PHANTOM^BENCH", patient_id=f"BENCH{self.count:04d}", study_uid=uid,
                                   patient_position=s.patient_position)
        return uid, files


def send_study(files: list[Path], port: int, stamps: dict) -> None:
    """C-STORE ``files`` (streamed from disk) on one association; stamps t_first / t_last (monotonic, s)."""
    import pydicom
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import CTImageStorage

    _config.STORE_SEND_CHUNKED_DATASET = True  # send each file as written, no decode and re-encode here
    syntax = pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(CTImageStorage, [syntax])  # the files' own: sent as they are
    assoc = ae.associate("127.0.0.1", port, ae_title="SRANET")
    if not assoc.is_established:
        raise ConnectionError(f"no association with the node on port {port}")
    stamps["t_first"] = time.monotonic()
    try:
        for f in files:
            status = assoc.send_c_store(f)
            if not status or int(status.Status) != 0:
                raise RuntimeError(f"the node answered C-STORE of {f.name} with {status!r}")
        stamps["t_last"] = time.monotonic()
    finally:
        if assoc.is_established:
            assoc.release()


def echo_ok(port: int) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(Verification)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="SRANET")
    except Exception:  # noqa: BLE001 - not listening yet
        return False
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and int(status.Status) == 0
    finally:
        assoc.release()


class Watcher:
    """Polls Orthanc for the results of the given studies; a study is stored once its non-CT instances number what
    the node's health line says it sent. Health lines are matched to studies in the order they are written (one
    study at a time), or not at all (several in flight: then all results count once the node wrote that many lines)."""

    def __init__(self, orthanc, spool: Path, poll_s: float):
        self.orthanc, self.spool, self.poll_s = orthanc, spool, poll_s

    def health(self) -> list[dict]:
        path = self.spool / "health.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def results_in_orthanc(self, uid: str, ids: dict) -> tuple[int, bool]:
        if uid not in ids:
            found = self.orthanc.request("POST", "/tools/lookup", uid.encode())
            study = next((x["ID"] for x in found if x["Type"] == "Study"), None)
            if study is None:
                return 0, False
            ids[uid] = study
        series = self.orthanc.get(f"/studies/{ids[uid]}/series")
        modalities = [s["MainDicomTags"].get("Modality", "") for s in series]
        count = sum(len(s["Instances"]) for s in series if s["MainDicomTags"].get("Modality") != "CT")
        return count, "SR" in modalities

    def wait(self, uids: list[str], lines_before: int, timeout_s: float) -> tuple[dict[str, dict], list[dict]]:
        """{uid: {t_sr, t_stored, results}} (monotonic s) once every study's results are in Orthanc, and the health
        lines the node wrote for them."""
        ids: dict[str, str] = {}
        seen: dict[str, dict] = {uid: {} for uid in uids}
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            for uid in uids:
                if "t_stored" in seen[uid]:
                    continue
                count, has_sr = self.results_in_orthanc(uid, ids)
                if has_sr and "t_sr" not in seen[uid]:
                    seen[uid]["t_sr"] = now
                if count:
                    seen[uid].setdefault("counts", {})[count] = seen[uid].get("counts", {}).get(count, now)
            lines = self.health()[lines_before:]
            if len(lines) >= len(uids):
                failed = [ln for ln in lines if ln.get("state") != "sent"]
                if failed:
                    raise RuntimeError(f"the node did not send a study's results: {failed}")
                expected = [ln["results"] for ln in lines]
                for uid, n in zip(uids, expected if len(uids) == 1 else [max(expected)] * len(uids), strict=True):
                    reached = [t for c, t in seen[uid].get("counts", {}).items() if c >= n]
                    if reached:
                        seen[uid]["t_stored"], seen[uid]["results"] = min(reached), n
                if all("t_stored" in seen[uid] for uid in uids):
                    return seen, lines[:len(uids)]
            if now > deadline:
                raise TimeoutError(f"results not all in Orthanc after {timeout_s:.0f} s: {seen}, lines {lines}")
            time.sleep(max(0.0, self.poll_s - (time.monotonic() - now)))


def node_stages(line: dict) -> dict:
    """What the node's health line says about one study (durations only; no identifiers are in it)."""
    keep = ("received", "results", "idle_wait_s", "process_s", "send_s", "last_instance_to_done_s")
    out = {k: line[k] for k in keep if k in line}
    summary = line.get("summary", {})
    out["timings_ms"] = summary.get("timings_ms", {})
    out["hips"] = summary.get("hips", {})
    if "last_instance_to_done_s" in line and "idle_wait_s" in line:
        out["done_beyond_idle_wait_s"] = round(line["last_instance_to_done_s"] - line["idle_wait_s"], 3)
    return out


def stage_medians(runs: list[dict]) -> dict[str, float]:
    """Median over studies of each node stage (s): the real idle wait, processing (choose the series, read, locate,
    the rest of predict: crops, inference, overview picture; build the DICOM objects) and the send to Orthanc."""
    def median(values):
        return round(statistics.median(values), 3)

    nodes = [r["node"] for r in runs]
    out = {k: median([n[k] for n in nodes]) for k in ("idle_wait_s", "process_s", "send_s", "done_beyond_idle_wait_s")}
    for k in ("choose_series", "read", "locate", "predict", "build_outputs"):
        out[f"{k}_s"] = median([n["timings_ms"].get(k, 0.0) / 1e3 for n in nodes])
    out["predict_after_locate_s"] = median([(n["timings_ms"].get("predict", 0.0) - n["timings_ms"].get("read", 0.0)
                                             - n["timings_ms"].get("locate", 0.0)) / 1e3 for n in nodes])
    return out


def one_study(phantom: Phantom, tmp: Path, port: int, watcher: Watcher, idle_s: float, timeout_s: float) -> dict:
    folder = tmp / f"study{phantom.count + 1:03d}"
    uid, files = phantom.write(folder)
    before = len(watcher.health())
    stamps: dict[str, float] = {}
    send_study(files, port, stamps)
    seen, [line] = watcher.wait([uid], before, timeout_s)
    _remove(folder)
    got = seen[uid]
    latency = got["t_stored"] - stamps["t_last"]
    return {"send_s": round(stamps["t_last"] - stamps["t_first"], 3), "latency_s": round(latency, 3),
            "beyond_idle_s": round(latency - idle_s, 3), "sr_latency_s": round(got["t_sr"] - stamps["t_last"], 3),
            "node": node_stages(line)}


def in_flight_round(phantom: Phantom, tmp: Path, port: int, watcher: Watcher, n: int, idle_s: float,
                    timeout_s: float) -> dict:
    studies = [phantom.write(tmp / f"study{phantom.count + 1:03d}") for _ in range(n)]
    before = len(watcher.health())
    stamps = [{} for _ in studies]
    errors: list[BaseException] = []

    def run(files, st):
        try:
            send_study(files, port, st)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(files, st)) for (_, files), st in zip(studies, stamps, strict=True)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    seen, lines = watcher.wait([uid for uid, _ in studies], before, timeout_s)
    for _, files in studies:
        _remove(files[0].parent)
    t_end = max(s["t_stored"] for s in seen.values())
    elapsed = t_end - t0
    return {"studies": n, "elapsed_s": round(elapsed, 3), "studies_per_min": round(n * 60.0 / elapsed, 3),
            "all_sent_s": round(max(st["t_last"] for st in stamps) - t0, 3),
            "latency_s": sorted(round(seen[uid]["t_stored"] - st["t_last"], 3)
                                for (uid, _), st in zip(studies, stamps, strict=True)),
            "node": [node_stages(line) for line in lines]}


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def versions(orthanc) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("pynetdicom", "highdicom"):  # the node's libraries, beyond sranet.bench.env's list
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["orthanc"] = str(orthanc.get("/system").get("Version"))
    return out


def start_node(artifact: Path, spool: Path, port: int, dest_port: int, args, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sranet.cli.main", "serve", str(artifact), "--spool", str(spool), "--port", str(port),
           "--dest", f"ORTHANC@127.0.0.1:{dest_port}", "--idle", str(args.idle), "--workers", str(args.workers),
           "--min-free-mb", "1"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.no_overview:
        cmd.append("--no-overview")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not echo_ok(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"sranet serve did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=5, help="studies sent one after the other (after one warm-up)")
    ap.add_argument("--in-flight", type=int, default=4, help="studies sent at once in a throughput round")
    ap.add_argument("--rounds", type=int, default=2, help="throughput rounds")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--idle", type=float, default=2.0, help="the node's --idle (seconds of quiet before processing)")
    ap.add_argument("--workers", type=int, default=1, help="the node's --workers")
    ap.add_argument("--threads", type=int, default=None, help="the node's --threads (default: its own)")
    ap.add_argument("--no-overview", action="store_true", help="the node's --no-overview (no Secondary Capture)")
    ap.add_argument("--preset", default="paper", help="model configuration exported with random weights")
    ap.add_argument("--artifact", type=Path, default=None, help="an existing artifact instead of the export")
    ap.add_argument("--poll-ms", type=float, default=20.0)
    ap.add_argument("--timeout-s", type=float, default=300.0, help="longest wait for one study's (round's) results")
    ap.add_argument("--quick", action="store_true", help="tiny model, 256 x 256 x 80 study, 1 + 1 studies, 2 in "
                                                         "flight once: checks the script only")
    ap.add_argument("--preliminary", action="store_true", help="mark the result as taken on a busy machine")
    ap.add_argument("--out", type=Path, default=RESULTS / "node_latency.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.preset, args.slices, args.studies, args.in_flight, args.rounds = "tiny", 80, 1, 2, 1

    from study_e2e import export_model

    from sranet.bench.env import collect_environment, machine_label
    from sranet.bench.stats import summarize
    from tests.node.orthanc import find_orthanc, free_port, start_orthanc

    if find_orthanc() is None:
        raise SystemExit("the Orthanc binary is not installed (Debian package 'orthanc')")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sranet-node-bench-") as tmp:
        tmp = Path(tmp)
        t = time.monotonic()
        artifact = args.artifact or export_model(tmp, args.preset)
        print(f"artifact ready ({time.monotonic() - t:.0f} s)", file=sys.stderr)
        pixel_mm, slice_mm, grid = (0.8, 1.0, "512") if not args.quick else (1.5, 3.0, "256")
        phantom = Phantom(args.slices, pixel_mm, slice_mm, grid)
        node_port = free_port()
        orthanc = start_orthanc(tmp / "orthanc", node_port)
        node = None
        try:
            spool = tmp / "spool"
            node = start_node(artifact, spool, node_port, orthanc.dicom_port, args, tmp / "node.log")
            watcher = Watcher(orthanc, spool, args.poll_ms / 1e3)
            study_args = (tmp, node_port, watcher, args.idle, args.timeout_s)
            first = one_study(phantom, *study_args)
            print(f"warm-up study: latency {first['latency_s']:.2f} s", file=sys.stderr)
            runs = []
            for i in range(args.studies):
                runs.append(one_study(phantom, *study_args))
                print(f"study {i + 1}/{args.studies}: sent in {runs[-1]['send_s']:.1f} s, results "
                      f"{runs[-1]['latency_s']:.2f} s after the last instance", file=sys.stderr)
            rounds = []
            for i in range(args.rounds):
                rounds.append(in_flight_round(phantom, tmp, node_port, watcher, args.in_flight, args.idle,
                                              args.timeout_s))
                print(f"round {i + 1}/{args.rounds}: {args.in_flight} studies in {rounds[-1]['elapsed_s']:.1f} s, "
                      f"{rounds[-1]['studies_per_min']:.2f} studies/min", file=sys.stderr)
            lib = versions(orthanc)
        finally:
            if node is not None:
                node.terminate()
                try:
                    node.wait(60)
                except subprocess.TimeoutExpired:
                    node.kill()
            orthanc.stop()
        artifact_name = "given" if args.artifact else f"{args.preset} configuration, seeded random weights (fp32 ONNX, --target onnxruntime-cpu)"

    env = collect_environment()
    env["libraries"].update(lib)
    beyond = [r["beyond_idle_s"] * 1e3 for r in runs]
    per_min = [r["studies_per_min"] for r in rounds]
    result = {
        "benchmark": "node_latency",
        "preliminary": bool(args.preliminary),
        **({"note": "taken on a machine shared with other jobs (load average below): not a quiet-machine figure"}
           if args.preliminary else {}),
        "machine": machine_label(env, gpu=False),
        "environment": env,
        "load_average_1_5_15": {"before": list(load_before), "after": list(os.getloadavg())},
        "settings": {"model": artifact_name, "study_shape": phantom.shape, "pixel_mm": pixel_mm,
                     "slice_mm": slice_mm, "idle_s": args.idle, "workers": args.workers, "threads": args.threads,
                     "overview": not args.no_overview,
                     "studies": args.studies, "in_flight": args.in_flight, "rounds": args.rounds,
                     "poll_ms": args.poll_ms, "sender": "pynetdicom in the benchmark, one association per study",
                     "latency": "results stored in Orthanc (REST poll) - last C-STORE acknowledged",
                     "beyond_idle": "latency - idle_s"},
        "latency_beyond_idle_ms": summarize(beyond),
        "latency_ms": summarize([r["latency_s"] * 1e3 for r in runs]),
        "node_stage_p50_s": stage_medians(runs),
        "studies_per_min": {"median": statistics.median(per_min), "each": per_min},
        "target_beyond_idle_s": 3.0,
        "first_study": first,
        "studies_in_sequence": runs,
        "in_flight_rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    b = result["latency_beyond_idle_ms"]
    print(f"beyond the {args.idle:g} s idle wait: p50 {b['p50_ms'] / 1e3:.2f} s, p90 {b['p90_ms'] / 1e3:.2f} s "
          f"(n={b['n']}); {args.in_flight} in flight: {statistics.median(per_min):.2f} studies/min; "
          f"load {load_before[0]:.1f}", file=sys.stderr)
    print(f"wrote {args.out} ({result['machine']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
