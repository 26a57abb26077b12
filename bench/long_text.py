"""What one long turn costs the encoder, with and without the 512-token clip (assist.understanding.encoder).

Usage::

    python bench/long_text.py              # 5 runs per text, median ms
    python bench/long_text.py --runs 9

For each text: its length in characters and tokens, what the model reads after ``E5Encoder.clip``,
the clip's own cost, and the median embedding time of the clipped text (what the service pays)
and of the whole text (what it paid before the clip). The machine's other load is not
controlled: compare the two columns of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the service sets it (service/app.py)

from assist.understanding.encoder import E5Encoder

TEXTS = {
    "short turn": "你好，请问什么时候发货",
    "2000 emoji": "😀" * 2000,
    "2000 hanzi": "好" * 2000,
    "2000 latin": "a" * 2000,
}


def _median_ms(fn: Callable[..., object], arg: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    enc = E5Encoder()
    model = enc._model
    print(f"{'text':<12} {'chars':>6} {'tokens':>7} {'read':>6} {'clip ms':>8} {'clipped ms':>11} {'whole ms':>9}")
    for name, text in TEXTS.items():
        clipped = enc.clip(text, is_query=True)
        clip_ms = _median_ms(lambda t: enc.clip(t, is_query=True), text, args.runs)
        ms_clipped = _median_ms(model.query, [clipped], args.runs)
        ms_whole = _median_ms(model.query, [text], args.runs)
        print(f"{name:<12} {len(text):>6} {model.token_count(text, True):>7} {model.token_count(clipped, True):>6} "
              f"{clip_ms:>8.1f} {ms_clipped:>11.0f} {ms_whole:>9.0f}")


if __name__ == "__main__":
    main()
