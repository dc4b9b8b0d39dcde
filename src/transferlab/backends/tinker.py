"""The hosted backend: the Backend protocol over a service speaking the Tinker training API.

Our datums become the SDK's: the model reads tokens[:-1] and predicts tokens[1:], weighted by our
per-token weights (1 on assistant tokens, rendered with the base model's own chat template). The
service's `cross_entropy` loss is a *sum* over weighted tokens, so each datum's weights are scaled
as train.loss_normalization says (backends/normalization.py: by 1 / (its weighted tokens x the
examples) per example, by 1 / the batch's weighted tokens per token): the service's loss and
gradient are then the hf backend's, and a learning rate means the same on both.

Evaluation samples from the weights as they are now (saved for a sampling client after each optimizer
step, lazily); a checkpoint is a small JSON file naming the service's saved state, from which a killed
run resumes (weights and Adam moments). The API key comes from TINKER_API_KEY, read by the SDK itself,
and is never written anywhere.

Not yet run against the live service (it cannot be reached from our CI): every network call here,
listed in docs/real-models.md. Datum construction, loss normalisation, chat rendering and the
checkpoint bookkeeping are tested offline against the SDK's own types.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transferlab.backends.normalization import loss_scales
from transferlab.core import Datum, Message
from transferlab.train.render import render_prompt

STATE_FILE = "tinker_state.json"
API_KEY = "TINKER_API_KEY"
GROUPS = {"attn": "train_attn", "mlp": "train_mlp", "unembed": "train_unembed"}


def tinker_types():
    try:
        from tinker import types
    except ImportError as err:
        raise ImportError("the tinker backend needs the Tinker SDK: pip install 'transferlab[tinker]'") from err
    return types


def to_tinker_datum(datum: Datum, scale: float = 1.0):
    """One of our datums as the SDK's: inputs tokens[:-1], targets tokens[1:], weights[1:] * scale."""
    types = tinker_types()
    tokens = list(datum.input_ids)
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                       loss_fn_inputs={"target_tokens": tokens[1:],
                                       "weights": [float(w) * scale for w in datum.weights[1:]]})


def to_tinker_batch(datums: list[Datum], normalization: str = "example") -> list:
    """The SDK's datums, each weighted so the service's summed loss is our normalised batch loss."""
    return [to_tinker_datum(d, scale) for d, scale in zip(datums, loss_scales(datums, normalization))]


def lora_groups(targets: list[str]) -> dict[str, bool]:
    """model.lora_targets as the service's switches: it adapts whole groups of layers."""
    if "all-linear" in targets:
        extra = set(targets) - {"all-linear"}
        if extra - {"unembed"}:
            raise ValueError(f"model.lora_targets {targets}: 'all-linear' already covers {sorted(extra)}")
        return {"train_attn": True, "train_mlp": True, "train_unembed": "unembed" in extra}
    unknown = [t for t in targets if t not in GROUPS]
    if unknown:
        raise ValueError(f"the tinker backend adapts whole groups of layers; model.lora_targets may hold "
                         f"'all-linear' or {', '.join(map(repr, GROUPS))}, not {unknown}")
    return {flag: name in targets for name, flag in GROUPS.items()}


class TinkerBackend:
    """forward_backward / optim_step / sample / save_state / load_state on a hosted training service."""

    def __init__(self, service, training, tokenizer, *, base_model: str, lora_rank: int,
                 weight_decay: float = 0.0, grad_clip: float = 1.0, loss_normalization: str = "example"):
        loss_scales([], loss_normalization)  # an unknown name stops here
        self.loss_normalization = loss_normalization
        self.service = service
        self.training = training
        self.tokenizer = tokenizer
        self.base_model = base_model
        self.lora_rank = lora_rank
        # the hf backend's AdamW: betas (0.9, 0.98), torch's eps, clipping at 1.0
        self.adam = {"beta1": 0.9, "beta2": 0.98, "eps": 1e-8, "weight_decay": weight_decay,
                     "grad_clip_norm": grad_clip}
        self.sampler = None  # a sampling client on the current weights; None once they change
        self.saves = 0

    @classmethod
    def from_config(cls, model_config, service=None, *, loss_normalization: str = "example") -> TinkerBackend:
        groups = lora_groups(model_config.lora_targets)
        if service is None:
            if not os.environ.get(API_KEY):
                raise RuntimeError(f"the tinker backend needs the service's API key in the environment: export "
                                   f"{API_KEY}=... (it is read there and never written to the run folder)")
            import tinker

            service = tinker.ServiceClient()  # reads TINKER_API_KEY (and TINKER_BASE_URL) itself
        import torch

        training = service.create_lora_training_client(
            base_model=model_config.name, rank=model_config.lora_rank,
            seed=torch.initial_seed() % 2 ** 31, **groups).result()  # the experiment's seed, as hf seeds PEFT
        return cls(service, training, training.get_tokenizer(), base_model=model_config.name,
                   lora_rank=model_config.lora_rank, loss_normalization=loss_normalization)

    def forward_backward(self, datums: list[Datum]) -> float:
        """The normalised batch loss; the service accumulates gradients until optim_step."""
        batch = to_tinker_batch(datums, self.loss_normalization)
        output = self.training.forward_backward(batch, "cross_entropy").result()
        if "loss:sum" in output.metrics:  # with our scaled weights, the sum is the batch loss
            return float(output.metrics["loss:sum"])
        nll = sum(-float((o["logprobs"].to_numpy() * d.loss_fn_inputs["weights"].to_numpy()).sum())
                  for o, d in zip(output.loss_fn_outputs, batch))
        return nll

    def optim_step(self, lr: float) -> None:
        types = tinker_types()
        self.training.optim_step(types.AdamParams(learning_rate=lr, **self.adam)).result()
        self.sampler = None

    def sample(self, prompts: list[list[Message]], max_tokens: int, temperature: float = 0.0,
               **_batching) -> list[str]:
        """Completions from the current weights; every request is in flight at once."""
        types = tinker_types()
        if self.sampler is None:
            self.sampler = self.training.save_weights_and_get_sampling_client().result()
        eos = self.tokenizer.eos_token_id
        params = types.SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                      stop=[eos] if eos is not None else None)
        futures = [self.sampler.sample(prompt=types.ModelInput.from_ints(render_prompt(self.tokenizer, p)),
                                       num_samples=1, sampling_params=params) for p in prompts]
        return [self.tokenizer.decode(f.result().sequences[0].tokens, skip_special_tokens=True) for f in futures]

    def save_state(self, path: str | Path) -> None:
        """The service keeps the weights and Adam moments; the folder keeps where they are."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.saves += 1
        name = f"transferlab-{int(time.time())}-{self.saves}"
        state = self.training.save_state(name).result().path
        sampler = self.training.save_weights_for_sampler(name).result().path
        record = {"backend": "tinker", "base_model": self.base_model, "lora_rank": self.lora_rank,
                  "state_path": state, "sampler_path": sampler, "name": name}
        (path / STATE_FILE).write_text(json.dumps(record, indent=1))
        self.tokenizer.save_pretrained(path)

    def load_state(self, path: str | Path) -> None:
        """Continue from the service's saved state: a new training client holding those weights and
        the optimizer's moments (the SDK's way to resume)."""
        record = json.loads((Path(path) / STATE_FILE).read_text())
        if record["base_model"] != self.base_model:
            raise ValueError(f"{path} holds a {record['base_model']} adapter, not one of {self.base_model}")
        self.training = self.service.create_training_client_from_state_with_optimizer(record["state_path"]).result()
        self.sampler = None

    def checkpoint_bytes(self) -> int:
        return 64 * 1024  # a JSON record and the tokenizer files
