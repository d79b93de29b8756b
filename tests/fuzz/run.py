"""Run one fuzz target (tests/fuzz/targets.py) under atheris, coverage-guided.

    python -m tests.fuzz.run TARGET [libFuzzer options] [corpus directories]

Descant (and scramp, precis-i18n) are instrumented for coverage. An input that
makes the target raise is a crash: libFuzzer writes it to ``crash-<sha1>`` (see
``-artifact_prefix``) and exits non-zero; ``python -m tests.fuzz.run TARGET FILE``
replays one such file. The Makefile's ``fuzz`` target and tests/fuzz/test_fuzz.py
choose the options.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["descant", "scramp", "precis_i18n"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
