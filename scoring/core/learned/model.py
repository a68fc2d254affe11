"""Critic inference: any local Hugging Face causal LM folder, on the CPU, answering with a parsed Verdict.

torch and transformers are imported when a model is loaded, so `from_env()` with no model configured costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from scoring.core.critics.registry import CRITERIA
from scoring.core.learned.prompt import build_messages
from scoring.core.learned.verdict import Verdict, VerdictError, parse_agreement, parse_verdict

_Answer = TypeVar("_Answer")

#: Environment variable naming the critic's model folder; unset or empty means "no learned critic".
MODEL_ENV = "REVIEWAPP_CRITIC_MODEL"

#: Sampling used by retries after a greedy answer failed to parse: varied enough to get out of a bad groove.
RETRY_TEMPERATURE = 0.8
RETRY_TOP_P = 0.95


def load_components(model_dir: Path, *, dtype: Any = None) -> tuple[Any, Any]:
    """Return (model, tokenizer) from a local folder, never downloading; raise ValueError on an unusable folder.

    The tokenizer comes from AutoTokenizer, or PreTrainedTokenizerFast over tokenizer.json when AutoTokenizer
    cannot place it. It must have a chat template; a missing pad token becomes the EOS token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, ImportError):
        # AutoTokenizer picks its class from the model type; a tokenizer trained apart only has tokenizer.json.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir, local_files_only=True)
    if not tokenizer.chat_template:
        raise ValueError(f"the tokenizer in {model_dir} has no chat template; use an instruct model or add one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, local_files_only=True, dtype=dtype if dtype is not None else torch.float32
    )
    return model, tokenizer


class CriticModel:
    """A loaded critic. Not thread-safe: give each worker process its own (load it once per process)."""

    def __init__(self, model: Any, tokenizer: Any, *, model_dir: Path, criteria: Sequence[str] = CRITERIA):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_dir = model_dir
        self.criteria = tuple(criteria)

    @classmethod
    def load(cls, model_dir: Path, *, criteria: Sequence[str] = CRITERIA) -> CriticModel:
        """Load the critic from a local model folder onto the CPU."""
        model, tokenizer = load_components(model_dir)
        return cls(model, tokenizer, model_dir=Path(model_dir), criteria=criteria)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CriticModel | None:
        """Load the critic named by REVIEWAPP_CRITIC_MODEL; None when it is unset or empty.

        Raises ValueError when it is set but does not name a usable model folder: a typo must not silently turn
        the critic off.
        """
        value = (os.environ if environ is None else environ).get(MODEL_ENV, "").strip()
        if not value:
            return None
        try:
            return cls.load(Path(value))
        except (OSError, ValueError) as error:
            raise ValueError(f"{MODEL_ENV}={value}: {error}") from error

    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids the model is given for `messages`: the chat template with the assistant turn opened.

        TRL's SFTTrainer tokenizes a training row's prompt the same way, so training and inference agree.
        """
        encoded = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def generate(self, messages: Sequence[Mapping[str, str]], *, max_new_tokens: int, sample: bool) -> str:
        """Return the model's raw answer to `messages` (greedy unless `sample`), special tokens removed."""
        import torch
        from transformers import GenerationConfig

        ids = torch.tensor([self.prompt_ids(messages)], device=self.model.device)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=RETRY_TEMPERATURE if sample else None,
            top_p=RETRY_TOP_P if sample else None,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._eos_ids(),
        )
        with torch.inference_mode():
            output = self.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        answer: str = self.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)
        return answer

    def judge(self, messages: Sequence[Mapping[str, str]], *, max_new_tokens: int = 384, retries: int = 2) -> Verdict:
        """Return the critic's verdict on `messages` (from build_messages); raise VerdictError if none is valid.

        The first answer is greedy; each of the `retries` further attempts samples. A verdict is never guessed.
        """
        return self._answer(messages, lambda text: parse_verdict(text, criteria=self.criteria), max_new_tokens, retries)

    def agrees(self, messages: Sequence[Mapping[str, str]], *, max_new_tokens: int = 16, retries: int = 0) -> bool:
        """Return the critic's answer to a discriminator row's prompt (prompt.discriminator_messages): does the
        patch agree with the reference on the call? Raises VerdictError when no answer is valid."""
        return self._answer(messages, parse_agreement, max_new_tokens, retries)

    def _answer(
        self, messages: Sequence[Mapping[str, str]], parse: Callable[[str], _Answer], max_new_tokens: int, retries: int
    ) -> _Answer:
        """The first answer that `parse` accepts: greedy first, then `retries` sampled attempts."""
        errors: list[str] = []
        for attempt in range(retries + 1):
            text = self.generate(messages, max_new_tokens=max_new_tokens, sample=attempt > 0)
            try:
                return parse(text)
            except VerdictError as error:
                errors.append(str(error))
        raise VerdictError(f"no valid verdict in {len(errors)} attempts; last: {errors[-1]}")

    def review(
        self,
        *,
        task: Mapping[str, Any],
        diff: str,
        result: Mapping[str, Any],
        max_new_tokens: int = 384,
        retries: int = 2,
    ) -> Verdict:
        """Judge one patch: build_messages, then judge. The entry point the pipeline calls."""
        messages = build_messages(task=task, diff=diff, result=result, criteria=self.criteria)
        return self.judge(messages, max_new_tokens=max_new_tokens, retries=retries)

    def _eos_ids(self) -> list[int]:
        """End-of-turn ids from the tokenizer and the model's generation config (instruct models list several)."""
        configured = self.model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return sorted({i for i in [*ids, self.tokenizer.eos_token_id] if i is not None})
