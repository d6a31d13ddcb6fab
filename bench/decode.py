"""Benchmark: decoding one batch of 200 plays as the agent writes it, with ingest's orjson path against its strict
decoder (``server.events.batches.split_batch``), in the same run.

The batch is the agent's own ``json.dumps`` of 200 play events like bench/ingest.py's radios send. The strict
decoder is what every other batch goes through, and what every batch went through before the orjson path; both give
the same answer (``tests/server/test_ingest_paths.py``). Each is timed as the best of --repeat rounds of --number
decodes, so a busy machine's pauses count less.

    .venv/bin/python bench/decode.py

Prints both times per batch and their ratio, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import BATCH, EVENT, uuid4_texts  # noqa: E402
from server.events import batches  # noqa: E402


def agent_batch() -> bytes:
    """200 plays, byte for byte the agent's json.dumps (bench/ingest.py's radios send the same)."""
    now = datetime.now(timezone.utc).isoformat()
    events = [EVENT % ("p1", 3, 30.0 * n, 30.0 * n + 30.0, 30.0, now, now, now, event_id, n + 1)
              for n, event_id in enumerate(uuid4_texts(BATCH))]
    payload = ('{"device":"r-bench","epoch":1,"events":[%s]}' % ",".join(events)).encode()
    agent = json.dumps({"device": "r-bench", "epoch": 1, "events": [json.loads(e) for e in events]},
                       ensure_ascii=False, separators=(",", ":")).encode()
    assert payload == agent, "the bench's batch is not what the agent writes"
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=200, help="decodes per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the best is reported")
    args = parser.parse_args()
    payload = agent_batch()
    fast_path = batches._split_agent_batch

    def strict():
        batches._split_agent_batch = lambda _payload: None
        try:
            return batches.split_batch(payload)
        finally:
            batches._split_agent_batch = fast_path

    assert fast_path(payload) is not None and fast_path(payload) == strict(), "the two paths disagree"
    fast_ms = min(timeit.repeat(lambda: batches.split_batch(payload), number=args.number,
                                repeat=args.repeat)) / args.number * 1000
    strict_ms = min(timeit.repeat(strict, number=args.number, repeat=args.repeat)) / args.number * 1000
    print(f"a batch of {BATCH} plays, {len(payload):,} bytes: orjson path {fast_ms:.3f} ms, "
          f"strict decoder {strict_ms:.3f} ms, ratio {fast_ms / strict_ms:.2f}")
    print(json.dumps({"batch_events": BATCH, "payload_bytes": len(payload), "orjson_ms": round(fast_ms, 3),
                      "strict_ms": round(strict_ms, 3), "ratio": round(fast_ms / strict_ms, 3)}))


if __name__ == "__main__":
    main()
