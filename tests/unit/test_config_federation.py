"""Config keys for federation, components and extra modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from descant.config import ConfigError, load


def _load(tmp_path: Path, text: str) -> object:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load(str(p))


def test_tables_of_strings(tmp_path: Path) -> None:
    cfg: object = _load(
        tmp_path,
        """
[s2s]
policy = "verify"
idle_timeout = 30
[s2s.routes]
"example.net" = "127.0.0.3:5269"
[s2s.policies]
"old.example" = "dialback"
[components]
listen = ["127.0.0.1:5347"]
[components.secrets]
"bridge.localhost" = "secret"
[modules]
extra = ["mypkg.mymod:MyModule"]
""",
    )
    assert cfg.s2s.routes == {"example.net": "127.0.0.3:5269"}  # type: ignore[attr-defined]
    assert cfg.s2s.policies == {"old.example": "dialback"}  # type: ignore[attr-defined]
    assert cfg.s2s.idle_timeout == 30.0  # type: ignore[attr-defined]
    assert cfg.components.secrets == {"bridge.localhost": "secret"}  # type: ignore[attr-defined]
    assert cfg.modules.extra == ["mypkg.mymod:MyModule"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[s2s]\npolicy = "none"', "s2s.policy"),
        ('[s2s.routes]\n"a.example" = 5', 's2s.routes."a.example"'),
        ('[s2s.routes]\n"a.example" = "nohost"', 's2s.routes."a.example"'),
        ('[s2s.policies]\n"a.example" = "maybe"', 's2s.policies."a.example"'),
        ('[s2s]\nroutes = ["x"]', "s2s.routes: expected a table"),
        ('[components]\nlisten = ["x"]', "components.listen[0]"),
        ('[components]\nsecret = "x"', "components.secret: unknown key"),
        ('[modules]\nextra = ["nocolon"]', "modules.extra[0]"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        _load(tmp_path, text)
