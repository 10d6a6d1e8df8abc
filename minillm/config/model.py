"""`ModelSpec`: which model a run builds when it starts fresh (a preset, dimensions over it)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minillm.config.flags import check_fields, setting

# minillm.models.PRESETS' names (a test keeps them equal; this module does not import MLX)
PRESETS = ("tiny", "50mb", "200mb", "moe")


def preset_name(v: str) -> None:
    if v not in (*PRESETS, "custom"):
        raise ValueError(f"unknown preset {v!r}; choose one of {', '.join(PRESETS)}, custom")


def _dim(help: str, **kw: Any) -> Any:
    return setting(None, help + " (overrides the preset)", ge=1, **kw)


@dataclass
class ModelSpec:
    """A preset name (`tiny`, `50mb`, `200mb`, `moe`, or `custom`: dimensions only) and the
    `ModelArgs` fields set over it; None keeps the preset's value."""

    preset: str = setting(
        "200mb", "model preset of a fresh run: tiny, 50mb, 200mb, moe, custom", check=preset_name
    )
    hidden_size: int | None = _dim("model width")
    num_hidden_layers: int | None = _dim("transformer blocks")
    num_attention_heads: int | None = _dim("query heads")
    num_key_value_heads: int | None = _dim("key/value heads (grouped-query attention)")
    intermediate_size: int | None = _dim("MLP width (per expert with use_moe)")
    head_dim: int | None = _dim("width of one attention head")
    vocab_size: int | None = _dim("vocabulary size (default: the tokenizer's)")
    max_position_embeddings: int | None = _dim("longest sequence the model is made for")
    rope_theta: float | None = setting(None, "RoPE base (overrides the preset)", gt=0)
    rms_norm_eps: float | None = setting(None, "RMSNorm epsilon (overrides the preset)", gt=0)
    use_moe: bool | None = setting(
        None, "Mixture-of-Experts MLP (MiniMind's); intermediate_size is then per expert"
    )
    n_routed_experts: int | None = setting(None, "routed experts per MoE layer [preset: 4]", ge=1)
    num_experts_per_tok: int | None = setting(None, "routed experts each token uses (top-k)", ge=1)
    n_shared_experts: int | None = setting(None, "experts every token uses [preset: 1]", ge=0)
    norm_topk_prob: bool | None = setting(None, "renormalise the top-k gate weights to sum to 1")
    seq_aux: bool | None = setting(None, "sequence-level (on, MiniMind) or token-level aux loss")
    aux_loss_alpha: float | None = setting(None, "weight of the MoE load-balancing loss", ge=0)
    scoring_func: str | None = setting(None, "gate scoring function", choices=["softmax"])

    def __post_init__(self):
        check_fields(self)

    def overrides(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "preset" and getattr(self, f.name) is not None
        }

    def to_dict(self) -> dict[str, Any]:
        """`{"preset": name, **overrides}`: what the learner actors build from."""
        return {"preset": self.preset, **self.overrides()}

    def args(self, vocab_size: int):
        """The `ModelArgs` of a fresh model (ValueError naming the bad dimension)."""
        from minillm.models import ModelArgs

        over = self.overrides()
        over.setdefault("vocab_size", vocab_size)
        if self.preset == "custom":
            return ModelArgs(**over)
        return ModelArgs.from_preset(self.preset, **over)  # names the presets when unknown


def check_start(init_from: str | None, spec: ModelSpec | None, seq_len: int) -> None:
    """The run's start model exists (`init_from`'s checkpoint, else `spec` builds) and takes
    `seq_len` tokens: ValueError / FileNotFoundError naming the flag and the fix."""
    if init_from:
        from actors.driver import resolve_init_from  # no Ray import at module level

        cfg = Path(resolve_init_from(init_from)) / "config.json"
        n = int(json.loads(cfg.read_text(encoding="utf-8")).get("max_position_embeddings", 32768))
    else:
        n = spec.args(spec.vocab_size or 6400).max_position_embeddings
    if seq_len > n:
        raise ValueError(
            f"--seq_len {seq_len} is longer than the model's context ({n} positions); set "
            f"--seq_len {n} or less"
        )
