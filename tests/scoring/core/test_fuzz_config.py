"""Property tests: whatever a patch writes into pyproject.toml, setup.cfg, tox.ini or pytest.ini, the readers of
patched configuration answer with data, None or ConfigError (a clear reason), never another exception."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.core.analysis.analyser import _pylint_section, read_pylint_options
from scoring.core.critics.correctness import combine
from scoring.core.intake.configread import ConfigError
from scoring.core.sandbox import workspace

pytestmark = pytest.mark.fuzz

FUZZ = settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
NAMES = ["pyproject.toml", "setup.cfg", "tox.ini", "pytest.ini", "pytest.toml"]

# Pieces of configuration files: section headers and values of the right and of the wrong shape, so many
# generated files parse and the type checks behind the parsers are reached, plus broken syntax.
HEADERS = [
    "[tool]",
    "[tool.pytest]",
    "[tool.pytest.ini_options]",
    "[tool.pylint]",
    '[tool.pylint."messages control"]',
    "[tool.bandit]",
    "[[tool]]",
    "[[tool.pytest]]",
    "[pytest]",
    "[tool:pytest]",
    "[pylint]",
    "[pylint.main]",
    "[metadata]",
    "[project]",
    "[",
    "[tool.pytest",
]
KEYS = ["addopts", "pytest", "pylint", "ini_options", "tool", "disable", "testpaths", "name", "tool.pytest.addopts"]
VALUES = [
    '"-q"',
    '"-p evil"',
    "7",
    "3.5",
    "true",
    '["-x", 1]',
    '["-q"]',
    "{a = 1}",
    "[[1]]",
    "'unbalanced \"",
    '"a',
    "",
]
TEXT_LINES = st.one_of(
    st.sampled_from(HEADERS),
    st.builds("{} {} {}".format, st.sampled_from(KEYS), st.sampled_from(["=", ":", "=="]), st.sampled_from(VALUES)),
    st.sampled_from(["  continued", "# comment", "; comment", "", "x = " + "[" * 1000 + "]" * 1000]),
    st.text(max_size=20).map(lambda text: text.replace("\n", "")),
)
CONFIG_TEXT = st.lists(TEXT_LINES, max_size=12).map("\n".join)
CONFIG_BYTES = st.one_of(
    st.binary(max_size=200),
    CONFIG_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.tuples(CONFIG_TEXT, st.binary(min_size=1, max_size=4)).map(lambda pair: pair[0].encode() + pair[1]),
)


@pytest.fixture(scope="module")
def trees() -> Iterator[tuple[Path, Path]]:
    """(base, patched): two trees the examples overwrite, each with a base pyproject.toml that configures pytest."""
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as root:
        base, patched = Path(root, "base"), Path(root, "patched")
        for tree in (base, patched):
            tree.mkdir()
        (base / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.pytest.ini_options]\naddopts = "-q"\n')
        (base / "setup.cfg").write_text("[metadata]\nname = x\n")
        yield base, patched


def write_all(tree: Path, data: bytes) -> None:
    for name in NAMES:
        (tree / name).write_bytes(data)


@FUZZ
@given(data=CONFIG_BYTES)
def test_root_addopts_answers_options_or_none_for_any_configuration(trees, data: bytes) -> None:
    _base, patched = trees
    write_all(patched, data)

    options = combine.root_addopts(patched)

    assert options is None or all(isinstance(option, str) for option in options)


@FUZZ
@given(data=CONFIG_BYTES, name=st.sampled_from(["pyproject.toml", "setup.cfg"]))
def test_the_workspace_reads_any_patched_configuration_as_sections_or_a_reason(trees, data: bytes, name: str) -> None:
    base, patched = trees
    (patched / name).write_bytes(data)

    try:
        sections = workspace._config_sections(patched / name, name)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(sections, dict)
    reason = workspace._config_section_changed(name, base, patched)
    assert reason is None or name in reason


@FUZZ
@given(data=CONFIG_BYTES, name=st.sampled_from(["pyproject.toml", "setup.cfg", "tox.ini", "pylintrc"]))
def test_the_analyser_reads_any_lint_configuration_as_options_or_a_reason(trees, data: bytes, name: str) -> None:
    _base, patched = trees
    (patched / name).write_bytes(data)

    try:
        options = read_pylint_options(patched / name)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert all(isinstance(key, str) and isinstance(value, str) for key, value in options.items())
    assert isinstance(_pylint_section(patched / name), dict | str)


def test_a_configuration_file_too_large_to_be_honest_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "pyproject.toml"
    with big.open("wb") as handle:  # 50 MB of valid TOML: parsing it would cost seconds per patch
        handle.write(b'[tool.pytest.ini_options]\naddopts = "-q"\n')
        handle.write(b"# padding\n" * 5_000_000)

    assert combine.root_addopts(tmp_path) is None
    with pytest.raises(ConfigError, match="larger than"):
        workspace._config_sections(big, "pyproject.toml")
    assert workspace._config_section_changed("pyproject.toml", tmp_path / "absent", tmp_path) is not None
