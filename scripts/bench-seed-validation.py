#!/usr/bin/env python3
"""Measures the seed's own validation path, for comparison with `cargo bench --bench pipeline -- contract`.

Two numbers, per payload, for the seed's example payload (string numbers included):
  seed path            json.loads(body) + CXoneDataActionPayload.model_validate(dict)   (what seed_service.py does)
  model_validate_json  CXoneDataActionPayload.model_validate_json(body)                 (pydantic's fastest path)

The pydantic models are taken verbatim from ../shared/reference/seed_service.py: only the
"Pydantic Models" section of that file is executed, so neither Kafka, S3 nor FastAPI is needed.
Needs pydantic 2 (e.g. the infra venv: ~/.cache/cxone-ingest/tools/venv/bin/python).

Usage: scripts/bench-seed-validation.py [--seed PATH] [--seconds N] [--rust-ns NS | --run-rust]
  --rust-ns   the Rust ns/payload (from the criterion run) to print the ratios against.
  --run-rust  run `cargo bench --bench pipeline -- contract/check/seed_payload` right after the
              Python paths (same machine, same run) and compare against its best of 5 rounds
              (the same method as here); the criterion mean is printed too.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SEED = HERE.parent.parent / "shared" / "reference" / "seed_service.py"

PAYLOAD = (
    b'{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1",'
    b'"data":{"channel":"voice","duration_seconds":"120","agent_id":"a-7",'
    b'"customer_email":"Jane.Doe@Example.com","metadata":{"priority":"high","score":"4.5"}}}'
)


def load_models(seed_path: Path) -> dict:
    """Executes the seed's imports it needs and its "Pydantic Models" section; returns the namespace."""
    source = seed_path.read_text()
    start = source.index("# --- Pydantic Models ---")
    end = source.index("# --- Infrastructure Clients ---")
    prelude = (
        "from enum import Enum\n"
        "from typing import Any, Dict, Optional\n"
        "from pydantic import BaseModel, ValidationError, field_validator\n"
    )
    namespace: dict = {"__name__": "seed_models"}
    exec(compile(prelude + source[start:end], str(seed_path), "exec"), namespace)
    return namespace


def per_call_ns(fn, seconds: float) -> float:
    """Best of 5 rounds of ~seconds/5 each, in ns per call."""
    # Calibrate a batch size of roughly 10 ms.
    batch = 1
    while True:
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter_ns() - start
        if elapsed > 10_000_000:
            break
        batch *= 2
    best = float("inf")
    rounds = 5
    for _ in range(rounds):
        deadline = time.perf_counter() + seconds / rounds
        calls = 0
        start = time.perf_counter_ns()
        while time.perf_counter() < deadline:
            for _ in range(batch):
                fn()
            calls += batch
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def run_rust() -> tuple[float, float | None]:
    """Runs the Rust bench for the seed payload; returns (best of 5 rounds, criterion mean) in ns."""
    command = [
        "cargo", "bench", "--bench", "pipeline", "--",
        "contract/check/seed_payload$", "--warm-up-time", "1", "--measurement-time", "3",
    ]
    result = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True, check=True)
    best = re.search(r"contract/check/seed_payload: (\d+) ns/payload", result.stdout)
    if best is None:
        raise SystemExit("error: no best-of-rounds line in the bench output:\n" + result.stdout)
    mean = re.search(
        r"contract/check/seed_payload\s+time:\s+\[\S+ \S+ (\S+) (ns|µs)", result.stdout
    )
    mean_ns = None
    if mean:
        mean_ns = float(mean.group(1)) * (1000.0 if mean.group(2) == "µs" else 1.0)
    return float(best.group(1)), mean_ns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=Path, default=Path(os.environ.get("SEED_SERVICE", DEFAULT_SEED)))
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per path (default 5)")
    parser.add_argument("--rust-ns", type=float, help="Rust ns/payload to compare against")
    parser.add_argument("--run-rust", action="store_true", help="run the Rust bench and compare")
    args = parser.parse_args()

    try:
        import pydantic
    except ImportError:
        print("error: pydantic is not installed for", sys.executable, file=sys.stderr)
        return 2
    models = load_models(args.seed)
    model = models["CXoneDataActionPayload"]

    # Both paths must accept the payload and agree on the result.
    via_dict = model.model_validate(json.loads(PAYLOAD))
    via_json = model.model_validate_json(PAYLOAD)
    assert via_dict == via_json and via_dict.data.duration_seconds == 120, via_dict

    seed_ns = per_call_ns(lambda: model.model_validate(json.loads(PAYLOAD)), args.seconds)
    json_ns = per_call_ns(lambda: model.model_validate_json(PAYLOAD), args.seconds)

    if args.run_rust:
        args.rust_ns, rust_mean = run_rust()
        if rust_mean is not None:
            print(f"rust Contract::check, criterion mean:     {rust_mean:,.0f} ns/payload")

    print(f"python {sys.version.split()[0]}, pydantic {pydantic.VERSION}, payload {len(PAYLOAD)} B")
    print(f"seed path (json.loads + model_validate): {seed_ns:,.0f} ns/payload")
    print(f"pydantic model_validate_json:            {json_ns:,.0f} ns/payload")
    if args.rust_ns:
        print(f"rust Contract::check (best of 5 rounds): {args.rust_ns:,.0f} ns/payload")
        print(f"ratio seed / rust:                       {seed_ns / args.rust_ns:.1f}x (target >= 5x)")
        print(f"ratio model_validate_json / rust:        {json_ns / args.rust_ns:.1f}x (target > 1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
