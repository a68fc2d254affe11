"""Hostile and friendly diffs through parse_diff, check_paths_exist and diff_from_completion."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from scoring.core.intake.diffcheck import DiffError, check_paths_exist, diff_from_completion, parse_diff

SIMPLE = """\
diff --git a/calc.py b/calc.py
index 3b18e51..b1b7161 100644
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,3 @@
 def add(a, b):
-    return a - b
+    # fixed
+    return a + b
"""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


@pytest.fixture
def repo_and_diff(tmp_path: Path) -> tuple[Path, str]:
    """A real git repository and the `git diff` of an add, a modify with a mode change, a delete, a rename."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n")
    (repo / "notes.txt").write_text("old notes\n")
    (repo / "old_name.py").write_text("VALUE = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = tmp_path / "base"
    git(repo, "worktree", "add", "-q", str(base))
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n# end\n")
    (repo / "calc.py").chmod(0o755)
    (repo / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    git(repo, "rm", "-q", "notes.txt")
    git(repo, "mv", "old_name.py", "new_name.py")
    git(repo, "add", "-A")
    return base, git(repo, "diff", "--cached")


def refused(text: str, **kwargs: int) -> DiffError:
    with pytest.raises(DiffError) as caught:
        parse_diff(text, **kwargs)
    return caught.value


def test_git_diff_is_parsed_into_files_with_kinds_and_added_lines(repo_and_diff: tuple[Path, str]) -> None:
    base, text = repo_and_diff
    parsed = parse_diff(text)
    by_path = {change.path: change for change in parsed.files}
    assert by_path["calc.py"].kind == "modify" and by_path["calc.py"].added_lines == {2, 7}
    assert by_path["helpers.py"].kind == "add" and by_path["helpers.py"].added_lines == {1, 2}
    assert by_path["notes.txt"].kind == "delete" and not by_path["notes.txt"].is_python
    assert by_path["new_name.py"].kind == "rename" and by_path["new_name.py"].old_path == "old_name.py"
    assert len(parsed.sha256) == 64
    check_paths_exist(parsed, base)


def test_too_large_diff_gets_413(repo_and_diff: tuple[Path, str]) -> None:
    error = refused(SIMPLE + "+" + "x" * 2000 + "\n", max_bytes=1000)
    assert error.status == 413 and "too large" in str(error)
    multibyte = refused("é" * 600, max_bytes=1000)  # 600 characters, 1200 bytes
    assert multibyte.status == 413


@pytest.mark.parametrize("text", ["", "   \n\n\t\n"])
def test_empty_diff_is_refused(text: str) -> None:
    error = refused(text)
    assert error.status == 400 and "empty" in str(error)


@pytest.mark.parametrize("text", ["please fix the bug\n", "*** a/x.py\n--- b/x.py\n***************\n"])
def test_text_that_is_not_a_unified_diff_is_refused(text: str) -> None:
    assert "not a unified diff" in str(refused(text))


def test_nul_byte_is_refused() -> None:
    assert "NUL" in str(refused(SIMPLE.replace("# fixed", "# fi\0xed")))


@pytest.mark.parametrize(
    "text",
    [
        "diff --git a/logo.png b/logo.png\nindex 1..2 100644\nGIT binary patch\nliteral 5\nHcmV?d00001\n\n",
        "diff --git a/logo.png b/logo.png\nindex 1..2 100644\nBinary files a/logo.png and b/logo.png differ\n",
    ],
)
def test_binary_patch_is_refused(text: str) -> None:
    assert "binary patches are not accepted" in str(refused(text))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("a/calc.py", "b//etc/passwd", "absolute path"),
        ("/etc/passwd", "b/calc.py", "absolute path"),
        ("a/../../etc/passwd", "b/../../etc/passwd", "leaves the repository"),
        ("a/pkg/../../x.py", "b/pkg/../../x.py", "leaves the repository"),
        ("a/.git/hooks/pre-commit", "b/.git/hooks/pre-commit", ".git/"),
        ("a/sub/.GIT/config", "b/sub/.GIT/config", ".git/"),
    ],
)
def test_paths_outside_the_tree_or_in_git_are_refused(old: str, new: str, expected: str) -> None:
    text = f"--- {old}\n+++ {new}\n@@ -1 +1 @@\n-a\n+b\n"
    assert expected in str(refused(text))


def test_rename_out_of_the_tree_is_refused() -> None:
    text = "diff --git a/x.py b/x.py\nsimilarity index 100%\nrename from x.py\nrename to ../../x.py\n"
    assert "leaves the repository" in str(refused(text))


def test_git_header_with_escaping_path_is_refused() -> None:
    text = "diff --git a/../evil.py b/../evil.py\nnew file mode 100644\nindex 0000000..e69de29\n"
    assert "leaves the repository" in str(refused(text))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("new file mode 120000\nindex 0000000..1b2c3d4", "symlink entries (mode 120000)"),
        ("old mode 100644\nnew mode 120000", "symlink entries (mode 120000)"),
        ("new file mode 160000\nindex 0000000..1b2c3d4", "gitlink (submodule) entries (mode 160000)"),
        ("index 1b2c3d4..5e6f7a8 160000", "gitlink (submodule) entries (mode 160000)"),
        ("new file mode 100600\nindex 0000000..1b2c3d4", "unsupported file mode 100600"),
    ],
)
def test_symlink_and_gitlink_modes_are_refused(header: str, expected: str) -> None:
    text = f"diff --git a/link b/link\n{header}\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+/etc/passwd\n"
    assert expected in str(refused(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n", "shorter than its header says"),
        ("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-b\n+c\n+d\n+e\n", "more lines than its header says"),
        ("--- a/x.py\n+++ b/x.py\n@@ -1,x +1 @@\n-b\n+c\n", "malformed hunk header"),
        ("--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-b\nnot a diff line\n", "shorter than its header says"),
        ("--- a/x.py\n+++ b/x.py\n", "not followed by a hunk"),
        ("--- a/x.py\n@@ -1 +1 @@\n-b\n+c\n", "not followed by a '+++' header"),
        ("@@ -1 +1 @@\n-b\n+c\n", "not preceded by '---' and '+++'"),
    ],
)
def test_malformed_hunks_are_refused(text: str, expected: str) -> None:
    assert expected in str(refused(text))


def test_names_without_git_prefixes_are_refused_with_a_hint() -> None:
    assert "must start with 'a/'" in str(refused("--- x.py\n+++ x.py\n@@ -1 +1 @@\n-a\n+b\n"))


def test_copies_and_files_listed_twice_are_refused() -> None:
    copy = "diff --git a/x.py b/y.py\nsimilarity index 100%\ncopy from x.py\ncopy to y.py\n"
    assert "copies are not accepted" in str(refused(copy))
    assert "appears more than once" in str(refused(SIMPLE + SIMPLE))


def test_quoted_unicode_file_name_is_understood() -> None:
    text = '--- "a/caf\\303\\251.py"\n+++ "b/caf\\303\\251.py"\n@@ -1 +1 @@\n-a\n+b\n'
    assert parse_diff(text).files[0].path == "café.py"


def test_files_missing_from_the_base_or_already_there_are_refused(repo_and_diff: tuple[Path, str]) -> None:
    base, _ = repo_and_diff
    missing = parse_diff(SIMPLE.replace("calc.py", "nowhere.py"))
    with pytest.raises(DiffError, match=re.escape("'nowhere.py' does not exist in the base repository")):
        check_paths_exist(missing, base)
    exists = parse_diff("--- /dev/null\n+++ b/calc.py\n@@ -0,0 +1 @@\n+x = 1\n")
    with pytest.raises(DiffError, match=re.escape("'calc.py' already exists")):
        check_paths_exist(exists, base)
    deleted = parse_diff("--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n")
    with pytest.raises(DiffError, match=re.escape("'gone.py' does not exist")):
        check_paths_exist(deleted, base)


def test_path_through_a_symlink_in_the_base_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "lib").symlink_to("/etc")
    (base / "sibling").symlink_to(tmp_path / "base-evil")  # its name starts with the base's
    (tmp_path / "base-evil").mkdir()
    (tmp_path / "base-evil" / "x.py").write_text("a\n")
    (base / "calc.py").write_text("a\n")
    for diff in (
        "--- a/lib/hostname\n+++ b/lib/hostname\n@@ -1 +1 @@\n-a\n+b\n",
        "--- a/sibling/x.py\n+++ b/sibling/x.py\n@@ -1 +1 @@\n-a\n+b\n",
        "diff --git a/lib/hostname b/moved.py\nsimilarity index 100%\nrename from lib/hostname\nrename to moved.py\n",
    ):
        with pytest.raises(DiffError, match="through a symlink"):
            check_paths_exist(parse_diff(diff), base)


def test_a_symlink_loop_in_the_base_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "loop").symlink_to("loop")
    with pytest.raises(DiffError, match="does not exist"):
        check_paths_exist(parse_diff("--- a/loop/x.py\n+++ b/loop/x.py\n@@ -1 +1 @@\n-a\n+b\n"), base)
    with pytest.raises(DiffError, match="already exists"):
        check_paths_exist(parse_diff("--- /dev/null\n+++ b/loop\n@@ -0,0 +1 @@\n+x = 1\n"), base)


@pytest.mark.parametrize("name", ["calc.py/", "calc.py/.", "./calc.py", "lib//calc.py"])
def test_file_names_git_never_writes_are_refused(name: str) -> None:
    with pytest.raises(DiffError, match=re.escape("has an empty or '.' part")):
        parse_diff(f"--- /dev/null\n+++ b/{name}\n@@ -0,0 +1 @@\n+x = 1\n")


def test_completion_string_with_fenced_diff_yields_the_diff() -> None:
    completion = f"The bug is the sign.\n\n```diff\n{SIMPLE}```\n\nThis makes add() add."
    assert diff_from_completion(completion) == SIMPLE


def test_first_fenced_block_that_parses_wins() -> None:
    broken = "--- a/calc.py\n+++ b/calc.py\n@@ -1,9 +1,9 @@\n-x\n"
    other = SIMPLE.replace("calc.py", "other.py")
    completion = f"```diff\n{broken}```\nOops, again:\n```patch\n{SIMPLE}```\n```diff\n{other}```\n"
    assert diff_from_completion(completion) == SIMPLE


def test_chat_completion_uses_the_last_assistant_message_and_its_text_parts() -> None:
    chat = [
        {"role": "user", "content": "Fix calc.py"},
        {"role": "assistant", "content": "```diff\nnot a diff\n```"},
        {"role": "user", "content": "Try again"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Here:\n```diff\n"},
                {"type": "text", "text": SIMPLE + "```"},
            ],
        },
    ]
    assert diff_from_completion(chat) == SIMPLE


def test_whole_text_diff_is_accepted_and_prose_alone_is_not() -> None:
    assert diff_from_completion(SIMPLE) == SIMPLE
    assert diff_from_completion("I could not find the bug, sorry.") is None
    assert diff_from_completion([{"role": "user", "content": SIMPLE}]) is None
    assert diff_from_completion(None) is None  # type: ignore[arg-type]  # a trainer may send null: the function must cope
