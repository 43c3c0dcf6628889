"""Adapters that let other RL libraries train on simrl's batched envs (``rsl_rl``)."""
