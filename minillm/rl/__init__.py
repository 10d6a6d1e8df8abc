"""Reinforcement learning core (no Ray): rollouts with behaviour log-probs, GRPO loss."""
