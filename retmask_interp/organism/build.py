"""Building blocks of the model organism: its tokenizer, chat template, model config and data encoding.

The organism is a small ``LlamaForCausalLM`` with grouped-query attention. Its tokenizer is a byte-level BPE
trained with the ``tokenizers`` library on training-split synthetic text, wrapped as a
``PreTrainedTokenizerFast`` with a chat template::

    <|bos|><|user|>\\n{user}<|end|>\\n<|assistant|>\\n{assistant}<|end|>\\n

``<|end|>`` is the end-of-turn (eos) token, ``<|pad|>`` the padding token. Plain ``tokenizer(text)`` prepends
``<|bos|>``; ``apply_chat_template`` renders it itself (and tokenizes without adding another).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "ModelSpec",
    "tiny_model_spec",
    "TrainSpec",
    "OrganismConfig",
    "tokenizer_corpus",
    "train_tokenizer",
    "build_model",
    "encode_example",
]

PAD, BOS, END, USER, ASSISTANT, SYSTEM = (
    "<|pad|>",
    "<|bos|>",
    "<|end|>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
)
SPECIAL_TOKENS = [PAD, BOS, END, USER, ASSISTANT, SYSTEM]  # ids 0..5 in this order

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


@dataclass
class ModelSpec:
    """Llama hyper-parameters (``vocab_size`` comes from the tokenizer)."""

    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True


def tiny_model_spec() -> ModelSpec:
    """The tiny organism (2 layers, 4 query heads over 2 KV heads, head size 16) of the tests and of ``--tiny``
    training (a CPU smoke test): one definition for both."""
    return ModelSpec(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )


@dataclass
class TrainSpec:
    """Training settings. ``steps = 0`` means: fit as many steps as ``time_budget_s`` allows (logged)."""

    steps: int = 2000
    time_budget_s: float = 0.0
    tokens_per_batch: int = 65536
    seq_len: int = 2048
    min_len: int = 128
    short_fraction: float = 0.3  # share of sequences drawn from [min_len, seq_len // 4]
    curriculum_frac: float = 0.15  # first part of training uses only short sequences
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    answer_weight: float = (
        1.0  # loss = answer_weight * mean CE(answer tokens) + context_weight * mean CE(rest)
    )
    context_weight: float = 0.5
    raw_fraction: float = 0.15  # share of task examples without the chat template ("qa" style)
    invented_rate: float = (
        0.5  # share of listed words replaced by made-up ones in training text (synthetic.py)
    )
    rich_word_rate: float = 0.0  # share of those made-up words built from English-like pieces (synthetic.py)
    token_word_rate: float = 0.0  # share built from random alphabetic pieces of the tokenizer's vocabulary
    head_dropout: float = 0.0  # probability of zeroing a head's output, per sequence, during training
    protected_heads: list[list[int]] = field(default_factory=list)  # (layer, head) pairs never dropped
    targeted_dropout: list[list[float]] = field(
        default_factory=list
    )  # [layer, head, p]: own drop probability
    task_mix: dict[str, float] = field(
        default_factory=lambda: {
            "niah": 0.35,
            "multi_needle": 0.15,
            "json_kv": 0.15,
            "rag_qa": 0.08,
            "cite": 0.08,
            "rerank": 0.04,
            "text": 0.15,
        }
    )


@dataclass
class OrganismConfig:
    name: str
    description: str = ""
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    @classmethod
    def from_json(cls, path: str | Path) -> OrganismConfig:
        raw = json.loads(Path(path).read_text())
        unknown = set(raw) - {"name", "description", "model", "train"}
        model_raw, train_raw = raw.get("model", {}), raw.get("train", {})
        bad = (
            unknown
            | (set(model_raw) - set(ModelSpec.__dataclass_fields__))
            | (set(train_raw) - set(TrainSpec.__dataclass_fields__))
        )
        if bad:
            raise ValueError(f"{path}: unknown config keys {sorted(bad)} (misspelt?)")
        if "betas" in train_raw:
            train_raw = dict(train_raw, betas=tuple(train_raw["betas"]))
        return cls(
            name=raw["name"],
            description=raw.get("description", ""),
            model=ModelSpec(**model_raw),
            train=TrainSpec(**train_raw),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- tokenizer -------------------------------------------------------------------------------------------------
def tokenizer_corpus(num_examples: int = 600, seed: int = 0) -> list[str]:
    """Training-split text of every task (prompts and targets), the corpus the BPE is trained on."""
    from retmask_interp.data.tasks import TASKS, make_example

    rng = random.Random(seed)
    texts = []
    for i in range(num_examples):
        task = sorted(TASKS)[i % len(TASKS)]
        ex = make_example(task, i, num_words=rng.choice([100, 300, 800]), seed=seed, split="train")
        texts.append(f"{ex.prompt} {ex.target}")
    return texts


def train_tokenizer(texts: list[str], vocab_size: int = 4096):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast`` with the chat template.

    Digits are split one per token so that numbers are copied digit by digit.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM],
        model_max_length=4096,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


# ---- model -----------------------------------------------------------------------------------------------------
def build_model(spec: ModelSpec, tokenizer, seed: int = 0, attn_implementation: str = "sdpa"):
    """A freshly initialised ``LlamaForCausalLM`` for ``spec`` with the tokenizer's special-token ids set."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_bias=False,
        mlp_bias=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM._from_config(config, attn_implementation=attn_implementation)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=64,
    )
    return model


# ---- encoding --------------------------------------------------------------------------------------------------
def encode_example(ex, tokenizer, *, chat: bool = True, num_bos: int = 1) -> tuple[list[int], list[int]]:
    """Token ids and a role mask for one :class:`~retmask_interp.data.tasks.TaskExample`.

    Role mask: 0 = context (prompt, template), 1 = answer (target and the closing ``<|end|>``), as the loss
    weights them. ``chat=False`` writes ``"{prompt} {target}<|end|>"`` (no template). Plain text (empty prompt) is
    all context. ``num_bos`` leading ``<|bos|>`` tokens (0, 1 or 2: training varies it so that prompts built
    either way work).
    """
    enc = tokenizer.backend_tokenizer
    bos, end = tokenizer.bos_token_id, tokenizer.eos_token_id

    def ids(text: str) -> list[int]:
        return enc.encode(text, add_special_tokens=False).ids

    if not ex.prompt:  # plain text
        body = ids(ex.target) + [end]
        return [bos] * num_bos + body, [0] * (num_bos + len(body))
    if chat:
        prefix = ids(f"{USER}\n{ex.prompt}{END}\n{ASSISTANT}\n")
        answer = ids(ex.target) + [end]
    else:
        prefix = ids(ex.prompt)
        answer = ids(" " + ex.target) + [end]
    prefix = [bos] * num_bos + prefix
    return prefix + answer, [0] * len(prefix) + [1] * len(answer)
