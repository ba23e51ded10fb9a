"""Trainer-ready exports (LLaMA-Factory SFT, EasyR1 RL), the dataset card, figures and the
trajectory gallery. Pure: they read a finished build through `Storage` and write beside it."""
