"""Exactly-once distributed ingest of the whole Imagenette val set on 2 real `pixseek worker`s.

    flock /tmp/pixseek-bench.lock .venv/bin/python -m bench.distributed_imagenette [--shard-size 64]

The 3,925 images of ../shared/datasets/imagenette/val (folder labels: the wnid) are ingested
with `pixseek ingest --distributed --labels-from-folders`, a tiny random CLIP (eager, no ONNX
export) and two `pixseek worker` processes on the Redis at 127.0.0.1:6379 (a database claimed
like tests/conftest.py does, a queue of its own), three times, each into a fresh store:
  (a) the embedded store: the ingesting process is its only writer, the points come back;
  (b) qdrant-client's local mode (PIXSEEK_QDRANT_URL=local:DIR), also written by the ingester;
  (c) the embedded store again, one worker SIGKILLed (its whole process group) right after it
      logged "ingest shard ...: delivery 1" for a shard, once it had finished 10: the shard
      comes back after the broker's visibility timeout and the other worker redoes it.
Checked for each: exactly 3,925 points, 3,925 distinct ids, no (root, source) twice, every
point's labels == [its class folder] == the wnid of labels.csv, every file of labels.csv stored,
finite non-zero dense vectors, and the summary's counts (added 3,925, nothing failed, skipped,
updated or duplicated) (bench/_exactly_once.py). (c) also checks that the killed shard never
finished on the victim and was delivered again (delivery 2) to the survivor; across the runs,
the same ids in (a), (b), (c) and (c)'s dense vectors equal to (a)'s. Exits 1 when any check
fails (the worker logs are kept then). Results: bench/results/distributed_imagenette.json/.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import cpu, load, write_results
from bench._exactly_once import (
    COLLECTION,
    Points,
    across,
    check_points,
    failures,
    stored_points,
    summary_counts,
    truth,
)
from bench.distributed_ingest import IMAGENETTE, claim_db, start_worker

VAL = IMAGENETTE / "val"
START_RE = re.compile(r"ingest shard (\S+): (\d+) files, delivery 1\b")
DONE_RE = re.compile(r"Task pixseek\.ingest_shard\[(\S+)\] succeeded")


class Worker:
    """`pixseek worker` in its own process group, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen | None = None
        self.mark = 0

    def start(self) -> None:
        try:
            self.proc = start_worker(self.env, self.log)
        except SystemExit as exc:  # start_worker's one-line exit: here, keep the logs and report
            raise RuntimeError(str(exc)) from None

    def output(self, since: int = 0) -> str:
        with self.log.open("rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", "replace")

    def set_mark(self) -> None:
        self.mark = self.log.stat().st_size

    def since_mark(self) -> str:
        return self.output(self.mark)

    def kill(self, sig: int = signal.SIGKILL, wait: float = 30) -> None:
        """Signal the whole group (the worker and its pool child); SIGKILL what is left."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(wait)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc = None


def again(shard: tuple[str, str]) -> str:
    """The survivor's log line for the killed shard's second delivery."""
    return f"ingest shard {shard[0]}: {shard[1]} files, delivery 2"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def start_ingest(env: dict[str, str], shard_size: int) -> subprocess.Popen:
    args = ["ingest", str(VAL), "-c", COLLECTION, "--labels-from-folders", "--json"]
    args += ["--distributed", "--shard-size", str(shard_size)]
    return subprocess.Popen(
        [sys.executable, "-m", "pixseek", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:  # interrupted: its whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def run_case(
    name: str,
    env: dict[str, str],
    pool: list[Worker],
    args: argparse.Namespace,
    want: dict[str, str],
    qdrant_local: Path | None = None,
    kill: bool = False,
) -> tuple[dict[str, Any], Points]:
    for worker in pool:
        worker.set_mark()
    record: dict[str, Any] = {"case": name, "load_before": load(), "uptime_before": uptime()}
    started = time.perf_counter()
    proc = start_ingest(env, args.shard_size)
    victim, survivor = pool
    shard: tuple[str, str] | None = None
    killed_at = redone_at = None
    try:
        deadline = time.monotonic() + args.timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: ingest did not finish in {args.timeout} s")
            if kill and shard is None:
                text = victim.since_mark()
                done = set(DONE_RE.findall(text))
                starts = START_RE.findall(text)
                if len(done) >= args.kill_after and starts and starts[-1][0] not in done:
                    victim.kill(signal.SIGKILL, wait=10)
                    killed_at = time.perf_counter()
                    shard = starts[-1]
            if shard and redone_at is None and again(shard) in survivor.since_mark():
                redone_at = time.perf_counter()
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    record["wall_s"] = round(time.perf_counter() - started, 2)
    record["load_after"], record["uptime_after"] = load(), uptime()
    record["exit_code"] = proc.returncode
    record["stderr_tail"] = err[-1500:] if proc.returncode else ""
    try:
        summary = json.loads(out)
    except json.JSONDecodeError:
        summary = {"seconds": 0.0}
    record["summary"] = summary_counts(summary)
    record["wall_images_per_s"] = round(len(want) / record["wall_s"], 2)
    record["shards_per_worker"] = [len(DONE_RE.findall(w.since_mark())) for w in pool]
    record["redeliveries"] = sum(w.since_mark().count(", delivery 2") for w in pool)
    if kill:
        if shard is None:
            record["kill"] = {"victim_finished_it": True, "redelivered": False, "shard": None}
        else:
            survivor_log = survivor.since_mark()
            record["kill"] = {
                "shard": shard[0],
                "files": int(shard[1]),
                "victim_shards_done_before": len(set(DONE_RE.findall(victim.since_mark()))),
                "killed_after_s": round(killed_at - started, 2) if killed_at else None,
                "victim_finished_it": shard[0] in DONE_RE.findall(victim.since_mark()),
                "redelivered": again(shard) in survivor_log,
                "redelivered_after_kill_s": (
                    round(redone_at - killed_at, 2) if redone_at and killed_at else None
                ),
                "redone_by_survivor": shard[0] in DONE_RE.findall(survivor_log),
            }
    points = (
        stored_points(Path(env["PIXSEEK_DATA_DIR"]), qdrant_local) if not proc.returncode else []
    )
    record["stored"] = check_points(points, want) if points else {}
    record["failed_checks"] = failures(record, len(want))
    print(json.dumps(record), flush=True)
    return record, points


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Distributed ingest of all Imagenette val, 2 workers, exactly once "
        "(bench/distributed_imagenette.py)",
        "",
        f"`{report['command']}`, {report['date']}. {report['images']} images "
        f"(`{report['dataset']}`, folder labels = wnid), tiny random CLIP, eager fp32, "
        f"2 `pixseek worker` processes (1 thread each) on real Redis, shards of "
        f"{report['shard_size']} files, broker visibility timeout "
        f"{report['visibility_timeout_s']} s. Machine: {report['cpus']} CPUs ({report['cpu']}), "
        "shared with other agents.",
        "",
        "| case | points | distinct ids | duplicate (root, source) | wrong labels | missing "
        "| bad vectors | added / failed | ingest s (summary) | wall s | img/s (wall) "
        "| shards per worker | load 1-min before -> after | checks |",
        "|" + "---|" * 14,
    ]
    for r in report["runs"]:
        p, s = r["stored"], r["summary"]
        verdict = "all pass" if not r["failed_checks"] else "FAIL: " + "; ".join(r["failed_checks"])
        cells = [
            r["case"],
            *(p.get(k) for k in ("points", "distinct_ids", "duplicate_root_source")),
            *(p.get(k) for k in ("wrong_labels", "missing_files", "bad_vectors")),
            f"{s.get('added')} / {s.get('failed')}",
            s.get("seconds"),
            r["wall_s"],
            r["wall_images_per_s"],
            r["shards_per_worker"],
            f"{r['load_before'][0]} -> {r['load_after'][0]}",
            verdict,
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    cross = report["across_runs"]
    lines += [
        "",
        f"Across the runs: the same 3,925 ids in (a), (b) and (c): "
        f"`{cross['same_ids_in_every_run']}`; largest difference between a vector of (c) and "
        f"the same point's in (a): {cross['max_abs_vector_diff_c_vs_a']}.",
    ]
    kill = next((r["kill"] for r in report["runs"] if "kill" in r), None)
    lines.append("")
    if kill:
        lines += [
            f"Kill (c): the victim was SIGKILLed (process group) {kill.get('killed_after_s')} s "
            f"into the run, after it had finished {kill.get('victim_shards_done_before')} shards "
            f"and logged `ingest shard {kill.get('shard')}: {kill.get('files')} files, delivery 1`"
            f"; it never finished that shard (`{not kill.get('victim_finished_it')}`), the "
            f"survivor logged `delivery 2` for it {kill.get('redelivered_after_kill_s')} s after "
            f"the kill (the visibility timeout) and finished it "
            f"(`{kill.get('redone_by_survivor')}`). The wall time of (c) includes that wait.",
            "",
        ]
    lines += [
        "Checks per case: ingest exit 0; summary added == 3,925 with 0 failed, updated, "
        "skipped, duplicates; stored points == distinct ids == 3,925; no (root, source) twice; "
        "one root; every point's labels == [its folder] == labels.csv's wnid; the stored files "
        "== labels.csv's val files; every point's dense vectors finite and non-zero. "
        "Machine load (`uptime`):",
        "",
    ]
    for r in report["runs"]:
        lines.append(f"- {r['case']}: before `{r['uptime_before']}`, after `{r['uptime_after']}`")
    lines += [
        "",
        "Wall time is the whole `pixseek ingest` process (interpreter and torch start, plan, "
        "shards, finish), the summary's seconds from plan to finish. Two workers share the two "
        "cores and the model is tiny: these are correctness runs, throughput with ViT-B-32 "
        "is in distributed_ingest.md.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--visibility-timeout", type=int, default=30)
    parser.add_argument("--kill-after", type=int, default=10, help="victim shards done first")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per ingest")
    args = parser.parse_args()
    if not VAL.is_dir():
        print(f"{VAL} is missing: see ../shared/datasets/README.md", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    want = truth()

    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-dist-imagenette-"))
    redis_url, claim = claim_db()
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")},
        "PIXSEEK_CLIP_MODEL": f"local-dir:{write_random_clip(work / 'model')}",
        "PIXSEEK_DEVICE": "cpu",
        "PIXSEEK_BACKEND": "eager",
        "PIXSEEK_PRECISION": "fp32",
        "PIXSEEK_BROKER_URL": redis_url,
        "PIXSEEK_JOB_QUEUE": f"bench-imagenette-{uuid.uuid4().hex[:8]}",
        "PIXSEEK_JOB_TIME_LIMIT": "600",
        "PIXSEEK_BROKER_VISIBILITY_TIMEOUT": str(args.visibility_timeout),
        "PIXSEEK_DATA_DIR": str(work / "worker-data"),  # never opened: results travel back
        "PIXSEEK_THREADS": "1",
        "PIXSEEK_DECODE_WORKERS": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    pool = [Worker(base, work / f"worker-{n}.log") for n in range(2)]
    runs: list[dict[str, Any]] = []
    stores: list[Points] = []
    try:
        for worker in pool:
            worker.start()
        cases = [
            ("(a) embedded store", False, False),
            ("(b) qdrant-client local mode", True, False),
            ("(c) embedded store, 1 worker SIGKILLed mid-shard", False, True),
        ]
        for n, (name, qdrant, kill) in enumerate(cases):
            env = {**base, "PIXSEEK_DATA_DIR": str(work / f"data-{n}")}
            local = work / f"qdrant-{n}" if qdrant else None
            if local is not None:
                env["PIXSEEK_QDRANT_URL"] = f"local:{local}"
            record, points = run_case(name, env, pool, args, want, local, kill)
            runs.append(record)
            stores.append(points)
    except RuntimeError as exc:
        print(f"distributed_imagenette: {exc}; worker logs in {work}", file=sys.stderr)
        return 1
    finally:
        for worker in pool:
            worker.kill(signal.SIGTERM)
        for key in claim.scan_iter(count=1000):
            claim.delete(key)
    report = {
        "command": "python -m bench.distributed_imagenette " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "dataset": "../shared/datasets/imagenette/val",
        "images": len(want),
        "model": "tiny random CLIP (pixseek.models.random_weights), eager fp32",
        "workers": 2,
        "shard_size": args.shard_size,
        "visibility_timeout_s": args.visibility_timeout,
        "runs": runs,
        "across_runs": (cross := across(stores)),
        "all_checks_pass": all(not r["failed_checks"] for r in [*runs, cross]),
        **cpu(),
    }
    write_results("distributed_imagenette", report, markdown(report))
    if report["all_checks_pass"]:
        shutil.rmtree(work, ignore_errors=True)
        print("all checks pass", flush=True)
    else:
        print(f"SOME CHECKS FAILED; worker logs in {work}", flush=True)
    return 0 if report["all_checks_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
