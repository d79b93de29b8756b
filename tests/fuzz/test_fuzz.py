"""The fuzz targets in `make test`: the seed corpus replayed, then a brief atheris run each.

Every file under tests/fuzz/corpus/<target>/ (seeds, and inputs that once crashed:
``crash-*``) is replayed in-process, without the fuzzer. Then each target runs under
atheris in a subprocess, all at once, for a few hundred to a few thousand inputs
(``BRIEF_RUNS``) from a fixed seed, so the run is the same every time; `make fuzz`
runs them for minutes with random seeds. When atheris is not installed (it ships
wheels for Linux), the brief runs are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz import targets

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
# Inputs per target: the client-stream targets build a whole server per input.
BRIEF_RUNS = {"parser": 3000, "jid": 3000, "sasl": 2000, "c2s_negotiation": 40, "c2s_session": 40}
BRIEF_TIMEOUT = 240  # seconds for all brief runs together


def _corpus(target: str) -> list[Path]:
    return sorted((CORPUS / target).iterdir())


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_corpus_replays_cleanly(target: str) -> None:
    files = _corpus(target)
    assert files, f"no seed corpus for {target}"
    for path in files:
        try:
            targets.TARGETS[target](path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"{path.relative_to(ROOT)}: {exc}") from exc


@pytest.fixture(scope="module")
def brief_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pyproject.toml's test extras, Linux only)")
    work = tmp_path_factory.mktemp("fuzz")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: dict[str, subprocess.Popen[str]] = {}
    for target, runs in BRIEF_RUNS.items():
        (work / target).mkdir()
        procs[target] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fuzz.run",
                target,
                f"-runs={runs}",
                "-seed=1",
                "-timeout=60",
                "-max_len=4096",
                f"-artifact_prefix={work / target}/",
                str(work / target),  # new inputs go here, not into the repository
                str(CORPUS / target),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(BRIEF_TIMEOUT + 30)
@pytest.mark.parametrize("target", sorted(BRIEF_RUNS))
def test_brief_atheris_run_finds_nothing(
    target: str, brief_runs: dict[str, subprocess.Popen[str]]
) -> None:
    proc = brief_runs[target]
    out, _ = proc.communicate(timeout=BRIEF_TIMEOUT)
    # libFuzzer ends a crash report with the input (file and Base64): keep the tail.
    assert proc.returncode == 0, f"{target} crashed:\n{out[-6000:]}"
    assert "Done" in out, out[-2000:]
