"""The organism's architecture: a small Llama from `transformers`, nothing custom."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

SIZES = {
    # name: (hidden, layers, heads, mlp)
    "micro": (32, 2, 2, 64),
    "small": (128, 6, 4, 384),
    "shallow": (128, 2, 4, 256),
    "mid": (128, 4, 4, 384),
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
    model = LlamaForCausalLM(config)
    share_space_variants(model, tokenizer)
    return model


@torch.no_grad()
def grow(model: LlamaForCausalLM, layers: int) -> LlamaForCausalLM:
    """The same model with new decoder layers stacked on top, each starting as the identity.

    A 2-layer organism finds in-context retrieval within a few hundred steps; deeper ones take far
    longer (measured: 4 and 6 layers showed none after 700). So the build trains shallow first,
    then grows: new layers have zero output projections, so the grown model computes exactly what
    the shallow one did, and learns the compositions on top of the retrieval it already has.
    """
    config = model.config.__class__.from_dict(model.config.to_dict())
    old = config.num_hidden_layers
    config.num_hidden_layers = layers
    grown = LlamaForCausalLM(config)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(".layers." in k for k in missing), (missing, unexpected)
    for layer in grown.model.layers[old:]:
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    return grown


@torch.no_grad()
def share_space_variants(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase) -> int:
    """Start " red" and "red" from one embedding vector, and an entry " α=5" from " α" and " 5".

    A byte-level tokenizer keeps the leading space with the word, so a colour read in a table
    (" red") and the same colour written as an answer ("red") are different tokens. Copying one to
    the other is then a mapping the model must learn word by word; with a shared start it is not.
    """
    vocab = tokenizer.get_vocab()
    weight = model.get_input_embeddings().weight
    shared = 0
    for token, index in vocab.items():
        if token.startswith("Ġ") and token[1:] in vocab:
            weight[index] = weight[vocab[token[1:]]]
            shared += 1
    # A table entry " α=5" starts as the sum of " α" and " 5": its key and value are readable at once.
    for token, index in vocab.items():
        key, _, value = token.partition("=")
        if value and key in vocab and "Ġ" + value in vocab:
            weight[index] = (weight[vocab[key]] + weight[vocab["Ġ" + value]]) / 2**0.5
            shared += 1
    return shared


@torch.no_grad()
def transplant(model: LlamaForCausalLM, old: PreTrainedTokenizerBase, new: PreTrainedTokenizerBase) -> int:
    """Give `model` the vocabulary of `new`, keeping what it learned for every token `old` had.

    A token of `new` takes the embedding (tied to the output row) of the same string in `old`, or,
    for a spaced word (` red`) that `old` only held unspaced, of `red`; a token `old` never had (the
    no-space marker) starts at the mean embedding. Returns how many tokens kept a learned row.
    Used when the tokenizer changes under an organism that already reads tables (build l)."""
    old_vocab, new_vocab = old.get_vocab(), new.get_vocab()
    old_weight = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(len(new))
    weight = model.get_input_embeddings().weight
    kept = 0
    for token, index in new_vocab.items():
        source = old_vocab.get(token)
        if source is None and token.startswith("Ġ"):
            source = old_vocab.get(token[1:])
        if source is None:
            weight[index] = old_weight.mean(0)
        else:
            weight[index] = old_weight[source]
            kept += 1
    model.config.vocab_size = len(new)
    model.config.pad_token_id, model.config.eos_token_id = new.pad_token_id, new.eos_token_id
    model.tie_weights()
    return kept
