"""Run TRL's GRPO test file stock and with only its import swapped; write both counts and every difference.

    python -m tests.trl_upstream                      # both variants (about 10 minutes each on 2 CPU cores)
    python -m tests.trl_upstream --variant swapped    # rerun one; the other is kept from the results file
    python -m tests.trl_upstream -k "scale_rewards"   # a selection, passed to pytest as -k
    python -m tests.trl_upstream --fetch              # get TRL's test file at the installed TRL's tag (GitHub)

Results go to benchmarks/results/trl_grpo_tests.json. Exit 0 when every test stock TRL passes also passes swapped,
refused loss types aside; 1 otherwise; 2 for a setup problem (the message says what to do).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from . import harness, standins


def versions() -> dict:
    import torch
    import transformers
    import trl

    return {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.trl_upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=["stock", "swapped", "both"], default="both")
    parser.add_argument("-k", dest="select", help="pytest -k expression: run a selection (printed, not recorded)")
    parser.add_argument("--merge", action="store_true", help="with -k: record the selection's outcomes in the file")
    parser.add_argument("--fetch", action="store_true", help="download TRL's test file for the installed TRL")
    parser.add_argument("--standins", type=Path, default=harness.DEFAULT_STANDINS)
    parser.add_argument("--work", type=Path, default=harness.DEFAULT_STANDINS.parent / "runs")
    parser.add_argument("--results", type=Path, default=harness.DEFAULT_RESULTS)
    parser.add_argument("--with-slow-tests", action="store_true", help="also run harness.TOO_SLOW_ON_CPU")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds for one variant's whole run")
    args = parser.parse_args(argv)
    if args.merge and not args.select:
        parser.error("--merge records a selection: give it with -k")
    try:
        if args.fetch:
            print(json.dumps(harness.fetch(), indent=2))
        source = harness.source_info()
        root = standins.build_all(args.standins)
        record = json.loads(args.results.read_text()) if args.results.exists() else {}
        if record.get("source", {}).get("sha256") != source["sha256"]:
            record = {}  # results for another copy of TRL's file say nothing about this one
        variants = ["stock", "swapped"] if args.variant == "both" else [args.variant]
        for variant in variants:
            print(f"running {variant} ...", flush=True)
            select = ["-k", args.select] if args.select else None
            result = harness.run(variant, args.work, root, select, args.timeout, args.with_slow_tests)
            result["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            print(f"{variant}: {result['counts']} in {result['seconds']} s", flush=True)
            if args.select and not args.merge:
                print(json.dumps(result["tests"], indent=1))
            elif args.select:
                record[variant] = harness.merge(record.get(variant), result)
            else:
                record[variant] = result
    except harness.HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.select and not args.merge:
        return 0
    record.update(
        source=source, versions=versions(), rerun="python -m tests.trl_upstream [--variant stock|swapped]",
        swap={"stock": harness.STOCK_IMPORT, "swapped": harness.SWAPPED_IMPORT},
        rewrites_for_both=[why for _, _, why in harness.COMPAT] + [harness.BF16_NOTE],
        not_stood_in=standins.NOT_STOOD_IN, refused_loss_types=list(harness.REFUSED_LOSS_TYPES),
    )  # fmt: skip
    if "stock" in record and "swapped" in record:
        record["comparison"] = harness.compare(record["stock"], record["swapped"])
        record["explanations"] = harness.explain(record)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.results}")
    unexpected = record.get("comparison", {}).get("unexpected", [])
    for test_id in unexpected:
        print(f"differs: {test_id}: {record['swapped']['tests'][test_id]['reason']}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
