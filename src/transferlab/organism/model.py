"""The organism's architecture: a small Llama from `transformers`, nothing custom."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

SIZES = {
    # name: (hidden, layers, heads, mlp)
    "micro": (32, 2, 2, 64),
    "small": (128, 6, 4, 384),
    "base": (192, 8, 6, 512),
}


def new_organism(tokenizer: PreTrainedTokenizerBase, size: str = "small", seed: int = 0,
                 max_positions: int = 256) -> LlamaForCausalLM:
    """A freshly initialised Llama sized for two CPU cores."""
    if size not in SIZES:
        raise KeyError(f"unknown organism size {size!r}; known: {', '.join(SIZES)}")
    hidden, layers, heads, mlp = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=mlp,
        max_position_embeddings=max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, attn_implementation="eager",  # eager beats sdpa at this size on CPU
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
