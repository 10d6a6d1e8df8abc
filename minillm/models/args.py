"""`ModelArgs` and the presets: the shape of a model, as in its config.json."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=704,
    ),
    # between the two: the student of a served `200mb` teacher (README "What it learns")
    "50mb": dict(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=1408,
    ),
    "200mb": dict(
        hidden_size=768,
        num_hidden_layers=15,
        num_attention_heads=12,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=2048,
    ),
    # `tiny` with a MiniMind-style MoE MLP: 4 routed experts (2 per token) + 1 shared expert,
    # each of intermediate size 232, so a token's active MLP (3 x 232 = 696) ~ tiny's 704.
    "moe": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=232,
        use_moe=True,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
    ),
}

# ModelArgs fields of the MoE MLP; written to config.json only when `use_moe`.
MOE_KEYS = (
    "use_moe",
    "n_routed_experts",
    "num_experts_per_tok",
    "n_shared_experts",
    "scoring_func",
    "norm_topk_prob",
    "aux_loss_alpha",
    "seq_aux",
)


# MoE checkpoints name their own model type, so transformers refuses them with a clear error
# instead of loading them as Llama with freshly initialised MLPs (`minillm export hf` converts).
MOE_MODEL_TYPE = "minillm_moe"


@dataclass
class ModelArgs:
    """Model config. Field names are those of Hugging Face `LlamaConfig`."""

    model_type: str = "llama"
    hidden_size: int = 512
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int | None = 2
    intermediate_size: int | None = None
    head_dim: int | None = None
    vocab_size: int = 6400
    max_position_embeddings: int = 32768
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-5
    hidden_act: str = "silu"
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    rope_scaling: dict | None = None
    # Mixture-of-Experts MLP (MiniMind's knobs). `intermediate_size` is then each expert's.
    use_moe: bool = False
    n_routed_experts: int = 4
    num_experts_per_tok: int = 2
    n_shared_experts: int = 1
    scoring_func: str = "softmax"
    norm_topk_prob: bool = True
    aux_loss_alpha: float = 0.1
    seq_aux: bool = True
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.intermediate_size is None:
            self.intermediate_size = 64 * math.ceil(int(self.hidden_size * 8 / 3) / 64)
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size={self.hidden_size} is not divisible by "
                    f"num_attention_heads={self.num_attention_heads}; set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.head_dim % 2:
            raise ValueError(
                f"head_dim={self.head_dim} (hidden_size / num_attention_heads) must be even for "
                "RoPE; change hidden_size or num_attention_heads, or set an even head_dim"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.hidden_act != "silu":
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; use 'silu'")
        if self.model_type != "llama":
            raise ValueError(f"model_type={self.model_type!r} is not supported; use 'llama'")
        if self.attention_bias or self.mlp_bias:
            raise ValueError("biases are not supported (attention_bias/mlp_bias must be false)")
        if self.rope_scaling not in (None, {}) and self.rope_scaling.get("rope_type") != "default":
            raise ValueError(f"rope_scaling={self.rope_scaling} is not supported; remove it")
        if self.use_moe:
            if not 1 <= self.num_experts_per_tok <= self.n_routed_experts:
                raise ValueError(
                    f"num_experts_per_tok={self.num_experts_per_tok} must be in "
                    f"[1, n_routed_experts={self.n_routed_experts}]"
                )
            if self.n_shared_experts < 0:
                raise ValueError(f"n_shared_experts={self.n_shared_experts} must be >= 0")
            if self.scoring_func != "softmax":
                raise ValueError(
                    f"scoring_func={self.scoring_func!r} is not supported; use 'softmax'"
                )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelArgs:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelArgs:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        if not self.use_moe:  # dense configs keep exactly their old keys
            for k in MOE_KEYS:
                d.pop(k)
        return d
