"""Chat models as they are: the public chat templates of Llama 3 (3.3-70B-Instruct), Qwen3 and gpt-oss
(harmony), copied verbatim into tests/chat_templates/, on small byte-level tokenizers built here with
each family's control tokens. Token by token: which tokens carry loss, where sampling stops, and what
of a reply is read as the answer (no think block; harmony's final channel only). A base model without
a template gets a plain role-prefixed format."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from transferlab.train.render import (
    PLAIN_TEMPLATE,
    render_datum,
    render_prompt,
    render_text,
    reply_text,
    stop_token_ids,
)

TEMPLATES = Path(__file__).parent / "chat_templates"
MESSAGES = [{"role": "system", "content": "Table 1: alpha=3, beta=5."},
            {"role": "user", "content": "What colour is beta minus alpha? Answer in bold."}]
TARGET = "**red**"
FAMILIES = {  # control tokens (special), eos (end of text), the end-of-turn token the template writes
    "qwen3": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|endoftext|>", "<|im_end|>"),
    "llama3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                "<|eom_id|>", "<|python_tag|>"], "<|end_of_text|>", "<|eot_id|>"),
    "gpt_oss": (["<|endoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"],
                "<|endoftext|>", "<|return|>"),
}


def build_tokenizer(family: str | None) -> PreTrainedTokenizerFast:
    """A byte-level BPE (any text encodes) with the family's control tokens and its template; Qwen3's
    <think> and </think> are added tokens that are not special, as in its own tokenizer."""
    specials, eos, _ = FAMILIES.get(family, (["<|endoftext|>"], "<|endoftext|>", None))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([m["content"] for m in MESSAGES] + [TARGET, "system user assistant analysis final"],
                            trainer)
    template = (TEMPLATES / f"{family}.jinja").read_text() if family else None
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, chat_template=template,
                                   bos_token="<|begin_of_text|>" if family == "llama3" else None)
    fast.add_special_tokens({"additional_special_tokens": [s for s in specials if s != eos]})
    if family == "qwen3":
        fast.add_tokens(["<think>", "</think>"])
    fast.pad_token = eos
    return fast


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def weighted(datum) -> list[int]:
    return [t for t, w in zip(datum.input_ids, datum.weights) if w]


@pytest.fixture(scope="module", params=["qwen3", "llama3", "gpt_oss"])
def family(request):
    return request.param, build_tokenizer(request.param)


def test_loss_falls_on_the_answer_and_the_end_of_turn_token_only(family):
    """Qwen3's empty think block and the newline after <|im_end|> carry no loss; harmony trains its
    final-channel header, the answer and <|return|>; Llama the answer and <|eot_id|>."""
    name, tokenizer = family
    datum = render_datum(tokenizer, MESSAGES, TARGET)
    end_of_turn = tokenizer.convert_tokens_to_ids(FAMILIES[name][2])
    header = ids(tokenizer, "<|channel|>final<|message|>") if name == "gpt_oss" else []
    assert weighted(datum) == header + ids(tokenizer, TARGET) + [end_of_turn]
    prompt = render_prompt(tokenizer, MESSAGES)
    assert list(datum.input_ids[:len(prompt)]) == prompt and not any(datum.weights[:len(prompt)])


def test_sampling_stops_at_end_of_text_and_at_the_templates_end_of_turn(family):
    name, tokenizer = family
    _, eos, end_of_turn = FAMILIES[name]
    assert stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids(eos), tokenizer.convert_tokens_to_ids(end_of_turn)]
    if name == "gpt_oss":  # <|end|> closes a reasoning message: stopping there would never reach the answer
        assert tokenizer.convert_tokens_to_ids("<|end|>") not in stop_token_ids(tokenizer)


def test_qwen3_renders_thinking_off_unless_asked():
    tokenizer = build_tokenizer("qwen3")
    off = render_text(tokenizer, MESSAGES, generation=True)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render_text(tokenizer, MESSAGES, generation=True, thinking=True).endswith("<|im_start|>assistant\n")
    on = render_datum(tokenizer, MESSAGES, TARGET, thinking=True)  # still a prefix; the model learns its empty block
    assert tokenizer.decode(weighted(on)) == "<think>\n\n</think>\n\n**red**<|im_end|>"


def test_a_base_model_gets_a_plain_role_prefixed_format():
    tokenizer = build_tokenizer(None)
    assert tokenizer.chat_template is None
    assert render_text(tokenizer, MESSAGES, generation=True) == (
        "System: Table 1: alpha=3, beta=5.\n\nUser: What colour is beta minus alpha? Answer in bold.\n\nAssistant:")
    datum = render_datum(tokenizer, MESSAGES, TARGET)
    assert tokenizer.decode(weighted(datum)) == " **red**<|endoftext|>"
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]
    assert "eos_token" in PLAIN_TEMPLATE


@pytest.mark.parametrize("family_name, generated, visible", [
    ("qwen3", "<think>\nbeta is 5, alpha 3: 2 is red\n</think>\n\n**red**<|im_end|>", "**red**"),
    ("qwen3", "2 is red.\n</think>\n\nred<|im_end|>", "red"),  # thinking on: the prompt opened the block
    ("qwen3", "<think>\nbeta is 5, alpha", ""),  # cut off by max_tokens mid-thought
    ("qwen3", " **red** ", " **red** "),  # no block: the reply as it came
    ("gpt_oss", "<|channel|>analysis<|message|>5-3=2, red<|end|><|start|>assistant<|channel|>final<|message|>**red**<|return|>",
     "**red**"),
    ("gpt_oss", "<|channel|>analysis<|message|>5-3=2, so the answer", ""),
    ("llama3", "**red**<|eot_id|>", "**red**"),
])
def test_the_reply_read_as_the_answer_is_what_a_reader_sees(family_name, generated, visible):
    tokenizer = build_tokenizer(family_name)
    assert reply_text(tokenizer, ids(tokenizer, generated)) == visible


def tiny_model(tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def test_the_hf_backend_prompts_without_thinking_stops_at_end_of_turn_and_returns_the_visible_answer():
    from transferlab.backends import HFBackend

    tokenizer = build_tokenizer("qwen3")
    backend = HFBackend(tiny_model(tokenizer), tokenizer, bf16=False, device="cpu")
    reply = ids(tokenizer, "<think>\nhm\n</think>\n\n**red**<|im_end|>")
    seen = {}

    def generate(input_ids, **kwargs):
        seen.update(kwargs, input_ids=input_ids)
        return torch.cat([input_ids, torch.tensor([reply] * len(input_ids))], 1)

    backend.model.generate = generate
    assert backend.sample([MESSAGES], max_tokens=12) == ["**red**"]
    assert seen["eos_token_id"] == stop_token_ids(tokenizer)
    assert tokenizer.decode(seen["input_ids"][0]).endswith("<think>\n\n</think>\n\n")


def test_the_hf_backend_generates_with_a_real_chat_template():
    """Real generation on a random model with the Llama 3 template: it runs and stops within max_tokens."""
    from transferlab.backends import HFBackend

    tokenizer = build_tokenizer("llama3")
    backend = HFBackend(tiny_model(tokenizer), tokenizer, bf16=False, device="cpu")
    replies = backend.sample([MESSAGES, MESSAGES[1:]], max_tokens=4)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


def test_the_tinker_backend_samples_likewise():
    pytest.importorskip("tinker")
    from tinker import types

    from transferlab.backends.tinker import TinkerBackend

    tokenizer = build_tokenizer("qwen3")
    sent = []

    class Sampler:
        def sample(self, prompt, num_samples, sampling_params):
            sent.append((prompt.to_ints(), sampling_params))
            tokens = np.array(ids(tokenizer, "<think>\nhm\n</think>\n\n**red**<|im_end|>"), dtype=np.int64)
            return SimpleNamespace(result=lambda: types.SampleResponse(sequences=[
                types.SampledSequence(stop_reason="stop", sequence_id="s", tokens_np=tokens)]))

    training = SimpleNamespace(save_weights_and_get_sampling_client=lambda: SimpleNamespace(result=Sampler))
    backend = TinkerBackend(None, training, tokenizer, base_model="Qwen/Qwen3-8B", lora_rank=8)
    assert backend.sample([MESSAGES], max_tokens=12) == ["**red**"]
    (prompt, params), = sent
    assert list(params.stop) == stop_token_ids(tokenizer)
    assert prompt == render_prompt(tokenizer, MESSAGES) and tokenizer.decode(prompt).endswith("</think>\n\n")


def test_vllm_sampling_stops_at_the_same_tokens_and_reads_the_final_channel(monkeypatch):
    from transferlab.evaluate import vllm_sampler

    tokenizer = build_tokenizer("gpt_oss")
    asked = {}

    class Engine:  # vllm.LLM.generate's signature; vLLM itself needs a GPU
        def generate(self, inputs, params, lora_request, use_tqdm):
            asked.update(inputs=inputs, params=params)
            out = ids(tokenizer, "<|channel|>analysis<|message|>red<|end|><|start|>assistant<|channel|>final<|message|>"
                                 "**red**<|return|>")
            return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=out)]) for _ in inputs]

    monkeypatch.setattr(vllm_sampler, "save_adapter", lambda model, path: None)
    monkeypatch.setattr(vllm_sampler, "adapter_request", lambda name, number, path: name)
    monkeypatch.setattr(vllm_sampler, "sampling_parameters",
                        lambda max_tokens, temperature, stops, seed: {"stop_token_ids": stops})
    sampler = vllm_sampler.VLLMSampler(SimpleNamespace(tokenizer=tokenizer, model=None, thinking=False), engine=Engine())
    assert sampler.sample([MESSAGES], max_tokens=8) == ["**red**"]
    assert asked["params"]["stop_token_ids"] == stop_token_ids(tokenizer)
    assert asked["inputs"] == [{"prompt_token_ids": render_prompt(tokenizer, MESSAGES)}]
