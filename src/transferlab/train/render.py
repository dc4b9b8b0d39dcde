"""Turn (prompt messages, target text) into a datum: token ids plus a loss weight per token.

The mask comes from the model's own chat template: everything the template emits for the prompt
(with the generation prompt) weighs 0, everything after it weighs 1. If a template does not render
the prompt as a prefix of the full conversation we stop, rather than silently train on every token.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from transferlab.core import Datum, Message


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def render_datum(tokenizer: PreTrainedTokenizerBase, messages: list[Message], target: str) -> Datum:
    prompt_ids = render_prompt(tokenizer, messages)
    full_text = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": target}], tokenize=False)
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids or len(full_ids) == len(prompt_ids):
        raise ValueError(
            "the chat template does not render the prompt as a prefix of the conversation, so the "
            "assistant tokens cannot be masked; fix the template or pass a tokenizer whose template "
            "does")
    weights = [0.0] * len(prompt_ids) + [1.0] * (len(full_ids) - len(prompt_ids))
    return Datum(tuple(full_ids), tuple(weights))
