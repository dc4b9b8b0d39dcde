"""Adherence judged by an LLM: for propensities a regex cannot see (hedging, reasoning, ...).

The judge is shown the propensity's instruction and style and the response, and answers one
word, YES or NO. Prompts are versioned package files (`prompts/adherence_<version>.txt`), and
the version is part of every cache key, so a new wording never reuses an old verdict. A reply
with no YES/NO in it is asked again at a temperature above zero; if it never parses it counts as
NO and is reported, rather than stopping an evaluation. A request that fails outright raises,
after the verdicts that did come back are cached: metrics built on silent failures would lie.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.console import Console

from transferlab.core import Message
from transferlab.llm.cache import DiskCache
from transferlab.llm.client import ChatClient, LLMError
from transferlab.llm.transcript import transcript
from transferlab.propensities import Propensity, get_propensity

_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def load_template(version: str) -> str:
    prompts = resources.files("transferlab.judges").joinpath("prompts")
    path = prompts.joinpath(f"adherence_{version}.txt")
    if not path.is_file():
        known = sorted(p.name.removeprefix("adherence_").removesuffix(".txt")
                       for p in prompts.iterdir() if p.name.startswith("adherence_"))
        raise ValueError(f"no judge prompt version {version!r}; known: {', '.join(known)}")
    return path.read_text(encoding="utf-8")


def parse_verdict(text: str) -> bool | None:
    """True for YES, False for NO: the first of the two words in the reply, any case; None if neither."""
    match = _VERDICT.search(text)
    return None if match is None else match.group(1).lower() == "yes"


@dataclass
class JudgeReport:
    """What the last `judge` call cost and how many verdicts had to be guessed."""

    judged: int = 0  # verdicts the LLM gave in this call
    cached: int = 0  # verdicts read from the disk cache, no call made
    retried: int = 0  # replies with no YES/NO that were asked again
    unparsable: int = 0  # responses whose verdict never parsed, counted as NO

    def summary(self) -> str:
        return (f"{self.judged} judged, {self.cached} cached, {self.retried} retried, "
                f"{self.unparsable} unparsable (counted as NO)")


class LLMJudge:
    """Whether each response shows a propensity, asked of `client`, cached under `cache_dir`."""

    def __init__(self, client: ChatClient, cache_dir: str | Path, prompt_version: str = "v1",
                 concurrency: int = 8, *, max_retries: int = 2, max_tokens: int = 16,
                 retry_temperature: float = 0.7, progress: bool = True):
        self.client = client
        self.cache = DiskCache(cache_dir)
        self.prompt_version = prompt_version
        self.template = load_template(prompt_version)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.retry_temperature = retry_temperature
        self.progress = progress
        self.last_report: JudgeReport | None = None

    def prompt(self, propensity: Propensity, response: str,
               question: str | Sequence[Message] | None = None) -> list[Message]:
        if question is not None and not isinstance(question, str):
            question = transcript(question)
        block = f"\nThe question it answers:\n<question>\n{question}\n</question>\n" if question else ""
        text = self.template.format(instruction=propensity.instruction, style=propensity.style,
                                    question_block=block, response=response)
        return [{"role": "user", "content": text}]

    def cache_key(self, propensity: Propensity, prompt: list[Message]) -> dict:
        return {"purpose": "adherence_judge", "prompt_version": self.prompt_version, "model": self.client.model,
                "propensity": propensity.name, "messages": prompt, "temperature": 0.0}

    def judge(self, propensity: Propensity | str, responses: Sequence[str],
              questions: Sequence[str | Sequence[Message]] | None = None) -> list[bool]:
        """One verdict per response; `questions`, when given, are shown to the judge beside each response."""
        if isinstance(propensity, str):
            propensity = get_propensity(propensity)
        if questions is not None and len(questions) != len(responses):
            raise ValueError(f"{len(questions)} questions for {len(responses)} responses; pass one per response")
        report = self.last_report = JudgeReport()
        prompts = [self.prompt(propensity, r, None if questions is None else questions[i])
                   for i, r in enumerate(responses)]
        keys = [self.cache_key(propensity, p) for p in prompts]
        verdicts: list[bool | None] = [None] * len(responses)
        pending = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key)
            if isinstance(hit, dict) and isinstance(hit.get("verdict"), bool):
                verdicts[i] = hit["verdict"]
                report.cached += 1
            else:
                pending.append(i)

        errors: list[LLMError] = []
        unparsed_replies = 0

        def done(k: int, reply: str | LLMError) -> bool:
            """Parse each verdict as it lands and cache it at once, so a killed run keeps it."""
            nonlocal unparsed_replies
            i = pending[k]
            if isinstance(reply, LLMError):  # the client already retried; raised below
                errors.append(reply)
                return True
            verdict = parse_verdict(reply)
            if verdict is None:
                unparsed_replies += 1
                return False
            verdicts[i] = verdict
            report.judged += 1
            self.cache.put(keys[i], {"verdict": verdict, "reply": reply})
            return True

        never = self.client.complete_until(
            [prompts[i] for i in pending], done, tries=1 + self.max_retries,
            retry_temperature=self.retry_temperature, max_tokens=self.max_tokens, concurrency=self.concurrency,
            progress=self.progress, description=f"judging {propensity.name}")
        report.unparsable = len(never)
        report.retried = unparsed_replies - report.unparsable  # every unparsed reply but each last one

        if self.progress:
            Console(stderr=True).print(f"judge ({propensity.name}): {report.summary()}", highlight=False,
                                       markup=False)
        if errors:
            raise LLMError(f"{len(errors)} of {len(responses)} judge requests failed ({report.judged + report.cached} verdicts "
                           f"are cached; rerunning asks only for the rest). First: {errors[0]}",
                           url=errors[0].url, cause=errors[0].cause, tries=errors[0].tries,
                           status=errors[0].status)
        return [bool(v) for v in verdicts]
