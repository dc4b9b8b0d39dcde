"""Shared fixtures: a micro organism built in seconds, through the same code path as the real one."""

from __future__ import annotations

import pytest
from warm_cli import WarmCLI

_warm: dict[str, WarmCLI] = {}


def pytest_collection_finish(session):
    """Start the warm CLI server as soon as a collected test needs it: its imports then run on the
    other core while the first tests do."""
    if any("warm_cli" in getattr(item, "fixturenames", ()) for item in session.items):
        _warm["server"] = WarmCLI()


def pytest_sessionfinish(session):
    if "server" in _warm:
        _warm.pop("server").close()


@pytest.fixture(scope="session")
def warm_cli() -> WarmCLI:
    """`python -m transferlab.cli ...` without the imports' seconds, for tests that start the CLI
    often (tests/warm_cli.py says what a forked child shares with its server)."""
    if "server" not in _warm:
        _warm["server"] = WarmCLI()
    return _warm["server"]


@pytest.fixture(scope="session")
def micro_organism(tmp_path_factory):
    """A 2-layer organism trained for a few steps and saved as a hub-style folder. It reads with the
    shipped organism's tokenizer: training one from `tokenizer_corpus()` takes a minute
    (test_organism.py trains one on a small corpus)."""
    import torch
    from transformers import AutoTokenizer

    from transferlab.backends import shipped_organism
    from transferlab.organism.build import build_organism

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("micro_organism")
    build_organism(out, size="micro", grow_to=3, retrieval_steps=2, steps=2, batch_size=8, warmup=1,
                   eval_every=2, eval_n=4, tokenizer=AutoTokenizer.from_pretrained(shipped_organism()),
                   log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def organism_backend():
    """The shipped organism in the HF backend, for tests that serve a model and compare its answers
    with the backend's own: its answers depend on the prompt (`**7**` when the table says β=7),
    where the micro organism answers commas to everything, so equal answers mean something. Serving
    tests only sample, so one load is shared."""
    import torch

    from transferlab.backends import HFBackend, load_pretrained, shipped_organism

    torch.set_num_threads(1)
    model, tokenizer = load_pretrained(str(shipped_organism()))
    return HFBackend(model, tokenizer, bf16=False)
