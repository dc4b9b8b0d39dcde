"""The `rl` kind's config: the seed experiment's (model, arms, eval grid, schedule) plus an [rl] section.

Each training step draws `experiment.train.batch_size` prompts (arms by weight, each prompt under its
arm's propensity instruction, as SFT draws them), samples `rl.group_size` completions of each, and
rewards every completion with the weighted sum of its reward components:

    correct    the task's grader (1 right, 0 wrong)
    adherent   the arm's propensity judge (eval.judge: heuristic or llm; 1 follows, 0 does not)

A component with weight 0 is still measured and logged; it only leaves the reward.

An optional [warm_start] runs the seed experiment's SFT loop first (train/loop.py, into the run
folder's warm_start/), and RL starts from its checkpoint: where the organism starts at chance, RL
has no reward variance to learn from (docs/rl.md).

`design = "hacking"` selects the other design of this kind, the reward-hackable environment with
its conditions (hacking_config.py); `RLConfig.model_validate` hands such a config over.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from transferlab.config import ArmConfig, ExperimentConfig, Strict

COMPONENTS = ("correct", "adherent")


class RLKnobs(Strict):
    """What every RL design shares: how completions are sampled and turned into advantages."""

    group_size: int = Field(4, ge=2, description="completions sampled per prompt (G)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the rollouts (1: the policy "
                               "itself, as the importance-sampling ratio and the KL estimate assume)")
    max_tokens: int | None = Field(None, ge=1, description="tokens per rollout; default: eval.max_tokens")
    scale_std: bool = Field(False, description="divide each group's advantages by its std + 1e-4 (TRL's "
                            "scale_rewards); false: reward minus the group mean (tinker-cookbook's GRPO)")
    kl_coef: float = Field(0.0, ge=0, description="KL penalty to the starting weights, put into the advantages "
                           "as tinker-cookbook does; the KL is logged at 0 too")


class RLSection(RLKnobs):
    rewards: dict[str, float] = Field(default_factory=lambda: {"correct": 1.0, "adherent": 0.0},
                                      description="weight of each reward component: correct (the task's "
                                      "grader), adherent (the arm's propensity judge)")

    @field_validator("rewards")
    @classmethod
    def _known_components(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown reward component(s) {', '.join(unknown)}; allowed: {', '.join(COMPONENTS)}")
        if not any(v.values()):
            raise ValueError("every reward weight is 0: give correct (or adherent) a weight")
        return {c: float(v.get(c, 0.0)) for c in COMPONENTS}


class WarmStart(Strict):
    """A short SFT stage before RL: the seed experiment's loop on the same model and tasks."""

    steps: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup: int = Field(20, ge=0)
    replay: float = Field(0.0, ge=0, lt=1, description="share of each batch from the organism's curriculum")
    arms: list[ArmConfig] | None = Field(None, description="what to train on (task, propensity, weight); "
                                         "default: the experiment's arms")
    checkpoint: str | None = Field(None, description="start from this finished warm-start instead of training "
                                   "one (a run folder's warm_start/): another RL run of the same seed shares it; "
                                   "its settings must equal these")

    def experiment(self, exp: ExperimentConfig, name: str) -> ExperimentConfig:
        """The seed experiment's config of this stage: the RL run's model, tasks and eval, these steps."""
        data = exp.model_dump(mode="json")
        data["name"] = f"{name}-warm-start"
        data["train"] |= {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "warmup": self.warmup,
                          "replay": self.replay}
        data["eval"]["every"] = self.steps
        if self.arms is not None:
            data["arms"] = [arm.model_dump(mode="json") for arm in self.arms]
        return ExperimentConfig.model_validate(data)


DESIGNS = ("transfer", "hacking")


class RLConfig(Strict):
    kind: Literal["rl"]
    design: Literal["transfer"] = Field("transfer", description="'transfer': the seed experiment's arms and eval "
                                        "grid; 'hacking': the reward-hackable environment (hacking_config.py)")
    name: str = "rl"
    seed: int = 0
    rl: RLSection = RLSection()
    warm_start: WarmStart | None = Field(None, description="SFT steps before RL; none: RL from the model itself")
    experiment: ExperimentConfig = Field(description="model, tasks, arms, train (steps, batch_size = prompts "
                                         "per step, lr, warmup, loss_normalization) and eval, as in a normal config")

    @classmethod
    def model_validate(cls, obj: Any, *args, **kwargs):
        """One kind, two designs: a `design = "hacking"` config is validated as RLHackingConfig."""
        design = obj.get("design", "transfer") if isinstance(obj, dict) else "transfer"
        if cls is RLConfig and design == "hacking":
            from transferlab.experiments.rl.hacking_config import RLHackingConfig

            return RLHackingConfig.model_validate(obj, *args, **kwargs)
        return super().model_validate(obj, *args, **kwargs)

    @field_validator("design", mode="before")
    @classmethod
    def _known_design(cls, v: Any) -> Any:
        if v not in DESIGNS:
            raise ValueError(f"unknown design {v!r}; allowed: {', '.join(DESIGNS)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _one_seed(cls, data: Any) -> Any:
        """The kind's seed is the experiment's (before validation: task seeds follow it)."""
        if isinstance(data, dict) and isinstance(data.get("experiment"), dict):
            data = {**data, "experiment": {**data["experiment"], "seed": data.get("seed", 0)}}
        return data

    @model_validator(mode="after")
    def _no_sft_targets(self):
        """RL writes no targets: SFT-only settings would be silently ignored, so they are refused."""
        train = self.experiment.train
        if getattr(train, "replay", 0):
            raise ValueError("experiment.train.replay mixes curriculum SFT targets into a batch; the rl kind "
                             "samples its own completions: set experiment.train.replay = 0")
        if train.writer != "template":
            raise ValueError("experiment.train.writer writes SFT targets; the rl kind samples its own "
                             "completions: leave experiment.train.writer = \"template\"")
        return self

    def seeds(self) -> list[int]:
        return [self.seed]

    def rollout_tokens(self) -> int:
        return self.rl.max_tokens or self.experiment.eval.max_tokens
