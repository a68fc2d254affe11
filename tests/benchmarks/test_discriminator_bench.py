"""The discriminator benchmark of `make bench`, at a tiny size (one task, one pass), so a broken one fails tests."""

from __future__ import annotations

import pytest

from benchmarks import discriminator_bench

pytestmark = pytest.mark.slow


def test_discriminator_bench_reports_the_cost_per_patch_and_its_goal(tmp_path) -> None:
    result = discriminator_bench.run(scratch=str(tmp_path), rounds=1, names=["intervals"])
    assert result["tasks"]["intervals"]["per_patch"]["n"] >= 4  # every patch but the tampering one
    section = discriminator_bench.render(result)
    assert section.goals[0].name == "discriminator cost per patch, inputs cached"
    assert "Median added per patch" in section.body
