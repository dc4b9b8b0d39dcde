"""The in-process backend: transformers on CPU or GPU, the organism and any hub model alike."""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from transferlab.backends.lora import is_lora, load_adapter
from transferlab.backends.normalization import loss_scales
from transferlab.backends.rl_loss import check_loss, token_loss
from transferlab.backends.rl_sampling import hf_sample_sequences, hf_token_logprobs, left_padded
from transferlab.core import Datum, Message, SampledSequence
from transferlab.train.render import render_prompt, reply_text, stop_token_ids


class ModelNotFound(ValueError):
    pass


def load_pretrained(name: str):
    """Model and tokenizer through `from_pretrained`, whether `name` is a folder or a hub name."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name)
    except OSError as err:
        raise ModelNotFound(
            f"cannot load model {name!r}: not a local folder with config.json and weights, and not "
            f"reachable on the hub ({err.__class__.__name__}). Pass a folder path, 'organism' for "
            f"the shipped organism, or a hub name on a machine with network access.") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def bf16_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds this device up. GPUs with bf16 and CPUs with native bf16 (AVX-512
    BF16, AMX) gain; an AVX2-only CPU emulates it and runs ~10x slower (measured here: 3.3 s vs
    0.3-0.4 s per step of the 2-layer organism), so there it stays fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


class HFBackend:
    """forward_backward / optim_step / sample / save_state over one transformers model.

    `loss_normalization` defaults to "token", the objective the organism builder trains with (and
    its recorded notes assume); experiment runs pass train.loss_normalization (default "example")
    through `open_backend`."""

    def __init__(self, model, tokenizer, *, weight_decay: float = 0.0, bf16: bool | str = "auto",
                 grad_clip: float = 1.0, device: str | None = None, loss_normalization: str = "token",
                 thinking: bool = False):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        loss_scales([], loss_normalization)  # an unknown name stops here, not at the first step
        self.loss_normalization = loss_normalization
        self.thinking = thinking  # model.thinking: prompts with the template's thinking on
        self.bf16 = bf16_pays(self.device) if bf16 == "auto" else bool(bf16)
        self.grad_clip = grad_clip
        # only what trains: every weight, or the LoRA adapters alone (the frozen base holds no state)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3,
                                           weight_decay=weight_decay, betas=(0.9, 0.98))

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def forward_backward(self, datums: list[Datum], loss_fn: str = "cross_entropy") -> float:
        """The batch's loss under `loss_normalization` (backends/normalization.py: the mean over
        examples of each one's mean over its weighted tokens, or the mean over all weighted tokens);
        gradients accumulate until optim_step. `loss_fn`: "cross_entropy", or "importance_sampling"
        on RLDatum (backends/rl_loss.py)."""
        return self.scaled_forward_backward(datums, loss_scales(datums, self.loss_normalization), loss_fn)

    def scaled_forward_backward(self, datums: list[Datum], scales: list[float],
                                loss_fn: str = "cross_entropy") -> float:
        """Backward on, and return, the sum over `datums` of scale * weight * NLL per weighted token:
        these datums' part of a batch loss whose scales were fixed over the whole batch, so parts
        (micro-batches, processes) add up to it.

        Padding-free packing: examples are packed several to a row (first fit, longest first) into
        rows as wide as the longest example, each restarting its position ids at 0. With no attention
        mask and no cache, transformers reads restarting position ids as packed sequences and masks
        attention block-diagonally, so no example sees another (tests/test_packing.py checks this
        against one-sequence-at-a-time losses). The vocabulary projection runs only at the positions
        that predict a weighted (assistant) token: a few per example instead of every position.
        """
        check_loss(loss_fn, datums)
        self.model.train()
        width = max(len(d.input_ids) for d in datums)
        rows: list[list[tuple[Datum, float]]] = []
        free: list[int] = []
        for d, scale in sorted(zip(datums, scales), key=lambda pair: -len(pair[0].input_ids)):
            row = next((r for r, room in enumerate(free) if room >= len(d.input_ids)), len(rows))
            if row == len(rows):
                rows.append([])
                free.append(width)
            rows[row].append((d, scale))
            free[row] -= len(d.input_ids)
        ids: list[int] = []
        positions: list[int] = []
        scored: list[int] = []  # flat index of each position whose next token carries loss
        targets: list[int] = []
        weights: list[float] = []
        packed: list[Datum] = []  # the datums in the order their weighted tokens are scored
        for row, room in zip(rows, free):
            for d, scale in row:
                packed.append(d)
                scored += [len(ids) + t for t, w in enumerate(d.weights[1:]) if w]
                targets += [tok for tok, w in zip(d.input_ids[1:], d.weights[1:]) if w]
                weights += [w * scale for w in d.weights[1:] if w]
                ids += d.input_ids
                positions += range(len(d.input_ids))
            ids += [self.tokenizer.pad_token_id] * room
            positions += range(room)  # the padding is a sequence of its own: no example attends to it
        shape = (len(rows), width)
        ids = torch.tensor(ids, device=self.device).view(shape)
        positions = torch.tensor(positions, device=self.device).view(shape)
        scored = torch.tensor(scored, dtype=torch.long, device=self.device)
        targets = torch.tensor(targets, dtype=torch.long, device=self.device)
        weights = torch.tensor(weights, device=self.device)

        narrowed = []

        def scored_only(head, args):  # the model's own head (and any logit scaling after it), on fewer rows
            narrowed.append(True)
            return (args[0].reshape(-1, args[0].size(-1))[scored].unsqueeze(0),)

        hook = self.model.get_output_embeddings().register_forward_pre_hook(scored_only)
        try:
            with self._autocast():
                logits = self.model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
        finally:
            hook.remove()
        if not narrowed:
            raise RuntimeError(
                f"{type(self.model).__name__} does not pass its hidden states through "
                "get_output_embeddings(), so the loss cannot be restricted to the assistant tokens")
        nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        loss = token_loss(loss_fn, -nll, weights, packed)
        loss.backward()
        return float(loss.detach())

    def train_step(self, datums: list[Datum], lr: float) -> float:
        """One optimizer step on one batch; returns the batch's loss before the step."""
        loss = self.forward_backward(datums)
        self.optim_step(lr)
        return loss

    def close(self, status: str = "success") -> None:
        """Nothing to release: the model lives in this process."""

    def optim_step(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.inference_mode()  # no autograd bookkeeping at all: ~6% faster than no_grad on the organism
    def sample(self, prompts: list[list[Message]], max_tokens: int, temperature: float = 0.0,
               batch_size: int = 128) -> list[str]:
        """Greedy (or sampled) completions, batched with left padding and the KV cache.

        Prompts that begin alike share the work of that beginning. The eval grid asks every example
        under both instructions of a pair, so two prompts differ only in their last few tokens: sorted,
        they sit side by side; a group's common prefix runs once and its cache is copied to each
        member, whose own suffix and answer follow. A row reads [pad, prefix | pad, suffix | answer]:
        the attention mask skips both pads and positions count real tokens, so each answer is the
        one its prompt gets alone.
        """
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        encoded = [render_prompt(self.tokenizer, p, self.thinking) for p in prompts]
        groups: list[tuple[int, list[int]]] = []  # (prefix length, prompt indices)
        for i in sorted(range(len(encoded)), key=encoded.__getitem__):
            e = encoded[i]
            if groups:
                shared, members = groups[-1]
                head = encoded[members[0]]
                limit = min(shared, len(e) - 1)  # a member keeps at least one token of its own
                common = next((k for k in range(limit) if head[k] != e[k]), limit)
                if common >= max(1, shared // 2) and len(members) < batch_size:
                    groups[-1] = (common, members + [i])
                    continue
            groups.append((len(e) - 1, [i]))
        groups.sort(key=lambda g: g[0])  # similar lengths in a batch: less padding
        batches: list[list[tuple[int, list[int]]]] = []
        for group in groups:
            if not batches or sum(len(m) for _, m in batches[-1]) + len(group[1]) > batch_size:
                batches.append([])
            batches[-1].append(group)

        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model  # PEFT
        accepts = inspect.signature(base.forward).parameters
        cache_name = "cache" if "cache" in accepts else "past_key_values"  # transformers 5 renamed it
        keep = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
        out = [""] * len(prompts)
        for batch in batches:
            members = [(n, i) for n, group in batch for i in group]
            copies = torch.tensor([g for g, (_, group) in enumerate(batch) for _ in group])
            prefix, prefix_mask = left_padded([encoded[group[0]][:n] for n, group in batch], pad)
            suffix, suffix_mask = left_padded([encoded[i][n:] for n, i in members], pad)
            reuse = {}
            if prefix.size(1):
                positions = (prefix_mask.cumsum(1) - 1).clamp(min=0)
                with self._autocast():
                    prefilled = self.model(input_ids=prefix.to(self.device), use_cache=True, **keep,
                                           attention_mask=prefix_mask.to(self.device),
                                           position_ids=positions.to(self.device))
                cache = getattr(prefilled, cache_name)
                cache.reorder_cache(copies.to(self.device))  # one copy of its group's prefix per member
                reuse[cache_name] = cache
            ids = torch.cat([prefix[copies], suffix], 1)
            mask = torch.cat([prefix_mask[copies], suffix_mask], 1)
            with self._autocast():
                generated = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=max_tokens, do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                    pad_token_id=pad, eos_token_id=stop_token_ids(self.tokenizer), **reuse)
            for (_, i), answer in zip(members, generated[:, ids.size(1):].tolist()):
                out[i] = reply_text(self.tokenizer, answer)
        return out

    def sample_sequences(self, prompts: list[list[Message]], num_samples: int, max_tokens: int,
                         temperature: float = 1.0, batch_size: int = 64) -> list[list[SampledSequence]]:
        """`num_samples` completions per prompt with each token's sampling log-probability (for RL)."""
        return hf_sample_sequences(self, prompts, num_samples, max_tokens, temperature, batch_size)

    def token_logprobs(self, datums: list[Datum], weighted_only: bool = False) -> list[list[float]]:
        """Each token's log-probability under the current weights (0 for the first; with
        `weighted_only`, 0 for every token the datum does not weight)."""
        return hf_token_logprobs(self, datums, weighted_only=weighted_only)

    def save_state(self, path: str | Path) -> None:
        """Weights, tokenizer and optimizer, so a run can resume or be reopened with from_pretrained.
        Under LoRA the weights are the adapter alone (PEFT's save_pretrained), which names its base."""
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")

    def load_state(self, path: str | Path) -> None:
        path = Path(path)
        if is_lora(self.model):
            load_adapter(self.model, path)
        else:
            self.model.load_state_dict(AutoModelForCausalLM.from_pretrained(path).state_dict())
        optimizer = path / "optimizer.pt"
        if optimizer.exists():
            self.optimizer.load_state_dict(torch.load(optimizer))
