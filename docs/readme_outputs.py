"""Run the README: every code block and command, in order, in one scratch folder; regenerate shown outputs.

The README's fenced blocks are of four kinds:

* ``python`` blocks run, in document order, each in a fresh ``python`` process;
* **sessions** -- a block whose first line starts with ``$ `` -- are commands followed by what they print;
  each command runs and its output replaces (``--write``) or is compared with (``--check``) the shown one;
* ``bash`` blocks are commands that run (``dask scheduler`` and ``dask worker`` in the background, until the
  block ends), with the sizes made small where the test asks (``--small``);
* the Quickstart's install lines are left to ``.ci/run``, which runs exactly them in a fresh venv;
* **synopses** -- blocks of ``emergence COMMAND`` lines with ``[--option ...]`` brackets -- are checked
  against the command's real options: each named option exists, and every option of the command is named.

``emergence`` runs as ``python -m emergence.cli``; the scratch folder links ``data/`` from the repository;
tables are rendered 80 columns wide (``COLUMNS=80``). Run ``python docs/readme_outputs.py --write`` after a
change to the code that alters an output, and commit the README; ``tests/test_readme.py`` runs ``--check``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: Substitutions that shrink the README's commands to test sizes (pattern, replacement).
SMALL = (
    (r"--seeds \d+", "--seeds 1"),
    (r"--epochs \d+", "--epochs 1"),
    (r"--sparsity [\d.,]+", "--sparsity 0,0.5"),
    (r"--grid width=[\d.,]+", "--grid width=0.5,1"),
    (r"--grid lr=[\d.,]+", "--grid lr=0.1"),
    (r"--nworkers \d+", "--nworkers 1"),
    (r"--workers \d+", "--workers 1"),
)


@dataclass
class Block:
    """One fenced block: its info string, its lines and the README line it starts on (1-based)."""

    lang: str
    lines: list[str]
    start: int
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        body = [ln for ln in self.lines if ln.strip()]
        if self.lang == "python":
            self.kind = "python"
        elif body and body[0].startswith("$ "):
            self.kind = "session"
        elif any("pip install" in ln for ln in body):
            self.kind = "install"  # the Quickstart: .ci/run runs exactly these lines in a fresh venv
        elif self.lang == "bash":
            self.kind = "bash"
        elif body and body[0].startswith("emergence ") and any("[--" in ln for ln in body):
            self.kind = "synopsis"
        else:
            self.kind = "text"


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text."""
    out, cur, lang, start = [], None, "", 0
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if cur is None:
                cur, lang, start = [], line[3:].strip(), i
            else:
                out.append(Block(lang, cur, start))
                cur = None
        elif cur is not None:
            cur.append(line)
    return out


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="80", LINES="200", HOME=str(home), TERM="dumb", NO_COLOR="1",
               PYTHONHASHSEED="0")
    env.pop("FORCE_COLOR", None)
    return env


def _command(line: str, small: bool) -> str:
    """The shell command for a README line: ``emergence``, ``dask`` and ``python`` run in this interpreter."""
    cmd = line.split("  #")[0].strip()
    if small:
        for pattern, repl in SMALL:
            cmd = re.sub(pattern, repl, cmd)
    exe = shlex.quote(sys.executable)
    for prog, module in (("emergence ", "-m emergence.cli "), ("dask ", "-m dask "), ("python ", "")):
        if cmd.startswith(prog):
            return f"{exe} {module}{cmd[len(prog):]}"
    return cmd


def _run(cmd: str, cwd: Path, timeout: float) -> tuple[int, str]:
    p = subprocess.run(cmd, shell=True, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def _normal(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.rstrip("\n").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _options(command: str, cwd: Path) -> set[str]:
    """The long options of ``emergence COMMAND`` as its ``--help`` lists them (besides --help)."""
    code, out = _run(f"{shlex.quote(sys.executable)} -m emergence.cli {command} --help", cwd, 120)
    if code != 0:
        raise RuntimeError(f"emergence {command} --help failed: {out}")
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out)) - {"--help"}


@dataclass
class Problem:
    """Where the README and the code disagree."""

    line: int
    what: str

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.what}"


def run_readme(small: bool = False, timeout: float = 900, log=lambda msg: None) -> tuple[list[Problem], str]:
    """Run every block of the README, in order, in one scratch folder.

    Returns the problems found and the README text with every session's output as printed now.
    """
    text = README.read_text()
    lines = text.splitlines()
    problems: list[Problem] = []
    replace: list[tuple[int, int, list[str]]] = []  # (first line index, line count, new lines) of sessions
    with tempfile.TemporaryDirectory(prefix="emergence-readme-") as tmp:
        cwd = Path(tmp)
        (cwd / "data").symlink_to(ROOT / "data")
        for b in blocks(text):
            if b.kind == "python":
                log(f"python block at README line {b.start}")
                p = subprocess.run([sys.executable, "-"], input="\n".join(b.lines), cwd=cwd, env=_env(cwd),
                                   capture_output=True, text=True, timeout=timeout)
                if p.returncode != 0:
                    last = (p.stdout + p.stderr).strip().splitlines()[-1:]
                    problems.append(Problem(b.start, f"the python block fails: {last}"))
            elif b.kind == "session":
                replace.append((b.start, len(b.lines), _session(b, cwd, timeout, problems, log)))
            elif b.kind == "bash":
                _bash(b, cwd, small, timeout, problems, log)
            elif b.kind == "synopsis":
                _check_synopsis(b, cwd, problems)
    for start, count, new in reversed(replace):
        lines[start:start + count] = new
    return problems, "\n".join(lines) + "\n"


def _session(b: Block, cwd: Path, timeout: float, problems: list[Problem], log) -> list[str]:
    shown: list[tuple[str, list[str]]] = []
    for ln in b.lines:
        if ln.startswith("$ "):
            shown.append((ln[2:], []))
        elif shown:
            shown[-1][1].append(ln)
    new: list[str] = []
    for cmd, want in shown:
        log(f"$ {cmd}")
        code, out = _run(_command(cmd, False), cwd, timeout)
        got = _normal(out)
        if code != 0:
            problems.append(Problem(b.start, f"`{cmd}` exits with {code}: {got[-1:]}"))
        elif "--json" not in cmd and any(len(ln) > 80 for ln in got):
            problems.append(Problem(b.start, f"`{cmd}` prints lines wider than 80 columns"))
        elif _normal("\n".join(want)) != got:
            problems.append(Problem(b.start, f"the output shown for `{cmd}` is not what it prints now "
                                             "(python docs/readme_outputs.py --write regenerates it)"))
        new += [f"$ {cmd}", *got]
    return new


def _bash(b: Block, cwd: Path, small: bool, timeout: float, problems: list[Problem], log) -> None:
    daemons: list[subprocess.Popen] = []
    try:
        for ln in b.lines:
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            cmd = _command(ln, small)
            log(cmd)
            if ln.startswith(("dask scheduler", "dask worker")):  # servers: up for the rest of the block
                daemons.append(subprocess.Popen(cmd, shell=True, cwd=cwd, env=_env(cwd), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, start_new_session=True))
                if ln.startswith("dask scheduler"):
                    _wait_for(cwd / "sched.json", 60)
                continue
            code, out = _run(cmd, cwd, timeout)
            if code != 0:
                problems.append(Problem(b.start, f"`{ln.strip()}` exits with {code}: {_normal(out)[-1:]}"))
    finally:
        for d in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.pid, signal.SIGTERM)
            d.wait(30)


def _wait_for(path: Path, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.2)


def _check_synopsis(b: Block, cwd: Path, problems: list[Problem]) -> None:
    groups: list[list[str]] = []
    for ln in b.lines:
        if ln.startswith("emergence "):
            groups.append([ln])
        elif groups and ln.startswith(" "):
            groups[-1].append(ln)
    for g in groups:
        text = " ".join(g)
        command = text.split()[1]
        named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
        real = _options(command, cwd)
        for opt in sorted(named - real):
            problems.append(Problem(b.start, f"the synopsis of `emergence {command}` names {opt}, which it lacks"))
        for opt in sorted(real - named - {"--debug", "--version"}):
            problems.append(Problem(b.start, f"the synopsis of `emergence {command}` leaves out {opt}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="Write the regenerated outputs into README.md.")
    ap.add_argument("--small", action="store_true", help="Shrink sweeps to test sizes (as the test does).")
    a = ap.parse_args()
    problems, new = run_readme(small=a.small, log=lambda m: print(m, file=sys.stderr, flush=True))
    if a.write:
        README.write_text(new)
        problems = [p for p in problems if "is not what it prints now" not in p.what]
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
