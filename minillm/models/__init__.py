"""The model: a LLaMA-style decoder (optionally MiniMind's MoE MLP) in MLX.

args.py     ModelArgs and the presets          layers.py  RMSNorm, attention, SwiGLU MLP
cache.py    the KV cache and attention masks   moe.py     the Mixture-of-Experts MLP
llama.py    blocks, Model, init_weights        cpu_ops.py fast exp-based ops for the CPU
"""

from minillm.models.args import MOE_KEYS, MOE_MODEL_TYPE, PRESETS, ModelArgs
from minillm.models.cache import KVCache, make_mask
from minillm.models.layers import (
    MLP,
    Attention,
    RMSNorm,
    attention_ref,
    rms_norm_ref,
    rope_ref,
    swiglu,
)
from minillm.models.llama import Block, LlamaModel, Model, init_weights, num_params
from minillm.models.moe import ExpertLinear, MoE, RoutedExperts

__all__ = [
    "MLP", "MOE_KEYS", "MOE_MODEL_TYPE", "PRESETS", "Attention", "Block", "ExpertLinear",
    "KVCache", "LlamaModel", "MoE", "Model", "ModelArgs", "RMSNorm", "RoutedExperts",
    "attention_ref", "init_weights", "make_mask", "num_params", "rms_norm_ref", "rope_ref",
    "swiglu",
]  # fmt: skip
