"""Property tests: whatever is thrown at the intake parsers, they answer with their own error or safe data."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.core.intake.archive import ArchiveError, safe_extract
from scoring.core.intake.diffcheck import DiffError, diff_from_completion, parse_diff
from scoring.core.intake.spec import SpecError, parse_spec

# Generated zips may repeat a name on purpose; zipfile warns about it while building them.
pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")]

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))

# Path pieces: mostly plain names (so that many inputs are accepted and the properties bite), sometimes one
# that breaks a rule: traversal, .git, absolute, odd characters.
SAFE = ["a", "pkg", "x.py", "mod.py", "é"]
HOSTILE = ["..", ".", ".git", ".GIT", "", "a b", "t\\u", "\t", "/"]
PATHS = st.lists(st.sampled_from(SAFE * 8 + HOSTILE), min_size=1, max_size=3).map("/".join)
BODY_LINES = st.lists(
    st.one_of(
        st.sampled_from([" ctx", "-old", "+new", ""]),
        st.text(max_size=12).map(lambda text: "+" + text.replace("\n", "")),
        st.sampled_from(["\\ No newline at end of file", "junk", "@@ -1 +1 @@"]),
    ),
    max_size=8,
)


@st.composite
def diffs(draw: st.DrawFn) -> str:
    """Diff-shaped text: a well-formed diff over plain names, or one whose names, modes or counts are wrong.

    The first kind keeps the "accepted" branch of the properties busy.
    """
    clean = draw(st.booleans())
    parts = []
    for index in range(draw(st.integers(1, 3))):
        if clean:
            old = new = f"{draw(st.sampled_from(SAFE))}/f{index}.py"
            old_name, new_name, header = f"a/{old}", f"b/{old}", f"diff --git a/{old} b/{old}\n"
            extra = draw(st.sampled_from(["", "index 1a2b..3c4d 100644\n", "old mode 100644\nnew mode 100755\n"]))
        else:
            old, new = draw(PATHS), draw(PATHS)
            old_name = draw(st.sampled_from([f"a/{old}", "/dev/null", old, f'"a/{old}"']))
            new_name = draw(st.sampled_from([f"b/{old}", f"b/{new}", "/dev/null", new]))
            header = draw(st.sampled_from(["", f"diff --git a/{old} b/{new}\n"]))
            extra = draw(
                st.sampled_from(
                    [
                        "",
                        "new file mode 100644\n",
                        "new file mode 120000\n",
                        "index 1a..2b 160000\n",
                        f"rename from {old}\nrename to {new}\n",
                        "old mode 100644\nnew mode 100755\n",
                    ]
                )
            )
        body = draw(BODY_LINES if not clean else st.lists(st.sampled_from([" ctx", "-old", "+new"]), min_size=1))
        old_count = sum(1 for line in body if line[:1] in ("", " ", "-"))
        new_count = sum(1 for line in body if line[:1] in ("", " ", "+"))
        honest = (1, old_count, 1, new_count)
        counts = honest if clean else draw(st.just(honest) | st.tuples(*[st.integers(0, 6)] * 4))
        hunk = "@@ -{},{} +{},{} @@\n".format(*counts) + "".join(line + "\n" for line in body)
        parts.append(f"{header}{extra}--- {old_name}\n+++ {new_name}\n{hunk}")
    return "".join(parts)


def assert_inside_tree(path: str) -> None:
    parts = PurePosixPath(path).parts
    assert not path.startswith("/") and ".." not in parts and path
    assert all(part.casefold() != ".git" for part in parts)


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text_gets_a_diff_error_or_parses(text: str) -> None:
    try:
        parse_diff(text)
    except DiffError as error:
        assert error.status in (400, 413) and str(error)


@FUZZ
@given(diffs())
def test_every_accepted_diff_stays_inside_the_tree(text: str) -> None:
    try:
        parsed = parse_diff(text)
    except DiffError:
        return
    for change in parsed.files:
        assert_inside_tree(change.path)
        if change.old_path is not None:
            assert_inside_tree(change.old_path)
        assert change.kind in {"add", "modify", "delete", "rename"}


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        diffs().map(lambda text: f"Fix:\n```diff\n{text}```\n"),
        st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=50)})
        ),
        st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.lists(st.text(max_size=5)))),
    )
)
def test_completions_never_crash(completion: object) -> None:
    found = diff_from_completion(completion)  # type: ignore[arg-type]  # hypothesis sends any JSON value, as a trainer may
    if found is not None:
        parse_diff(found)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 5000) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
SPEC_KEYS = st.sampled_from(
    [
        "name",
        "test_command",
        "hidden_test_command",
        "benchmark_command",
        "requirements",
        "protected_paths",
        "lint_config",
        "labels_per_item",
        "timeout_s",
        "repo",
        "hidden_tests",
        "bogus",
    ]
)
SPEC_VALUES = JSON_VALUES | st.sampled_from(["pytest -q", "gcd", "python -m pytest; id", "numpy==2.0", ["tests/**"], 3])


@FUZZ
@given(st.dictionaries(SPEC_KEYS, SPEC_VALUES, max_size=8), st.booleans())
def test_generated_specs_get_a_spec_error_or_a_spec(data: dict, api: bool) -> None:
    try:
        spec = parse_spec(data, api=api, spec_dir=Path(tempfile.gettempdir()))
    except SpecError as error:
        assert str(error)
        return
    assert parse_spec(json.dumps(spec.to_json()), api=True) == spec


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_spec_bytes_get_a_spec_error_or_a_spec(data: bytes) -> None:
    with contextlib.suppress(SpecError):
        parse_spec(data, api=True)


def extract_or_refuse(blob: bytes) -> None:
    """Unpack `blob`; on success every entry must be a regular file or folder inside the destination."""
    with tempfile.TemporaryDirectory() as scratch:
        archive, dest = Path(scratch) / "upload", Path(scratch) / "out"
        archive.write_bytes(blob)
        try:
            safe_extract(archive, dest, max_bytes=1 << 20, max_files=50)
        except ArchiveError:
            assert not dest.exists()
            return
        for path in dest.rglob("*"):
            assert not path.is_symlink() and (path.is_file() or path.is_dir())
            assert path.resolve().is_relative_to(dest.resolve())


MEMBER_TYPES = st.sampled_from(
    [tarfile.REGTYPE] * 4 + [tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]
)


@st.composite
def tar_archives(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=draw(st.sampled_from(["w:gz", "w"]))) as tar:
        for _ in range(draw(st.integers(0, 4))):
            info = tarfile.TarInfo(draw(PATHS))
            info.type = draw(MEMBER_TYPES)
            info.linkname = draw(PATHS)
            data = draw(st.binary(max_size=64)) if info.type == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@st.composite
def zip_archives(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for _ in range(draw(st.integers(0, 4))):
            info = zipfile.ZipInfo(draw(PATHS) or "x")
            info.external_attr = (
                draw(st.sampled_from([0, 0o100644, 0o100644, 0o100755, 0o120777, 0o040755, 0o010644])) << 16
            )
            zf.writestr(info, draw(st.binary(max_size=64)))
    return buffer.getvalue()


@FUZZ
@given(st.one_of(tar_archives(), zip_archives(), st.binary(max_size=600)))
def test_generated_archives_get_an_archive_error_or_a_safe_tree(blob: bytes) -> None:
    extract_or_refuse(blob)


@FUZZ
@given(tar_archives() | zip_archives(), st.data())
def test_corrupted_archives_get_an_archive_error_or_a_safe_tree(blob: bytes, data: st.DataObject) -> None:
    if blob:
        at = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([data.draw(st.integers(0, 255))]) + blob[at + 1 :]
    extract_or_refuse(blob)
