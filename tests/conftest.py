"""Shared fixtures: the embedded default's tokenizer and sequence manifest. Nothing here downloads."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from modeconn.evaluator.models import checkpoints_dir  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoints_dir() / "base")


@pytest.fixture(scope="session")
def embedded():
    """The embedded default's sequence manifest."""
    from modeconn.lora.sequence import load_sequence

    return load_sequence(checkpoints_dir() / "seq")
