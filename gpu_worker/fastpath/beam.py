"""Beam search on our decode loop, by transformers' rules (5.x `_beam_search`), beams as rows.

Same rules as `model.generate(num_beams=...)`, so the same tokens: at each step the top
K = max(2, 1 + #eos) x num_beams continuations of every batch element over all its beams; those
that stop (eos, max length) become finished hypotheses scored `logprob / length**length_penalty`
when they are among the first num_beams and can still improve the finished set; the best
num_beams unfinished ones run on. `early_stopping`: True stops an element when num_beams
hypotheses finished; False and "never" use transformers' heuristics for whether a running beam
can still beat the worst finished one. Differences, none visible in the result:
- the chosen beams' cache rows are copied in place (`kvcache.reorder_`), not re-allocated;
- whether the search is over is read on the host every `decode.EOS_CHECK_EVERY` steps; the rules
  freeze an element once it is done, so steps run after that change none of its hypotheses.
"""

from __future__ import annotations

import torch

from . import kvcache

NEG = -1.0e9


class _Beams:
    """Per batch element: running beams, finished hypotheses, and whether it is done."""

    def __init__(self, input_ids: torch.Tensor, config, eos: list[int]) -> None:
        rows, self.prompt = input_ids.shape
        self.nb = config.num_beams
        self.batch = rows // self.nb
        self.max_length = config.max_length
        self.length_penalty = config.length_penalty
        self.early_stopping = config.early_stopping
        self.keep = max(2, 1 + len(eos)) * self.nb
        dev, b, nb = input_ids.device, self.batch, self.nb
        # as transformers: a pad id of 0 counts as none, and the first eos fills instead
        fill = (config.pad_token_id or eos[0]) if eos else -1
        self.running = torch.full((b, nb, self.max_length), fill, dtype=torch.long, device=dev)
        self.running[:, :, : self.prompt] = input_ids.view(b, nb, self.prompt)
        self.seqs = self.running.clone()
        self.running_scores = torch.zeros((b, nb), device=dev)
        self.running_scores[:, 1:] = NEG
        self.scores = torch.full((b, nb), NEG, device=dev)
        self.finished = torch.zeros((b, nb), dtype=torch.bool, device=dev)
        self.improvable = torch.ones((b, 1), dtype=torch.bool, device=dev)
        self.hits = torch.zeros((b, nb), dtype=torch.bool, device=dev)
        steps = self.max_length - self.prompt
        self.running_idx = torch.full((b, nb, steps), -1, dtype=torch.int32, device=dev)
        self.idx = self.running_idx.clone()
        self.top = torch.arange(self.keep, device=dev) < nb

    def flat(self, cur: int) -> torch.Tensor:
        """The running sequences `[rows, cur]`, as the logits processors see them."""
        return self.running[:, :, :cur].reshape(self.batch * self.nb, cur)

    def step(self, log_probs: torch.Tensor, cur: int, stopping) -> torch.Tensor:
        """Advance by one token from `log_probs` `[rows, vocab]`; return the rows to continue."""
        b, nb, vocab = self.batch, self.nb, log_probs.shape[-1]
        acc = (log_probs.view(b, nb, vocab) + self.running_scores[:, :, None]).view(b, -1)
        top_lp, top_i = torch.topk(acc, k=self.keep)
        beam_of = top_i // vocab
        top_seqs = _gather(self.running, beam_of)
        top_idx = _gather(self.running_idx, beam_of)
        top_seqs[:, :, cur] = top_i % vocab
        top_idx[:, :, cur - self.prompt] = (
            beam_of + torch.arange(b, device=acc.device)[:, None] * nb
        )
        flat = top_seqs[:, :, : cur + 1].reshape(b * self.keep, cur + 1)
        self.hits = stopping(flat, None).view(b, self.keep)
        # the best num_beams that did not stop run on
        run_lp = top_lp + self.hits.float() * NEG
        nxt = torch.topk(run_lp, k=nb)[1]
        self.running = _gather(top_seqs, nxt)
        self.running_scores = _gather(run_lp, nxt)
        self.running_idx = _gather(top_idx, nxt)
        self._finish(top_seqs, top_lp, top_idx, cur)
        return self.running_idx[..., cur - self.prompt].reshape(-1).long()

    def _finish(self, top_seqs, top_lp, top_idx, cur: int) -> None:
        """Hypotheses that stopped now join the finished ones if they are among the best."""
        just = self.hits & self.top[None, :]
        score = top_lp / ((cur + 1 - self.prompt) ** self.length_penalty)
        full = torch.all(self.finished, dim=-1, keepdim=True) & (self.early_stopping is True)
        score = score + full.float() * NEG + (~self.improvable).float() * NEG + (~just) * NEG
        merged = torch.topk(torch.cat((self.scores, score), dim=1), k=self.nb)[1]
        self.seqs = _gather(torch.cat((self.seqs, top_seqs), dim=1), merged)
        self.scores = _gather(torch.cat((self.scores, score), dim=1), merged)
        self.idx = _gather(torch.cat((self.idx, top_idx), dim=1), merged)
        self.finished = _gather(torch.cat((self.finished, just), dim=1), merged)

    def update_done(self, cur: int) -> torch.Tensor:
        """Update the heuristic for `cur` tokens; a 0-d bool tensor: is the search over?"""
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            best_length = self.max_length - self.prompt
        else:
            best_length = cur - self.prompt
        best_running = self.running_scores[:, :1] / (best_length**self.length_penalty)
        worst = torch.where(self.finished, torch.min(self.scores, dim=1, keepdim=True)[0], NEG)
        self.improvable = self.improvable & torch.any(best_running > worst, dim=-1, keepdim=True)
        open_beam = ~(torch.all(self.finished) & (self.early_stopping is True))
        going = torch.any(self.improvable) & open_beam & ~torch.all(self.hits)
        return ~going

    def best(self) -> torch.Tensor:
        """The best finished hypothesis per element, cut to the longest generated length."""
        idx = self.idx[:, 0]
        generated = int((idx + 1).bool().sum(dim=1).max())
        return self.seqs[:, 0, : self.prompt + generated]


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """`t[b, idx[b, j], ...]` for each element b: the selected beams."""
    while idx.dim() < t.dim():
        idx = idx.unsqueeze(-1)
    return torch.take_along_dim(t, idx, dim=1)


def search(loop, input_ids, logits, processors, stopping, config, every: int) -> torch.Tensor:
    """Beam search from the prefill's `logits`; the best sequence per batch element.

    Whether the search is over is read on the host every `every` steps."""
    eos = config.eos_token_id
    eos = [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [eos]
    beams = _Beams(input_ids, config, eos)
    cur = beams.prompt
    while True:
        log_probs = torch.log_softmax(logits, dim=-1)
        if processors:
            log_probs = processors(beams.flat(cur), log_probs)
        rows = beams.step(log_probs, cur, stopping)
        kvcache.reorder_(loop.cache, rows, cur)
        cur += 1
        done = beams.update_done(cur)
        if cur >= beams.max_length or (cur - beams.prompt) % every == 0 and bool(done):
            break
        logits = loop(beams.running[:, :, cur - 1].reshape(-1))
    return beams.best()
