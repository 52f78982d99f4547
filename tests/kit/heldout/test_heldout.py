"""The kit against the held-out family of seeded bugs (:mod:`.mutants`): each copy of the guide's connector with
one bug is run through the whole kit; the verdict must be the recorded one, and at least 90% of the family is caught.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..test_plugin_guide import example_files, run_kit, write_example
from .mutants import ALL, FRESH, LAST, LATER, MUTANTS, UNSEEN, Mutant

CONNECTOR = "crmsync_hublike/connector.py"


def kit_catches(pytester: pytest.Pytester, root: Path, mutant: Mutant) -> tuple[bool, list[str]]:
    """Whether the kit fails on the connector with ``mutant`` applied, and the checks that failed."""
    files = example_files()
    files[CONNECTOR] = mutant.apply(files[CONNECTOR])
    write_example(root, files)
    recorder = run_kit(pytester, root, "-x")
    failed = [r.nodeid.split("::")[-1] for r in recorder.getreports("pytest_runtest_logreport") if r.failed]
    failed += [f"collecting {r.nodeid}" for r in recorder.getfailedcollections()]  # the connector does not import
    return bool(failed), failed


def test_the_families_are_large_and_caught_at_least_nine_times_in_ten() -> None:
    assert [len(f) for f in (MUTANTS, FRESH, LATER, LAST, UNSEEN)] == [36, 19, 15, 15, 25]
    assert len({m.name for m in ALL}) == len(ALL)
    caught = sum(m.caught for m in ALL)
    assert caught / len(ALL) >= 0.9, f"{caught} of {len(ALL)}"
    assert all(m.note for m in ALL if not m.caught)  # each miss says why
    first = sum(m.caught if m.first is None else m.first for m in ALL)
    assert (first, caught) == (89, 101)  # as the table in mutants.py says
    unseen = [m.caught for m in UNSEEN]
    assert (sum(unseen), len(unseen)) == (16, 25)  # measured once, the kit not tuned to it


@pytest.mark.slow
@pytest.mark.parametrize("mutant", ALL, ids=lambda m: m.name)
def test_the_kit_gives_the_recorded_verdict(pytester: pytest.Pytester, tmp_path: Path, mutant: Mutant) -> None:
    caught, failed = kit_catches(pytester, tmp_path / "crmsync-hublike", mutant)
    assert caught == mutant.caught, f"{mutant.name}: failed checks {failed}"
