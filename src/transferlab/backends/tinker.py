"""The hosted backend: the Backend protocol over a service speaking the Tinker training API.

Our datums become the SDK's: the model reads tokens[:-1] and predicts tokens[1:], weighted by our
per-token weights (1 on assistant tokens, rendered with the base model's own chat template). The
service's `cross_entropy` loss is a *sum* over weighted tokens, so each datum's weights are scaled
as train.loss_normalization says (backends/normalization.py: by 1 / (its weighted tokens x the
examples) per example, by 1 / the batch's weighted tokens per token): the service's loss and
gradient are then the hf backend's, and a learning rate means the same on both.

The client's life: at start-up the service is asked which base models it trains, and an unknown
one is refused with that list; one training client is made (a fresh LoRA, or, resuming, the saved
state with its Adam moments, or, for a later stage of an experiment, the stage's saved weights);
each step submits forward_backward and optim_step before waiting on either, so both ride the same
clock cycle of the service; evaluation samples from the weights as they are (saved for a sampling
client only when an evaluation asks, once per optimizer step); a checkpoint is a small JSON file
naming the service's saved state, which expires after ROLLING_TTL unless it is the finished run's
last (FINAL_TTL); `close` ends the session. The API key comes from TINKER_API_KEY, read by the SDK
itself, and is never written anywhere.

Not yet run against the live service (it cannot be reached from our CI): every network call here,
listed in docs/real-models.md. Datum construction, loss normalisation, chat rendering, the call
order and the checkpoint bookkeeping are tested offline against the SDK's own types.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transferlab.backends.hf import ModelNotFound
from transferlab.backends.normalization import loss_scales
from transferlab.core import Datum, Message
from transferlab.train.render import render_prompt, reply_text, stop_token_ids

STATE_FILE = "tinker_state.json"
API_KEY = "TINKER_API_KEY"
GROUPS = {"attn": "train_attn", "mlp": "train_mlp", "unembed": "train_unembed"}
ROLLING_TTL = 7 * 24 * 3600  # a rolling checkpoint: long enough to resume a killed run after a weekend
FINAL_TTL = 365 * 24 * 3600  # a finished run's last state: a year to reopen it (the SDK allows 1 h..10 y)
EXAMPLE_MODEL = "Qwen/Qwen3-4B-Instruct-2507"  # for messages; the service's own list decides


def tinker_types():
    try:
        from tinker import types
    except ImportError as err:
        raise ImportError("the tinker backend needs the Tinker SDK: pip install 'transferlab[tinker]'") from err
    return types


def served_models(rest) -> list[str]:
    """The base models the service will train, from its capabilities."""
    models = rest.get_server_capabilities().result().supported_models
    return sorted(m.model_name for m in models if m.model_name and m.trainable is not False)


def check_served(rest, base_model: str) -> None:
    """Refuse, before any client is made, a base model the service does not train."""
    served = served_models(rest)
    if base_model not in served:
        raise ModelNotFound(f"the tinker service does not train {base_model!r}; set model.name to one of the "
                            f"models it trains: {', '.join(served) or '(none offered to this API key)'}")


def saved_record(folder: str | Path) -> dict | None:
    """The service state a folder names (our checkpoints and an experiment's saved stages), if any."""
    path = Path(folder) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


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
    """forward_backward / optim_step / train_step / sample / save_state / load_state / close on a
    hosted training service."""

    def __init__(self, service, training, tokenizer, *, base_model: str, lora_rank: int, rest=None,
                 weight_decay: float = 0.0, grad_clip: float = 1.0, loss_normalization: str = "example",
                 thinking: bool = False):
        loss_scales([], loss_normalization)  # an unknown name stops here
        self.loss_normalization = loss_normalization
        self.thinking = thinking
        self.service = service
        self.rest = rest
        self.training = training
        self.tokenizer = tokenizer
        self.base_model = base_model
        self.lora_rank = lora_rank
        # the hf backend's AdamW: betas (0.9, 0.98), torch's eps, clipping at 1.0, train.weight_decay
        self.adam = {"beta1": 0.9, "beta2": 0.98, "eps": 1e-8, "weight_decay": weight_decay,
                     "grad_clip_norm": grad_clip}
        self.sampler = None  # a sampling client on the current weights; None once they change
        self.saves = 0
        self.last_state: str | None = None  # the service path of the latest save_state
        self.closed = False

    @classmethod
    def from_config(cls, model_config, service=None, *, rest=None, loss_normalization: str = "example",
                    weight_decay: float = 0.0, resume_from: str | Path | None = None) -> TinkerBackend:
        """Ask the service what it trains, then make one training client: from `resume_from` (our
        checkpoint: weights and Adam moments), from the saved stage `model.name` names (a folder
        holding tinker_state.json: its weights, a fresh optimizer, as the hf backend reopens a
        stage's folder), or a fresh LoRA adapter on the base model `model.name`."""
        groups = lora_groups(model_config.lora_targets)
        if service is None:
            if not os.environ.get(API_KEY):
                raise RuntimeError(f"the tinker backend needs the service's API key in the environment: export "
                                   f"{API_KEY}=... (it is read there and never written to the run folder)")
            import tinker

            service = tinker.ServiceClient()  # reads TINKER_API_KEY (and TINKER_BASE_URL) itself
            rest = rest or tinker.RestClient()
        stage = saved_record(model_config.name)
        resumed = saved_record(resume_from) if resume_from is not None else None
        if resume_from is not None and resumed is None:
            raise FileNotFoundError(f"{resume_from} holds no {STATE_FILE}: it is not a tinker checkpoint")
        base_model = (resumed or stage or {}).get("base_model", model_config.name)
        if stage and resumed and stage["base_model"] != resumed["base_model"]:
            raise ValueError(f"{resume_from} holds a {resumed['base_model']} adapter, not one of {stage['base_model']}")
        check_served(rest, base_model)
        if resumed is not None:
            training = service.create_training_client_from_state_with_optimizer(resumed["state_path"]).result()
        elif stage is not None:
            training = service.create_training_client_from_state(stage["state_path"]).result()
        else:
            import torch

            training = service.create_lora_training_client(
                base_model=base_model, rank=model_config.lora_rank,
                seed=torch.initial_seed() % 2 ** 31, **groups).result()  # the experiment's seed, as hf seeds PEFT
        return cls(service, training, training.get_tokenizer(), base_model=base_model, rest=rest,
                   lora_rank=model_config.lora_rank, loss_normalization=loss_normalization,
                   weight_decay=weight_decay, thinking=model_config.thinking)

    def forward_backward(self, datums: list[Datum], loss_fn: str = "cross_entropy") -> float:
        """The normalised batch loss; the service accumulates gradients until optim_step.
        "importance_sampling" (RLDatum) runs the service's own loss of that name (backends/rl_loss.py)."""
        from transferlab.backends.rl_loss import check_loss, tinker_rl_loss, to_tinker_rl_datum

        check_loss(loss_fn, datums)
        if loss_fn == "importance_sampling":
            batch = [to_tinker_rl_datum(d, scale) for d, scale in zip(datums, loss_scales(datums, self.loss_normalization))]
            return tinker_rl_loss(self.training.forward_backward(batch, "importance_sampling").result(), batch)
        batch = to_tinker_batch(datums, self.loss_normalization)
        return batch_loss(self.training.forward_backward(batch, "cross_entropy").result(), batch)

    def optim_step(self, lr: float) -> None:
        self.training.optim_step(self.adam_params(lr)).result()
        self.sampler = None

    def train_step(self, datums: list[Datum], lr: float) -> float:
        """forward_backward and optim_step submitted before waiting on either (the service runs them
        in order, in one clock cycle; waiting between them costs a cycle per step)."""
        batch = to_tinker_batch(datums, self.loss_normalization)
        gradients = self.training.forward_backward(batch, "cross_entropy")
        step = self.training.optim_step(self.adam_params(lr))
        output = gradients.result()
        step.result()
        self.sampler = None
        return batch_loss(output, batch)

    def adam_params(self, lr: float):
        return tinker_types().AdamParams(learning_rate=lr, **self.adam)

    def sample(self, prompts: list[list[Message]], max_tokens: int, temperature: float = 0.0,
               **_batching) -> list[str]:
        """Completions from the current weights; every request is in flight at once."""
        types = tinker_types()
        if self.sampler is None:
            self.sampler = self.training.save_weights_and_get_sampling_client().result()
        params = types.SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                      stop=stop_token_ids(self.tokenizer) or None)  # end of text and of turn
        futures = [self.sampler.sample(prompt=types.ModelInput.from_ints(render_prompt(self.tokenizer, p, self.thinking)),
                                       num_samples=1, sampling_params=params) for p in prompts]
        return [reply_text(self.tokenizer, f.result().sequences[0].tokens) for f in futures]

    def sampling_client(self):
        """A sampling client on the current weights (saved for it once per optimizer step)."""
        if self.sampler is None:
            self.sampler = self.training.save_weights_and_get_sampling_client().result()
        return self.sampler

    def sample_sequences(self, prompts: list[list[Message]], num_samples: int, max_tokens: int,
                         temperature: float = 1.0, **_batching):
        """`num_samples` completions per prompt with the service's token log-probabilities (for RL)."""
        from transferlab.backends.rl_sampling import tinker_sample_sequences

        return tinker_sample_sequences(self, prompts, num_samples, max_tokens, temperature)

    def token_logprobs(self, datums: list[Datum], weighted_only: bool = False) -> list[list[float]]:
        """Each token's log-probability under the current weights (the service's compute_logprobs)."""
        from transferlab.backends.rl_sampling import tinker_token_logprobs

        return tinker_token_logprobs(self, datums, weighted_only)

    def save_state(self, path: str | Path) -> None:
        """The service keeps the weights and Adam moments (for ROLLING_TTL; `close` keeps the last
        one for FINAL_TTL); the folder keeps where they are. No sampler weights: evaluation makes
        its own when it samples."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.saves += 1
        name = f"transferlab-{int(time.time())}-{self.saves}"
        self.last_state = self.training.save_state(name, ttl_seconds=ROLLING_TTL).result().path
        record = {"backend": "tinker", "base_model": self.base_model, "lora_rank": self.lora_rank,
                  "state_path": self.last_state, "name": name, "ttl_seconds": ROLLING_TTL}
        (path / STATE_FILE).write_text(json.dumps(record, indent=1))
        self.tokenizer.save_pretrained(path)

    def load_state(self, path: str | Path) -> None:
        """Continue from the service's saved state: a new training client holding those weights and
        the optimizer's moments (the SDK's way to resume). A run resumes through `from_config`
        (resume_from), which makes this client instead of a fresh one."""
        record = saved_record(path)
        if record is None:
            raise FileNotFoundError(f"{path} holds no {STATE_FILE}: it is not a tinker checkpoint")
        if record["base_model"] != self.base_model:
            raise ValueError(f"{path} holds a {record['base_model']} adapter, not one of {self.base_model}")
        self.training = self.service.create_training_client_from_state_with_optimizer(record["state_path"]).result()
        self.sampler = None

    def close(self, status: str = "success") -> None:
        """End the session: a finished run's last saved state is kept for FINAL_TTL, not ROLLING_TTL."""
        if self.closed:
            return
        self.closed = True
        if status == "success" and self.last_state is not None and self.rest is not None:
            self.rest.set_checkpoint_ttl_from_tinker_path(self.last_state, FINAL_TTL).result()
        self.service.close(status).result()

    def checkpoint_bytes(self) -> int:
        return 64 * 1024  # a JSON record and the tokenizer files


def batch_loss(output, batch) -> float:
    """The service's summed loss over our scaled weights: the normalised batch loss."""
    if "loss:sum" in output.metrics:
        return float(output.metrics["loss:sum"])
    return sum(-float((o["logprobs"].to_numpy() * d.loss_fn_inputs["weights"].to_numpy()).sum())
               for o, d in zip(output.loss_fn_outputs, batch))
