"""The `rl` kind's config: the seed experiment's (model, arms, eval grid, schedule) plus an [rl] section.

Each training step draws `experiment.train.batch_size` prompts (arms by weight, each prompt under its
arm's propensity instruction, as SFT draws them), samples `rl.group_size` completions of each, and
rewards every completion with the weighted sum of its reward components:

    correct    the task's grader (1 right, 0 wrong)
    adherent   the arm's propensity judge (eval.judge: heuristic or llm; 1 follows, 0 does not)

A component with weight 0 is still measured and logged; it only leaves the reward.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from transferlab.config import ExperimentConfig, Strict

COMPONENTS = ("correct", "adherent")


class RLSection(Strict):
    group_size: int = Field(4, ge=2, description="completions sampled per prompt (G)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the rollouts (1: the policy "
                               "itself, as the importance-sampling ratio and the KL estimate assume)")
    max_tokens: int | None = Field(None, ge=1, description="tokens per rollout; default: eval.max_tokens")
    scale_std: bool = Field(False, description="divide each group's advantages by its std + 1e-4 (TRL's "
                            "scale_rewards); false: reward minus the group mean (tinker-cookbook's GRPO)")
    kl_coef: float = Field(0.0, ge=0, description="KL penalty to the starting weights, put into the advantages "
                           "as tinker-cookbook does; the KL is logged at 0 too")
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


class RLConfig(Strict):
    kind: Literal["rl"]
    name: str = "rl"
    seed: int = 0
    rl: RLSection = RLSection()
    experiment: ExperimentConfig = Field(description="model, tasks, arms, train (steps, batch_size = prompts "
                                         "per step, lr, warmup, loss_normalization) and eval, as in a normal config")

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
