"""LlamaRec-style prompts: the user's recent titles and a lettered candidate pool.

    ### Instruction:
    Given user history in chronological order, recommend an item from the candidate pool with its index letter.

    ### Input:
    User history: (1) title \n (2) title; \n Candidate pool: (A) title \n (B) title

    ### Response:
    {letter}

At most 20 history items; each title is cut to ``title_tokens`` tokens of the model's tokenizer; a
prompt longer than ``max_length`` tokens loses its oldest history items, never the instruction or
the pool. The answer is one letter, read as one token right after "### Response:\\n".
"""
from __future__ import annotations

from typing import Sequence

from ..data.histories import HistoryData

LETTERS = "ABCDEFGHIJKLMNOPQRST"
INSTRUCTION = ("Given user history in chronological order, recommend an item from the candidate pool "
               "with its index letter.")
RESPONSE = "### Response:\n"


def item_titles(data: HistoryData, placeholder: str = "item {id}") -> list[str]:
    """Titles in item-index order; an item without one is named by ``placeholder`` (its raw id)."""
    titles = data.titles() or [""] * data.n_items
    ids = data.vocab.ids
    return [t if t.strip() else placeholder.format(id=ids[i]) for i, t in enumerate(titles)]


def render(history_titles: Sequence[str], candidate_titles: Sequence[str]) -> str:
    """The prompt text for already shortened titles (the model's answer follows it)."""
    if len(candidate_titles) > len(LETTERS):
        raise ValueError(f"{len(candidate_titles)} candidates, but letters only go up to {LETTERS[-1]} "
                         f"({len(LETTERS)}); rerank at most {len(LETTERS)} (rerank_top_k).")
    history = " \n ".join(f"({i}) {t}" for i, t in enumerate(history_titles, 1))
    pool = " \n ".join(f"({LETTERS[i]}) {t}" for i, t in enumerate(candidate_titles))
    return (f"### Instruction:\n{INSTRUCTION}\n\n### Input:\nUser history: {history}; \n Candidate pool: {pool}"
            f"\n\n{RESPONSE}")


class PromptBuilder:
    """Prompts for item-index histories and candidate lists, measured with ``tokenizer``."""

    def __init__(self, tokenizer, titles: Sequence[str], max_history: int = 20, title_tokens: int = 32,
                 max_length: int = 1536):
        for name, value in (("max_history", max_history), ("title_tokens", title_tokens), ("max_length", max_length)):
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")
        self.tokenizer = tokenizer
        self.titles = list(titles)
        self.max_history, self.title_tokens, self.max_length = int(max_history), int(title_tokens), int(max_length)
        self._short: dict[int, str] = {}

    def title(self, item: int) -> str:
        """The item's title on one line, cut to ``title_tokens`` tokens."""
        item = int(item)
        if item not in self._short:
            if not 0 <= item < len(self.titles):
                raise IndexError(f"item index {item} has no title (the title list has {len(self.titles)} items); "
                                 "build the prompts with the titles of the dataset the items come from.")
            text = " ".join(self.titles[item].split())  # newlines in a title would break the template's lines
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if len(ids) > self.title_tokens:
                # a byte-level cut can split a character; drop its half rather than show U+FFFD
                text = self.tokenizer.decode(ids[:self.title_tokens]).rstrip("\ufffd").strip()
            self._short[item] = text
        return self._short[item]

    def n_tokens(self, text: str) -> int:
        """Length as the model sees it (with the tokenizer's own BOS, if it adds one)."""
        return len(self.tokenizer.encode(text))

    def build(self, history: Sequence[int], candidates: Sequence[int]) -> str:
        """The prompt for one user: the last ``max_history`` items, cut from the left to ``max_length``."""
        if len(history) == 0:
            raise ValueError("a prompt needs at least one history item; users with an empty history cannot be reranked.")
        if len(candidates) == 0:
            raise ValueError("a prompt needs at least one candidate.")
        pool = [self.title(i) for i in candidates]
        past = [self.title(i) for i in list(history)[-self.max_history:]]
        text = render(past, pool)
        if self.n_tokens(text) <= self.max_length:
            return text
        # Binary search for the most recent items that fit: each encode is exact, sums of parts are not.
        lo, hi = 0, len(past) - 1  # lo: known to fit (0 = nothing known), hi: most that may fit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.n_tokens(render(past[-mid:], pool)) <= self.max_length:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            need = self.n_tokens(render(past[-1:], pool))
            raise ValueError(f"the instruction, the {len(pool)} candidates and one history item take {need} tokens, more "
                             f"than max_length={self.max_length}; raise max_length or lower title_tokens "
                             f"(now {self.title_tokens}) or the number of candidates.")
        return render(past[-lo:], pool)


def letter_token_ids(tokenizer, n: int = len(LETTERS), letters: Sequence[str] = LETTERS) -> list[int]:
    """The token id of each of the first ``n`` answer letters, as it follows "### Response:\\n".

    Read from the tokenizer in context, never assumed: a SentencePiece (Llama) tokenizer encodes a
    lone "A" as "▁A" but "A" after a newline; a byte-level (Qwen, GPT-2) one has "A" and "ĠA".
    """
    letters = list(letters)[:n]
    if len(letters) < n:
        raise ValueError(f"asked for {n} answer letters, only {len(letters)} are defined ({''.join(letters)}).")
    context = f"(B) a title\n\n{RESPONSE}"
    base = tokenizer.encode(context, add_special_tokens=False)
    unk = getattr(tokenizer, "unk_token_id", None)
    ids = []
    for letter in letters:
        full = tokenizer.encode(context + letter, add_special_tokens=False)
        extra = full[len(base):]
        if full[:len(base)] != base or len(extra) != 1:
            pieces = tokenizer.convert_ids_to_tokens(full[len(base) - 1:]) if hasattr(tokenizer, "convert_ids_to_tokens") else full
            raise ValueError(f"the answer letter {letter!r} is not a single token after '### Response:\\n' with this "
                             f"tokenizer (the end of the prompt becomes {pieces}); scoring needs one token per letter: "
                             "use a tokenizer whose vocabulary has the letters, or fewer candidates.")
        if unk is not None and extra[0] == unk:
            raise ValueError(f"the answer letter {letter!r} is the unknown token of this tokenizer; its vocabulary "
                             "needs the letters A-T as tokens.")
        ids.append(extra[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"answer letters share token ids ({dict(zip(letters, ids))}); they must be distinct tokens.")
    return ids
