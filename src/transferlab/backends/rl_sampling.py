"""Sampling for RL: `num_samples` completions per prompt with each token's log-probability, and the
log-probabilities the current weights give to sequences already sampled (for a KL to a reference).

Prompts render, completions stop and replies read as the backends' `sample` does them (the chat
template, model.thinking, end of text or of turn, the visible reply as text). The hf backend's
`sample` (text only) shares prompt prefixes across the eval grid; here every prompt is repeated
`num_samples` times in left-padded batches and `generate` hands back its scores: the logits after
the sampler's own processing (temperature; top-k and top-p turned off), so the log-softmax of those
scores is exactly the distribution each token was drawn from (the `sampling_logprobs` of the
importance-sampling ratio). At temperature 1 that is the model's own log-softmax, which
tests/test_rl_backend.py checks against a plain forward pass.
"""

from __future__ import annotations

import inspect

import torch

from transferlab.core import Datum, Message, SampledSequence
from transferlab.train.render import render_prompt, reply_text, stop_token_ids


def left_padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows right-aligned on `pad`, with the attention mask of their real tokens."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


def right_padded(seqs, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows left-aligned, padded on the right with `pad`, with the attention mask of their real
    tokens (for scoring: causal attention never looks right, so the padding changes nothing)."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return ids, mask


def _until_stop(tokens: list[int], logprobs: list[float], stops: list[int]) -> tuple[list[int], list[float]]:
    """A completion up to and including its first stop token (what follows is padding)."""
    end = next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))
    return tokens[:end], logprobs[:end]


@torch.inference_mode()
def hf_sample_sequences(backend, prompts: list[list[Message]], num_samples: int, max_tokens: int,
                        temperature: float = 1.0, batch_size: int = 64) -> list[list[SampledSequence]]:
    """`num_samples` completions of each prompt from an HFBackend's model, with token log-probs
    (temperature 0: the greedy completion, and the model's log-probs of its tokens)."""
    if num_samples < 1 or max_tokens < 1 or temperature < 0:
        raise ValueError(f"num_samples and max_tokens must be at least 1 and temperature at least 0; got "
                         f"{num_samples}, {max_tokens}, {temperature}")
    model, tokenizer = backend.model, backend.tokenizer
    model.eval()
    pad, stops = tokenizer.pad_token_id, stop_token_ids(tokenizer)  # end of text, and the template's end of turn
    encoded = [render_prompt(tokenizer, p, getattr(backend, "thinking", False)) for p in prompts]
    rows = [i for i in range(len(prompts)) for _ in range(num_samples)]
    sampling = ({"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0
                else {"do_sample": False, "temperature": None, "top_k": None, "top_p": None})
    out: list[list[SampledSequence]] = [[] for _ in prompts]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        ids, mask, reuse = _prefilled_once(backend, [encoded[i] for i in chunk], chunk, pad)
        with backend._autocast():
            generated = model.generate(input_ids=ids.to(backend.device), attention_mask=mask.to(backend.device),
                                       max_new_tokens=max_tokens, pad_token_id=pad, eos_token_id=stops,
                                       output_scores=True, return_dict_in_generate=True, **reuse, **sampling)
        new = generated.sequences[:, ids.size(1):]
        scores = torch.stack(generated.scores, 1).float()  # (rows, new tokens, vocabulary)
        logprobs = scores.log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(chunk):
            tokens, lps = _until_stop(new[row].tolist(), logprobs[row].tolist(), stops)
            out[i].append(SampledSequence(tuple(tokens), tuple(lps), reply_text(tokenizer, tokens)))
    return out


def _prefilled_once(backend, seqs: list[list[int]], owners: list[int], pad: int):
    """Rows for `generate` whose prompts (all but their last token) ran once per distinct prompt:
    a chunk holds each prompt `num_samples` times, so the prompt's cache is computed once and copied
    to its rows, as HFBackend.sample shares prefixes. A row reads [pad, prompt[:-1] | last token];
    the mask skips the pad and positions count real tokens, so each row sees its prompt alone.
    Returns the input ids, the attention mask and the cache argument (empty for one-token prompts)."""
    distinct = list(dict.fromkeys(owners))
    first = {owner: seqs[owners.index(owner)] for owner in distinct}
    if min(len(seq) for seq in first.values()) < 2:
        ids, mask = left_padded(seqs, pad)
        return ids, mask, {}
    model = backend.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
    accepts = inspect.signature(base.forward).parameters
    cache_name = "cache" if "cache" in accepts else "past_key_values"  # transformers 5 renamed it
    keep = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
    prefix, prefix_mask = left_padded([first[o][:-1] for o in distinct], pad)
    positions = (prefix_mask.cumsum(1) - 1).clamp(min=0)
    with backend._autocast():
        prefilled = model(input_ids=prefix.to(backend.device), attention_mask=prefix_mask.to(backend.device),
                          position_ids=positions.to(backend.device), use_cache=True, **keep)
    copies = torch.tensor([distinct.index(o) for o in owners])
    cache = getattr(prefilled, cache_name)
    cache.reorder_cache(copies.to(backend.device))  # one copy of its prompt's cache per row
    last = torch.tensor([[seq[-1]] for seq in seqs], dtype=torch.long)
    ids = torch.cat([prefix[copies], last], 1)
    mask = torch.cat([prefix_mask[copies], torch.ones_like(last)], 1)
    return ids, mask, {cache_name: cache}


def _right_padded_chunks(backend, datums: list[Datum], batch_size: int):
    """The datums `batch_size` at a time, each chunk right-padded (ids and mask, on the CPU), with the
    model put in eval mode: what both ways of scoring tokens walk over."""
    backend.model.eval()
    pad = backend.tokenizer.pad_token_id
    for start in range(0, len(datums), batch_size):
        chunk = datums[start:start + batch_size]
        yield chunk, *right_padded([d.input_ids for d in chunk], pad)


@torch.inference_mode()
def hf_token_logprobs(backend, datums: list[Datum], batch_size: int = 32,
                      weighted_only: bool = False) -> list[list[float]]:
    """Per token, log p(token | the tokens before it) under the current weights; the first token,
    which nothing predicts, gets 0. Right-padded batches: causal attention never sees the padding.
    `weighted_only`: only the tokens a datum weights (an RL datum's completion) are scored, the rest
    get 0; the vocabulary projection then runs at those positions alone (most of a rollout is prompt)."""
    if weighted_only:
        return _weighted_token_logprobs(backend, datums, batch_size)
    model = backend.model
    out: list[list[float]] = []
    for chunk, ids, mask in _right_padded_chunks(backend, datums, batch_size):
        ids, mask = ids.to(backend.device), mask.to(backend.device)
        with backend._autocast():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        picked = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        out += [[0.0] + picked[row, :len(d.input_ids) - 1].tolist() for row, d in enumerate(chunk)]
    return out


@torch.inference_mode()
def _weighted_token_logprobs(backend, datums: list[Datum], batch_size: int) -> list[list[float]]:
    """hf_token_logprobs at the weighted tokens only: the output projection (a forward pre-hook on
    it) sees just the hidden states that predict a weighted token, so its cost follows the
    completions, not the prompts."""
    model = backend.model
    out: list[list[float]] = []
    for chunk, ids, mask in _right_padded_chunks(backend, datums, batch_size):
        width = ids.size(1)
        scored = [(row, t) for row, d in enumerate(chunk) for t in range(1, len(d.input_ids)) if d.weights[t] > 0]
        row_of = torch.tensor([r for r, _ in scored], dtype=torch.long)
        before = torch.tensor([t - 1 for _, t in scored], dtype=torch.long)  # the position predicting token t
        where = (row_of * width + before).to(backend.device)
        hook = model.get_output_embeddings().register_forward_pre_hook(
            lambda _, args, where=where: (args[0].reshape(-1, args[0].size(-1))[where].unsqueeze(0),))
        try:
            with backend._autocast():
                logits = model(input_ids=ids.to(backend.device), attention_mask=mask.to(backend.device),
                               use_cache=False).logits[0]
        finally:
            hook.remove()
        targets = ids[row_of, before + 1].to(backend.device)
        picked = logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).tolist()
        rows = [[0.0] * len(d.input_ids) for d in chunk]
        for (row, t), value in zip(scored, picked):
            rows[row][t] = value
        out += rows
    return out


# -- the hosted service -------------------------------------------------------------------------

def tinker_sample_sequences(backend, prompts: list[list[Message]], num_samples: int, max_tokens: int,
                            temperature: float = 1.0) -> list[list[SampledSequence]]:
    """The service's own sampler: one request per prompt for all its samples, every request in flight
    at once; the service returns each token's log-probability with it."""
    from transferlab.backends.tinker import tinker_types

    types = tinker_types()
    sampler = backend.sampling_client()
    params = types.SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                  stop=stop_token_ids(backend.tokenizer) or None)  # end of text and of turn
    futures = [sampler.sample(prompt=types.ModelInput.from_ints(render_prompt(backend.tokenizer, p, backend.thinking)),
                              num_samples=num_samples, sampling_params=params) for p in prompts]
    out = []
    for future in futures:
        sequences = future.result().sequences
        out.append([SampledSequence(tuple(s.tokens), tuple(s.logprobs or ()), reply_text(backend.tokenizer, s.tokens))
                    for s in sequences])
    return out


def tinker_token_logprobs(backend, datums: list[Datum], weighted_only: bool = False) -> list[list[float]]:
    """The service's compute_logprobs on each whole sequence (the first token's None becomes 0;
    `weighted_only`: unweighted tokens too, as hf_token_logprobs gives them)."""
    from transferlab.backends.tinker import tinker_types

    types = tinker_types()
    sampler = backend.sampling_client()
    futures = [sampler.compute_logprobs(types.ModelInput.from_ints(list(d.input_ids))) for d in datums]
    scores = [[0.0 if v is None else float(v) for v in f.result()] for f in futures]
    if weighted_only:
        scores = [[v if w > 0 else 0.0 for v, w in zip(row, d.weights)] for row, d in zip(scores, datums)]
    return scores
