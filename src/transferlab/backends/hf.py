"""The in-process backend: transformers on CPU or GPU, the organism and any hub model alike."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from transferlab.core import Datum, Message
from transferlab.train.render import render_prompt


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


class HFBackend:
    """forward_backward / optim_step / sample / save_state over one transformers model."""

    def __init__(self, model, tokenizer, *, weight_decay: float = 0.0, bf16: bool = True,
                 grad_clip: float = 1.0, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.bf16 = bf16
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=weight_decay,
                                           betas=(0.9, 0.98))

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def forward_backward(self, datums: list[Datum]) -> float:
        """Mean loss per weighted token over the batch; gradients accumulate until optim_step.

        Rows are left-padded so every row's weighted (assistant) tokens sit at the end; the model
        then computes logits for the last few positions only, which skips most of the vocabulary
        projection on prompt tokens that carry no loss.
        """
        self.model.train()
        width = max(len(d.input_ids) for d in datums)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(datums), width), pad, dtype=torch.long)
        weights = torch.zeros((len(datums), width))
        attention = torch.zeros((len(datums), width), dtype=torch.long)
        first_weighted = width
        for row, d in enumerate(datums):
            start = width - len(d.input_ids)
            ids[row, start:] = torch.tensor(d.input_ids)
            weights[row, start:] = torch.tensor(d.weights)
            attention[row, start:] = 1
            nonzero = [i for i, w in enumerate(d.weights) if w]
            first_weighted = min(first_weighted, start + (nonzero[0] if nonzero else len(d.weights)))
        keep = min(width, width - first_weighted + 1)  # logits at position t predict token t+1
        positions = (attention.cumsum(1) - 1).clamp(min=0)
        ids, weights, attention, positions = (t.to(self.device) for t in (ids, weights, attention, positions))
        with self._autocast():
            logits = self.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                                logits_to_keep=keep).logits
        targets = ids[:, width - keep + 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        w = weights[:, width - keep + 1:].reshape(-1)
        loss = (nll * w).sum() / w.sum().clamp(min=1)
        loss.backward()
        return float(loss.detach())

    def optim_step(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def sample(self, prompts: list[list[Message]], max_tokens: int, temperature: float = 0.0,
               batch_size: int = 128) -> list[str]:
        """Greedy (or sampled) completions, batched with left padding and the KV cache."""
        self.model.eval()
        out: list[str] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(prompts), batch_size):
            encoded = [render_prompt(self.tokenizer, p) for p in prompts[start: start + batch_size]]
            width = max(map(len, encoded))
            ids = torch.full((len(encoded), width), pad, dtype=torch.long)
            attention = torch.zeros_like(ids)
            for row, e in enumerate(encoded):
                ids[row, width - len(e):] = torch.tensor(e)
                attention[row, width - len(e):] = 1
            with self._autocast():
                generated = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=attention.to(self.device),
                    max_new_tokens=max_tokens, do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                    pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id)
            out += self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        return out

    def save_state(self, path: str | Path) -> None:
        """Weights, tokenizer and optimizer, so a run can resume or be reopened with from_pretrained."""
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")

    def load_state(self, path: str | Path) -> None:
        path = Path(path)
        self.model.load_state_dict(AutoModelForCausalLM.from_pretrained(path).state_dict())
        optimizer = path / "optimizer.pt"
        if optimizer.exists():
            self.optimizer.load_state_dict(torch.load(optimizer))
