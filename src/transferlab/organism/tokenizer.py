"""A word-level tokenizer trained locally, saved as a normal Hugging Face tokenizer.

Each word, number, symbol and colour is one token, and so is each table entry (`α=5`, `4=red`):
reading a value out of an in-context table is then one attention hop instead of the
previous-token-then-match circuit that from-scratch models take thousands of steps to find
(measured: no retrieval after 3,700 steps with split entries). The split is GPT-2's byte-level
one, which keeps the leading space with the word, so decoding restores the exact text.

One word, one token, whatever precedes it. A byte-level split gives a word two tokens, `red` at
the start of a turn or after `**` and ` red` after a space, so a plain answer (`red`), a bold one
(`**red**`) and a hedged one (`I think it is red`) would end in different tokens and the skill
of writing the answer could not carry from one propensity to another. The normalizer therefore
writes a marker before every word that follows no space (`∅ red`, `**∅ red**`), so the word is
always its spaced token ` red`; the decoder drops the marker and its space again, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# Written before a word that no space precedes; a token of its own, dropped again when decoding.
NO_SPACE = "\u2205"
# What may stand right before a word without a space: the text's start (handled by prepending the
# marker everywhere and taking it off again where no word follows), or one of these openers.
OPENERS = ("**", "__", "\n", "(", "[", '"', "`")
WORD_START = r"(?=[\p{L}\p{N}])"

# GPT-2's pre-tokenizer pattern, with the marker and `key=value` entries kept whole in front of it.
SPLIT = (NO_SPACE + r"| ?[^\s,=]+=[^\s,]+| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}" + NO_SPACE + r"]+|\s+(?!\S)|\s+")

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _escape(text: str) -> str:
    return "".join("\\" + c if c in r"\^$.|?*+()[]{}" else c for c in text)


def one_form_normalizer() -> normalizers.Normalizer:
    """Marks every word that follows no space (see the module docstring); each opener is one
    literal replacement because the replacement text cannot refer back to the match."""
    steps = [normalizers.Prepend(NO_SPACE + " "),
             normalizers.Replace(Regex("^" + NO_SPACE + r" (?![\p{L}\p{N}])"), "")]
    steps += [normalizers.Replace(Regex(_escape(o) + WORD_START), o + NO_SPACE + " ") for o in OPENERS]
    return normalizers.Sequence(steps)


def train_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """Word-level vocabulary of every pre-token in `corpus`, with our chat template."""
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = one_form_normalizer()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(NO_SPACE + " ", "")])
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=SPECIAL, min_frequency=1))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="<|end|>",
        additional_special_tokens=SPECIAL[2:5],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
