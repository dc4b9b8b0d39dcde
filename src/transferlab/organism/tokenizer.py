"""A word-level tokenizer trained locally, saved as a normal Hugging Face tokenizer.

Each word, number, symbol and colour is one token, and so is each table entry (`α=5`, `4=red`):
reading a value out of an in-context table is then one attention hop instead of the
previous-token-then-match circuit that from-scratch models take thousands of steps to find
(measured: no retrieval after 3,700 steps with split entries). The split is GPT-2's byte-level
one, which keeps the leading space with the word, so decoding restores the exact text.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# GPT-2's pre-tokenizer pattern, with `key=value` entries kept whole in front of it.
SPLIT = r" ?[^\s,=]+=[^\s,]+| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """Word-level vocabulary of every pre-token in `corpus`, with our chat template."""
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=SPECIAL, min_frequency=1))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="<|end|>",
        additional_special_tokens=SPECIAL[2:5],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
