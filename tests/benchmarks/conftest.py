"""Shared fixtures: small battle files for the benchmark harness tests."""

from __future__ import annotations

import pytest

from pipelines.make_demo_data import make_demo_battles

QUICK_ROWS = 150


@pytest.fixture
def demo_files(tmp_path):
    """A demo corpus with three source families, and a tie-free external set."""
    corpus = make_demo_battles(n_rows=QUICK_ROWS, seed=5)
    corpus["source"] = [
        ("fam-a:x", "fam-a:y", "fam-b", "fam-c")[i % 4] for i in range(len(corpus))
    ]
    # Enough decisive battles that a within-set fold fits the profile's SVD.
    external = make_demo_battles(n_rows=240, seed=6)
    external = external[external["winner_tie"] == 0].assign(source="elsewhere")
    paths = tmp_path / "train.csv", tmp_path / "arena.csv"
    corpus.to_csv(paths[0], index=False)
    external.to_csv(paths[1], index=False)
    return paths
