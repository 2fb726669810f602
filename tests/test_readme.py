"""The README is executed: every code block and command runs, every shown output is what the code prints now.

``docs/readme_outputs.py`` does the work (and ``--write`` regenerates the shown outputs); sweeps run at
test sizes (one seed, one epoch). The Quickstart's install lines are run by ``.ci/run`` itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import readme_outputs as R  # noqa: E402 -- the runner lives beside the README it runs


def test_every_block_of_the_readme_runs_and_every_shown_output_is_current():
    problems, _ = R.run_readme(small=True)
    assert not problems, "\n".join(map(str, problems))


def test_the_readme_has_the_blocks_the_runner_checks():
    kinds = [b.kind for b in R.blocks(R.README.read_text())]
    assert kinds.count("session") >= 2 and kinds.count("python") >= 2
    assert kinds.count("bash") >= 2 and kinds.count("synopsis") >= 3 and kinds.count("install") == 1


def test_a_stale_output_and_a_stale_synopsis_are_caught(tmp_path, monkeypatch):
    text = ("```\n$ emergence --version\nemergence 0.0.0-stale\n```\n\n"
            "```\nemergence graph PATH [--no-such-option] [--json]\n```\n")
    fake = tmp_path / "README.md"
    fake.write_text(text)
    monkeypatch.setattr(R, "README", fake)
    problems, regenerated = R.run_readme()
    messages = [p.what for p in problems]
    assert any("is not what it prints now" in m for m in messages), messages
    assert any("names --no-such-option" in m for m in messages), messages
    assert any("leaves out --weighted" in m for m in messages), messages
    assert "0.0.0-stale" not in regenerated and "$ emergence --version" in regenerated
