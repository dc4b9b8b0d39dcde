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


def render_conversation(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> Datum:
    """A multi-turn conversation with loss on every assistant turn (the template decides the tokens)."""
    ids: list[int] = []
    weights: list[float] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        turn = render_datum(tokenizer, messages[:i], message["content"])
        if turn.input_ids[: len(ids)] != tuple(ids):
            raise ValueError("the chat template renders earlier turns differently once later turns exist; "
                             "multi-turn loss masks need a template that only appends")
        weights += list(turn.weights[len(ids):])
        ids = list(turn.input_ids)
    return Datum(tuple(ids), tuple(weights))
