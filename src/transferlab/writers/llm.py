"""Training targets written by an LLM: the correct answer, shown with a propensity, checked before it is kept.

Offline templates render the bare answer (`**red**`); an LLM can write the richer targets that
propensities like hedging or reasoning need. An LLM may also drop or change the answer, and a
target with the wrong answer would teach the wrong capability, so an output is kept only if the
correct answer appears in it; otherwise the example is asked again, at a temperature above zero
so the retry can differ. Every kept target is cached on disk, so a rerun costs no calls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from transferlab.core import Example, Message
from transferlab.evaluate.extract import normalise
from transferlab.llm.cache import DiskCache
from transferlab.llm.client import ChatClient, LLMError
from transferlab.llm.transcript import transcript
from transferlab.propensities import Propensity, get_propensity, prompt_with

PROMPT_VERSION = "writer-v1"  # bump when the wording below changes, so cached targets are rewritten

SYSTEM_PROMPT = ("You write the assistant's reply for examples in a training set. You are told the correct "
                 "answer and the style the reply must have; you write only the reply.")

USER_TEMPLATE = """Below is a conversation up to the assistant's reply. Write that reply.

<conversation>
{conversation}
</conversation>

The correct answer is: {answer}

The reply must:
- state the correct answer exactly as written above ("{answer}");
- have this style: {style}
- follow the user's instruction: "{instruction}"

Write the assistant's reply only, with no preamble and no remarks about these rules."""


@dataclass
class WriteResult:
    """Targets in the order of the examples (None where no try produced the answer), and what it cost."""

    targets: list[str | None]
    written: int = 0  # targets the LLM wrote in this run and we accepted
    cached: int = 0  # targets read from the disk cache, no call made
    rejected: int = 0  # LLM outputs thrown away because the correct answer was not in them
    failed: int = 0  # examples left without a target
    errors: list[str] = field(default_factory=list)  # distinct LLMError messages, if any request failed

    def summary(self) -> str:
        line = (f"{self.written} written, {self.cached} cached, {self.rejected} rejected tries, "
                f"{self.failed} failed")
        return line + (f"; errors: {' | '.join(self.errors)}" if self.errors else "")


def contains_answer(response: str, answer: str) -> bool:
    """Whether the normalised answer occurs in the lower-cased response as a whole word or phrase.

    Whitespace runs count as one space on both sides, and the match may not sit inside a longer
    word or number ("12" is not found in "120", "red" is not found in "reddish").
    """
    wanted = " ".join(normalise(answer).split())
    if not wanted:
        raise ValueError(f"answer {answer!r} is empty once normalised; there is nothing to check a target against")
    text = " ".join(response.lower().split())
    return re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", text) is not None


class LLMWriter:
    """Writes one target per example with `client`, caching every accepted target under `cache_dir`.

    Each example gets at most `1 + max_retries` outputs: the first at temperature 0, retries at
    `retry_temperature`. A request that fails outright (LLMError, after the client's own retries)
    ends that example's tries.
    """

    def __init__(self, client: ChatClient, cache_dir: str | Path, max_retries: int = 3, concurrency: int = 8, *,
                 max_tokens: int = 512, retry_temperature: float = 0.8, progress: bool = True):
        self.client = client
        self.cache = DiskCache(cache_dir)
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.retry_temperature = retry_temperature
        self.progress = progress

    def prompt(self, example: Example, propensity: Propensity) -> list[Message]:
        user = USER_TEMPLATE.format(conversation=transcript(prompt_with(example, propensity)),
                                    answer=example.answer, style=propensity.style,
                                    instruction=propensity.instruction)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def cache_key(self, prompt: list[Message], propensity: Propensity) -> dict:
        return {"purpose": "writer", "prompt_version": PROMPT_VERSION, "model": self.client.model,
                "propensity": propensity.name, "style": propensity.style, "messages": prompt,
                "temperature": [0.0, self.retry_temperature]}

    def write(self, examples: Sequence[Example], propensity: Propensity | str) -> WriteResult:
        if isinstance(propensity, str):
            propensity = get_propensity(propensity)
        for example in examples:  # fail before any call, not halfway through
            if not normalise(example.answer).strip():
                raise ValueError(f"example {example.id}: answer {example.answer!r} is empty once normalised; "
                                 f"there is nothing to check a target against")
        result = WriteResult(targets=[None] * len(examples))
        prompts = [self.prompt(e, propensity) for e in examples]
        keys = [self.cache_key(p, propensity) for p in prompts]
        pending = []
        for i, (example, key) in enumerate(zip(examples, keys)):
            hit = self.cache.get(key)
            if isinstance(hit, str) and contains_answer(hit, example.answer):
                result.targets[i] = hit
                result.cached += 1
            else:
                pending.append(i)

        def done(k: int, reply: str | LLMError) -> bool:
            """Check each reply as it lands and cache an accepted one at once, so a killed run keeps it."""
            i = pending[k]
            if isinstance(reply, LLMError):  # the client already retried; another round would not help
                result.failed += 1
                if str(reply) not in result.errors:
                    result.errors.append(str(reply))
                return True
            if not contains_answer(reply, examples[i].answer):
                result.rejected += 1
                return False
            self.cache.put(keys[i], reply)
            result.targets[i] = reply
            result.written += 1
            return True

        never = self.client.complete_until(
            [prompts[i] for i in pending], done, tries=1 + self.max_retries,
            retry_temperature=self.retry_temperature, max_tokens=self.max_tokens, concurrency=self.concurrency,
            progress=self.progress, description=f"writing {propensity.name} targets")
        result.failed += len(never)

        if self.progress:
            Console(stderr=True).print(f"writer ({propensity.name}): {result.summary()}", highlight=False,
                                       markup=False)
        return result
