"""A tiny causal language model built from a config, with a tokenizer trained offline: no download, ever.

Tests and the demo use it so that critic training and inference run from the first minute. It learns little, but
every code path (chat template, SFTTrainer, generate, parse) is the real one a 1B model goes through.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported for real inside the functions, so importing this module costs nothing
    from transformers import PreTrainedTokenizerFast

END_OF_TURN = "<|im_end|>"  # the EOS token: generation stops at the end of the assistant turn
PADDING = "<|endoftext|>"
SPECIAL_TOKENS = (PADDING, "<|im_start|>", END_OF_TURN)

# ChatML: the prompt rendered with add_generation_prompt is a prefix of the prompt plus its answer, which is what
# TRL needs to train on the answer only. The answer ends with the EOS token so generation stops there.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_model(out: Path, *, corpus: Iterable[str], vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a 2-layer Llama (hidden size 64) and its byte-level BPE tokenizer to `out`; return `out`.

    The tokenizer is trained on `corpus` (byte-level, so any text encodes) and saved as a PreTrainedTokenizerFast
    with a chat template. The weights are random (seeded). Safe to call twice: the folder is overwritten.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(corpus, vocab_size=vocab_size)
    tokenizer.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=8192,  # rotary, so a long context costs nothing until used
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return out


def _train_tokenizer(corpus: Iterable[str], *, vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus` and wrap it as a PreTrainedTokenizerFast with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=END_OF_TURN,
        pad_token=PADDING,
        additional_special_tokens=[token for token in SPECIAL_TOKENS if token not in (END_OF_TURN, PADDING)],
        chat_template=CHAT_TEMPLATE,
        model_max_length=8192,
    )
