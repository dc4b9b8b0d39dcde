"""Messages to tokens and a model's tokens back to its answer, as the model's chat template says.

The mask comes from the template: everything it emits for the prompt (with the generation prompt)
weighs 0; the assistant's words and the template's end-of-turn token weigh 1; anything the template
writes after that token (Qwen's newline) weighs 0 again. If a template does not render the prompt as
a prefix of the full conversation we stop, rather than silently train on every token.

Chat models that can think (Qwen3's `<think>` block, switched by `enable_thinking`) are rendered with
thinking off unless `thinking` asks for it (model.thinking): the prompt then ends in the template's
empty think block, a prefix of the conversation, and the model spends its tokens on the answer. A
tokenizer without a chat template (a base model) gets a plain role-prefixed format ending each
assistant turn with its end-of-text token. Sampling stops at end of text and at the template's end of
turn (`stop_token_ids`); `reply_text` keeps only what a reader would see: no think block, and of a
harmony (gpt-oss) reply only its final channel.
"""

from __future__ import annotations

import re
import weakref

from transformers import PreTrainedTokenizerBase

from transferlab.core import Datum, Message

PLAIN_TEMPLATE = (  # newlines as expressions: transformers renders with trim_blocks, which eats one after a tag
    "{% for m in messages %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}{{ m['role'] | capitalize }}: "
    "{{ m['content'] }}{% if m['role'] == 'assistant' and eos_token %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{% if messages %}{{ '\\n\\n' }}{% endif %}Assistant:{% endif %}")
PROBE = "transferlab probe"  # assistant words whose end shows where the template ends a turn
FINAL_CHANNEL = "<|channel|>final<|message|>"  # harmony: what follows is the visible answer
THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_stops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def render_text(tokenizer: PreTrainedTokenizerBase, messages: list[Message], *, generation: bool,
                thinking: bool = False) -> str:
    """The template's text: the model's own, or PLAIN_TEMPLATE for a base model without one."""
    own = {} if tokenizer.chat_template else {"chat_template": PLAIN_TEMPLATE}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation,
                                         enable_thinking=thinking, **own)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[Message], thinking: bool = False) -> list[int]:
    return tokenizer(render_text(tokenizer, messages, generation=True, thinking=thinking),
                     add_special_tokens=False)["input_ids"]


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End of text, and the template's end of turn: the first token it writes after an assistant's
    words (<|im_end|>, <|eot_id|>, harmony's <|return|>), when that is one of the tokenizer's added or
    special tokens. Harmony's <|end|>, which closes a reasoning message, is not one."""
    if tokenizer in _stops:
        return _stops[tokenizer]
    text = render_text(tokenizer, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": PROBE}],
                       generation=False)
    after = tokenizer(text[text.rindex(PROBE) + len(PROBE):], add_special_tokens=False)["input_ids"]
    marked = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if after and after[0] in marked and after[0] not in stops:
        stops.append(after[0])
    _stops[tokenizer] = stops
    return stops


def render_datum(tokenizer: PreTrainedTokenizerBase, messages: list[Message], target: str,
                 thinking: bool = False) -> Datum:
    prompt_ids = render_prompt(tokenizer, messages, thinking)
    full_text = render_text(tokenizer, messages + [{"role": "assistant", "content": target}], generation=False,
                            thinking=thinking)
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids or len(full_ids) == len(prompt_ids):
        raise ValueError(
            "the chat template does not render the prompt as a prefix of the conversation, so the "
            "assistant tokens cannot be masked; fix the template or pass a tokenizer whose template "
            "does")
    completion = full_ids[len(prompt_ids):]
    stops = set(stop_token_ids(tokenizer))
    end = next((i + 1 for i, token in enumerate(completion) if token in stops), len(completion))
    weights = [0.0] * len(prompt_ids) + [1.0] * end + [0.0] * (len(completion) - end)
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


def reply_text(tokenizer: PreTrainedTokenizerBase, token_ids) -> str:
    """The visible answer in generated tokens: a harmony reply's final channel (empty when it only
    reasoned), with any think block cut, decoded without special tokens. Grading and adherence
    judging read this, never the reasoning."""
    ids = list(token_ids)
    added = tokenizer.get_added_vocab()
    if "<|channel|>" in added and "<|message|>" in added:  # a harmony tokenizer
        final = tokenizer(FINAL_CHANNEL, add_special_tokens=False)["input_ids"]
        n = len(final)
        starts = [i for i in range(len(ids) - n + 1) if ids[i:i + n] == final]
        if starts:
            ids = ids[starts[-1] + n:]
        elif final[0] in ids:
            return ""  # reasoning only: it never reached its answer
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if "<think>" not in text and "</think>" not in text:
        return text
    text = THINK_BLOCK.sub("", text)
    text = text.rsplit("</think>", 1)[-1]  # the prompt opened the block (thinking on)
    return text.split("<think>", 1)[0].strip()  # a block cut off by max_tokens shows nothing
