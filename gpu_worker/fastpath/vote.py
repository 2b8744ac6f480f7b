"""`vote: logits`: the k checkpoints of an ensemble agree on every next token.

Rows are adapter-major (row `a*n + i` is image i under checkpoint a). At each step the k rows of
one image get the same scores: the mean of their probabilities in log space,
`logsumexp_a(log_softmax(logits_a)) - log k`, so greedy picks one token for all k rows and the
ensemble emits one string. It is an ordinary LogitsProcessor: static cache and compile still apply.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor


class MeanLogProbs(LogitsProcessor):
    """Replace each row's scores by the mean log-probability over its k adapter rows."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError("vote: logits needs at least one checkpoint")
        self.k = k

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        """Scores `[k*n, vocab]` -> the same `[k*n, vocab]` mean log-probs for all k rows."""
        rows, vocab = scores.shape
        logp = torch.log_softmax(scores.float(), dim=-1).view(self.k, rows // self.k, vocab)
        mean = torch.logsumexp(logp, dim=0) - math.log(self.k)
        return mean.repeat(self.k, 1).to(scores.dtype)
