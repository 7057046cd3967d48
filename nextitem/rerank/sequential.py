"""Any trained user-history model as a reranker: its scores of the candidates only.

BERT4Rec is the seed's sequential reranker; SASRec, LRURec or GRU4Rec work the same way. The
model is trained as usual (full softmax over all items); reranking reads its scores at the
candidate items, so the candidates' order in the pool cannot matter.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.histories import Split
from .candidates import Candidates


class ModelReranker:
    def __init__(self, model, batch_size: int = 256):
        self.model = model
        self.batch_size = batch_size

    @torch.no_grad()
    def score_candidates(self, split: Split, cands: Candidates) -> np.ndarray:
        """[n, K] scores of ``cands.items`` after each user's input history."""
        cands = cands.align(split)
        out = np.empty(cands.items.shape, dtype=np.float32)
        for start in range(0, len(split), self.batch_size):
            end = start + self.batch_size
            scores = self.model.score(split.inputs[start:end])
            items = torch.as_tensor(cands.items[start:end], device=scores.device)
            out[start:end] = scores.gather(1, items).float().cpu().numpy()
        return out
