"""The LLM reranker (LlamaRec): one forward pass scores a pool by the logits of its letters.

Any Hugging Face causal LM works, by hub id or local folder. The candidates' scores are the
next-token logits of their answer letters at the prompt's last position; LoRA tuning (peft)
trains the answer letter (+ EOS) only. transformers and peft come with ``pip install nextitem[llm]``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import build, to_dict
from ..data.histories import Split
from ..data.io import DataError
from .candidates import Candidates
from .prompts import LETTERS, PromptBuilder, letter_token_ids

CONFIG_FILE = "llm_reranker.json"
ADAPTER_FILE = "adapter_model.safetensors"  # what peft's save_pretrained writes


@dataclass
class LLMRerankConfig:
    base_model: str = ""  # hub id or folder; saved so that load() can rebuild the model
    n_candidates: int = 20
    max_history: int = 20
    title_tokens: int = 32
    max_length: int = 1536
    eval_batch_size: int = 8  # prompts per forward pass when scoring (the training batch is the run's batch_size)
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    # on by default: LoRA steps of 8 SmolLM2-135M prompts (675 tokens) peaked at 14.8 GB without it and
    # 4.1 GB with it, for 15% more time per step (benchmarks/bench_llm_rerank.py --train-steps 2)
    gradient_checkpointing: bool = True
    compile: bool = False  # torch.compile the forward pass used for scoring
    # the pool is shown in a seeded random order: in the given (retriever's) order letter A would be
    # its top-1, a leak of stage 1's ranking that the LLM's position bias would exploit
    shuffle_candidates: bool = True
    shuffle_seed: int = 0


def _require(package: str):
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(f"the LLM reranker needs {package}: pip install 'nextitem[llm]' "
                          "(with torch pinned, e.g. -c a file holding torch==2.13.0).") from None


def _4bit_config():
    if not torch.cuda.is_available():
        raise RuntimeError("load_in_4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels); none is visible. "
                           "Load without load_in_4bit on this machine.")
    _require("bitsandbytes")
    from transformers import BitsAndBytesConfig

    # QLoRA's settings, as LlamaRec used them
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


class LLMReranker:
    """Scores candidate pools with a causal LM; optionally LoRA-tuned (see :mod:`.llm_train`)."""

    def __init__(self, model, tokenizer, config: LLMRerankConfig | None = None, titles: Sequence[str] | None = None,
                 **params):
        if config is None:
            config = build(LLMRerankConfig, params, source="LLM reranker parameters")
        elif params:
            config = build(LLMRerankConfig, {**to_dict(config), **params}, source="LLM reranker parameters")
        if not 1 <= config.n_candidates <= len(LETTERS):
            raise ValueError(f"n_candidates={config.n_candidates}: the pool is lettered A-{LETTERS[-1]}, so 1..{len(LETTERS)}.")
        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.letter_ids = torch.tensor(letter_token_ids(tokenizer, config.n_candidates))
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)  # masked anyway
        self.builder = None
        self._compiled = None
        self.progress = False  # a bar over the prompts while scoring (a CPU prompt takes seconds)
        self.valid_scores = None  # set by LoRA fitting: the kept adapter's validation scores
        if titles is not None:
            self.use_titles(titles)

    @classmethod
    def from_pretrained(cls, name_or_path: str, load_in_4bit: bool = False, device: str = "cpu", dtype=None,
                        titles: Sequence[str] | None = None, model_kwargs: dict | None = None, **params) -> "LLMReranker":
        """Load a causal LM and its tokenizer by hub id or folder (no remote code, safetensors weights)."""
        _require("transformers")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = dict(model_kwargs or {})
        if "gguf_file" not in kwargs:
            kwargs.setdefault("use_safetensors", True)  # never unpickle a .bin checkpoint
        tok_kwargs = {"gguf_file": kwargs["gguf_file"]} if "gguf_file" in kwargs else {}
        if load_in_4bit:
            kwargs["quantization_config"] = _4bit_config()
            kwargs["device_map"] = {"": torch.device(device).index or 0}
        if dtype is not None:
            kwargs["dtype"] = dtype
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False, **tok_kwargs)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
        except OSError as e:
            raise DataError(f"{name_or_path}: could not load a causal LM and tokenizer ({e}). Give a Hugging Face id "
                            "(reachable or in the local cache) or a folder with config.json, safetensors weights "
                            "and tokenizer files.") from None
        if not load_in_4bit:
            model = model.to(device)
        params.setdefault("base_model", os.fspath(name_or_path))
        return cls(model, tokenizer, titles=titles, **params)

    def use_titles(self, titles: Sequence[str]) -> "LLMReranker":
        """The item titles (in item-index order, e.g. :func:`.prompts.item_titles`) prompts are made of."""
        c = self.config
        self.builder = PromptBuilder(self.tokenizer, titles, c.max_history, c.title_tokens, c.max_length)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ prompts
    def prompts(self, histories, pools: np.ndarray) -> list[str]:
        if self.builder is None:
            raise RuntimeError("no item titles: call use_titles(item_titles(data)) before building prompts.")
        pools = np.asarray(pools)
        if pools.ndim != 2 or pools.shape[1] > self.config.n_candidates:
            raise ValueError(f"pools of shape {pools.shape}: this reranker scores at most n_candidates="
                             f"{self.config.n_candidates} per user (rerank_top_k).")
        return [self.builder.build(h, p) for h, p in zip(histories, pools)]

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        ids = [self.tokenizer.encode(p) for p in prompts]
        longest = max(map(len, ids), default=0)
        if longest > self.config.max_length:
            raise ValueError(f"a prompt has {longest} tokens, above max_length={self.config.max_length}; build prompts "
                             "with this reranker's prompts() (it cuts the history), or raise max_length.")
        return ids

    def batch(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        """Left-padded ids, attention mask, and positions counted over real tokens only."""
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row):] = 1
        # otherwise a left-padded row starts at its padding length: harmless with RoPE (relative), wrong for GPT-2
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        dev = self.device
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "position_ids": positions.to(dev)}

    # ------------------------------------------------------------------ scoring
    def _forward(self):
        if not self.config.compile:
            return self.model
        if self._compiled is None:
            self._compiled = torch.compile(self.model, dynamic=True)
        return self._compiled

    @torch.no_grad()
    def score(self, prompts: Sequence[str], n_candidates: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        """[len(prompts), n_candidates] float32: the letters' next-token logits after each prompt."""
        n = n_candidates or self.config.n_candidates
        if n > len(self.letter_ids):
            raise ValueError(f"n_candidates={n} but this reranker resolved {len(self.letter_ids)} letters.")
        batch_size = batch_size or self.config.eval_batch_size
        ids = self.encode(prompts)
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths together: less padding
        out = torch.empty((len(ids), n), dtype=torch.float32)
        was_training = self.model.training
        self.model.eval()
        letters = self.letter_ids[:n].to(self.device)
        bar = tqdm(total=len(ids), desc="LLM scoring", unit="prompt", leave=False, disable=not self.progress, dynamic_ncols=True)
        try:
            for start in range(0, len(ids), batch_size):
                rows = order[start:start + batch_size]
                logits = self._forward()(**self.batch([ids[r] for r in rows]), logits_to_keep=1, use_cache=False).logits
                out[torch.as_tensor(rows)] = logits[:, -1, letters].float().cpu()
                bar.update(len(rows))
        finally:
            bar.close()
            self.model.train(was_training)
        return out

    def score_pools(self, histories, pools: np.ndarray, shuffle: bool | None = None, seed: int | None = None) -> np.ndarray:
        """[n, K] scores of ``pools`` (item indices) in their given column order.

        The pool is shown in its given order (letter A = first column) unless ``shuffle``; then in a
        seeded random order per user, and the scores are put back in the given order.
        """
        pools = np.asarray(pools, dtype=np.int64)
        shuffle = self.config.shuffle_candidates if shuffle is None else shuffle
        order = np.tile(np.arange(pools.shape[1]), (len(pools), 1))
        if shuffle:
            rng = np.random.default_rng(self.config.shuffle_seed if seed is None else seed)
            order = np.argsort(rng.random(pools.shape), axis=1)
        shown = np.take_along_axis(pools, order, 1)
        scores = self.score(self.prompts(histories, shown), n_candidates=pools.shape[1]).numpy()
        out = np.empty_like(scores)
        np.put_along_axis(out, order, scores, 1)
        return out

    def score_candidates(self, split: Split, cands: Candidates) -> np.ndarray:
        """The reranker interface of the two-stage pipeline: [n, K] scores of ``cands`` for ``split``."""
        cands = cands.align(split)
        return self.score_pools(split.inputs, cands.items)

    # ------------------------------------------------------------------ training loss
    def answer_ids(self, letter: int) -> list[int]:
        return [int(self.letter_ids[letter])] + ([self.eos_id] if self.eos_id is not None else [])

    def training_batch(self, prompt_ids: list[list[int]], answers: Sequence[int]) -> dict[str, torch.Tensor]:
        """Prompt + answer letter (+ EOS) per row; labels are -100 on the prompt, so only the answer is learnt."""
        rows, labels = [], []
        for ids, answer in zip(prompt_ids, answers):
            tail = self.answer_ids(int(answer))
            rows.append(list(ids) + tail)
            labels.append([-100] * len(ids) + tail)
        batch = self.batch(rows)
        lab = torch.full(batch["input_ids"].shape, -100, dtype=torch.long)
        for r, row in enumerate(labels):
            lab[r, lab.shape[1] - len(row):] = torch.tensor(row)
        batch["labels"] = lab.to(self.device)
        return batch

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens.

        Only the last positions get logits: the answer ends every row (left padding), and full-vocab
        logits at every position would take [batch, length, vocab] floats for nothing.
        """
        labels = batch["labels"]
        n_answer = len(self.answer_ids(0))
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = self.model(**inputs, logits_to_keep=n_answer + 1, use_cache=False).logits
        # position t predicts token t + 1: the last n_answer + 1 logits predict the last n_answer tokens (+ nothing)
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, -n_answer:].flatten(), ignore_index=-100)

    # ------------------------------------------------------------------ LoRA
    def add_lora(self) -> "LLMReranker":
        """Wrap the model with fresh LoRA adapters (r, alpha, dropout, target modules from the config)."""
        _require("peft")
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        c = self.config
        if getattr(self.model, "peft_config", None):
            raise RuntimeError("this model already has LoRA adapters.")
        if getattr(self.model, "is_loaded_in_4bit", False):
            self.model = prepare_model_for_kbit_training(self.model, use_gradient_checkpointing=c.gradient_checkpointing)
        elif c.gradient_checkpointing:
            # transformers 5 renamed it (the old name warns); older versions only have the old one
            enable = getattr(self.model, "activation_checkpointing_enable", None) or self.model.gradient_checkpointing_enable
            enable()
            self.model.enable_input_require_grads()  # checkpointed blocks need an input that wants grads
        names = {n.rsplit(".", 1)[-1] for n, _ in self.model.named_modules()}
        missing = [t for t in c.lora_targets if t not in names]
        if missing:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in self.model.named_modules() if isinstance(m, torch.nn.Linear)})
            raise ValueError(f"lora_targets {missing} are not modules of this model; its linear layers are named {linear}.")
        lora = LoraConfig(r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                          target_modules=list(c.lora_targets), task_type="CAUSAL_LM", bias="none")
        self.model = get_peft_model(self.model, lora)
        self._compiled = None
        return self

    def fit(self, train, valid, **params):
        """LoRA-tune on ``train`` with early stopping on ``valid``: see :func:`.llm_train.fit`."""
        from .llm_train import fit

        return fit(self, train, valid, **params)

    # ------------------------------------------------------------------ save / load
    def save(self, folder: str | os.PathLike) -> None:
        """The LoRA adapter (peft's adapter_model.safetensors) and a JSON config, swapped in as a whole folder."""
        folder = os.path.abspath(os.fspath(folder))
        parent = os.path.dirname(folder)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(folder) + "-")
        try:
            if getattr(self.model, "peft_config", None):
                self.model.save_pretrained(tmp, safe_serialization=True)
            with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
                json.dump({"format": "nextitem.llm_reranker/1", "config": to_dict(self.config),
                           "letter_ids": self.letter_ids.tolist(), "lora": bool(getattr(self.model, "peft_config", None))},
                          f, indent=2)
            old = None
            if os.path.exists(folder):
                old = tempfile.mkdtemp(dir=parent, prefix=".old-" + os.path.basename(folder) + "-")
                os.replace(folder, os.path.join(old, "x"))
            os.replace(tmp, folder)
            if old:
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: str | os.PathLike, model=None, tokenizer=None, device: str = "cpu", **load_kwargs) -> "LLMReranker":
        """Rebuild a saved reranker: its base model (``config.base_model``, or the ``model`` given) + adapter."""
        folder = os.fspath(folder)
        path = os.path.join(folder, CONFIG_FILE)
        if not os.path.exists(path):
            raise DataError(f"{folder}: no {CONFIG_FILE}; not a folder written by LLMReranker.save().")
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        values = dict(saved["config"])
        if "batch_size" in values:  # written before the scoring batch was named eval_batch_size
            values["eval_batch_size"] = values.pop("batch_size")
        config = build(LLMRerankConfig, values, source=path)
        if model is None:
            if not config.base_model:
                raise DataError(f"{path}: no base_model recorded; pass the model and tokenizer to load().")
            reranker = cls.from_pretrained(config.base_model, device=device, **load_kwargs, **to_dict(config))
        else:
            if tokenizer is None:
                raise ValueError("load(model=...) needs the tokenizer too.")
            reranker = cls(model, tokenizer, config)
        if reranker.letter_ids.tolist() != saved["letter_ids"][:len(reranker.letter_ids)]:
            raise DataError(f"{path}: the answer letters were tokens {saved['letter_ids']} when saved, "
                            f"{reranker.letter_ids.tolist()} with this tokenizer; load it with the tokenizer it was trained with.")
        if saved.get("lora"):
            adapter = os.path.join(folder, ADAPTER_FILE)
            if not os.path.exists(adapter):
                raise DataError(f"{folder}: no {ADAPTER_FILE}; the adapter is missing (only safetensors adapters are read).")
            _require("peft")
            from peft import PeftModel

            reranker.model = PeftModel.from_pretrained(reranker.model, folder, is_trainable=False)
        reranker.model.eval()
        return reranker
