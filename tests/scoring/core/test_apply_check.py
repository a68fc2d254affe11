"""The in-process apply check agrees with `git apply --check`: whatever libgit2 accepts at intake, git accepts.

workspace.check_applies answers from libgit2 only when libgit2 accepts and nothing it skips could make git
refuse; every other diff goes to git. These tests run both on a corpus: the demo patches against their repos, the
fixture and hostile diffs of the other intake tests, mutations of all of them (shifted hunks, wrong context,
newline markers, CRLF, new files that exist, deletes, renames, ...) and generated diffs, and check that the fast
path never accepts what git refuses, and that check_applies always ends with git's verdict and git's message.
Each class of diff that libgit2 alone would wrongly accept has its own test below.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scoring.core.intake import applycheck
from scoring.core.intake.diffcheck import DiffError, parse_diff
from scoring.core.sandbox import workspace
from scoring.core.trees import pack_tree
from tests.scoring.core.fixtures import gcd_task
from tests.scoring.core.test_diffcheck import SIMPLE, git
from tests.scoring.core.test_fuzz_intake import SAFE, diffs

DEMO = Path(__file__).resolve().parents[3] / "scoring" / "demo" / "tasks"
DEMO_TASKS = sorted(path.name for path in DEMO.iterdir() if (path / "repo").is_dir())

#: A small repository with the shapes that trip patch tools: repeated blocks, no final newline, CRLF lines, an
#: empty file, nested folders, and the file names that test_fuzz_intake's diffs() writes to.
SYNTHETIC = {
    "m.py": "".join(f"line{i}\n" for i in range(1, 13)),
    "dup.py": "x\ny\nctx1\nold\nctx2\nz\nctx1\nold\nctx2\n",
    "rep.py": "a\nb\n" * 6,
    "nonl.py": "first\nsecond\nlast",
    "crlf.py": "one\r\ntwo\r\nthree\r\n",
    "empty.py": "",
    "pkg/inner.py": "alpha\nbeta\ngamma\ndelta\n",
    **{
        f"{folder}/f{i}.py": body
        for folder in SAFE
        for i, body in enumerate(["ctx\n", "ctx\nold\n", "old\nctx\nold\n"])
    },
}

FUZZ = settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
GENERATED = settings(FUZZ, max_examples=600)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Cached base trees (with their check repositories), by name: the demo tasks, gcd and SYNTHETIC."""
    root = tmp_path_factory.mktemp("bases")
    archives = {name: pack_tree(DEMO / name / "repo", root / f"{name}.tar.gz") for name in DEMO_TASKS}
    archives["gcd"] = gcd_task.make_archive(gcd_task.REPO, root / "gcd.tar.gz")
    archives["synthetic"] = gcd_task.make_archive(SYNTHETIC, root / "synthetic.tar.gz")
    return {name: workspace.base_tree(archive, cache_root=root / "cache") for name, archive in archives.items()}


def git_refusal(text: str, base: Path) -> str | None:
    """git's own verdict: None when `git apply --check` accepts, else its message."""
    try:
        workspace._git_apply(text, base, check=True)
    except DiffError as exc:
        return str(exc)
    return None


def libgit2_alone(text: str, base: Path) -> bool:
    """What libgit2 answers with none of check_applies' guards around it."""
    checker = applycheck._check_repo(base.with_name(base.name + applycheck._CHECK_REPO_SUFFIX))
    assert checker is not None
    return checker.applies(pygit2.Diff.parse_diff(text))


def check_applies_verdict(text: str, base: Path) -> str | None:
    try:
        workspace.check_applies(text, base)
    except DiffError as exc:
        return str(exc)
    return None


@dataclass
class Outcome:
    fast: int = 0
    git_accepts: int = 0
    git_refuses: int = 0
    wrong: list[str] = field(default_factory=list)


def run_corpus(corpus: Iterator[tuple[str, str]], base: Path) -> Outcome:
    """Check every diff of `corpus` with check_applies and with git alone; collect where their verdicts differ.

    A wrong verdict can only come from the fast path accepting what git refuses: every other answer is git's.
    """
    outcome = Outcome()
    for name, text in corpus:
        outcome.fast += applycheck.libgit2_accepts(text, base)
        refusal = git_refusal(text, base)
        outcome.git_refuses += refusal is not None
        outcome.git_accepts += refusal is None
        verdict = check_applies_verdict(text, base)
        if verdict != refusal:
            outcome.wrong.append(f"{name}: check_applies said {verdict!r}, git said {refusal!r}\n{text}")
    return outcome


# --- a tiny model of a git diff, to mutate --------------------------------------------------------------------


@dataclass
class Hunk:
    old: int
    old_n: int
    new: int
    new_n: int
    body: list[str]

    def render(self) -> str:
        return f"@@ -{self.old},{self.old_n} +{self.new},{self.new_n} @@\n" + "".join(f"{line}\n" for line in self.body)

    def recounted(self) -> Hunk:
        """The same hunk with counts that match its body."""
        old_n = sum(1 for line in self.body if line[:1] in (" ", "-"))
        new_n = sum(1 for line in self.body if line[:1] in (" ", "+"))
        return replace(self, old_n=old_n, new_n=new_n)


@dataclass
class FilePatch:
    header: list[str]
    hunks: list[Hunk]

    def render(self) -> str:
        return "".join(f"{line}\n" for line in self.header) + "".join(hunk.render() for hunk in self.hunks)


_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def split(text: str) -> list[FilePatch]:
    """The file sections and hunks of a `git diff` text."""
    files: list[FilePatch] = []
    for line in text.splitlines():
        if line.startswith("diff --git "):
            files.append(FilePatch([line], []))
        elif (match := _HEADER.match(line)) is not None:
            old, old_n, new, new_n = match.groups()
            files[-1].hunks.append(Hunk(int(old), int(old_n or 1), int(new), int(new_n or 1), []))
        elif files[-1].hunks:
            files[-1].hunks[-1].body.append(line)
        else:
            files[-1].header.append(line)
    return files


def render(files: list[FilePatch]) -> str:
    return "".join(patch.render() for patch in files)


def with_hunks(files: list[FilePatch], index: int, hunks: list[Hunk]) -> list[FilePatch]:
    return [replace(patch, hunks=hunks) if i == index else patch for i, patch in enumerate(files)]


def strip_context(hunk: Hunk, *, leading: bool, trailing: bool) -> Hunk:
    body = list(hunk.body)
    shift = 0
    while leading and body and body[0].startswith(" "):
        body.pop(0)
        shift += 1
    while trailing and body and body[-1].startswith(" "):
        body.pop()
    return replace(hunk, old=hunk.old + shift, new=hunk.new + shift, body=body).recounted()


def file_diff(path: str, old: str | None, new: str | None) -> str:
    """A git-style diff of one file from `old` to `new` (None: absent), whole-file hunks."""
    old_lines, new_lines = (old or "").splitlines(), (new or "").splitlines()
    header = [f"diff --git a/{path} b/{path}"]
    if old is None:
        header.append("new file mode 100644")
    if new is None:
        header.append("deleted file mode 100644")
    header += [
        f"--- {'a/' + path if old is not None else '/dev/null'}",
        f"+++ {'b/' + path if new is not None else '/dev/null'}",
    ]
    hunk = Hunk(1 if old_lines else 0, len(old_lines), 1 if new_lines else 0, len(new_lines), [])
    hunk.body = [f"-{line}" for line in old_lines] + [f"+{line}" for line in new_lines]
    return "\n".join(header) + "\n" + hunk.render()


def mutations(text: str, base: Path) -> Iterator[tuple[str, str]]:
    """`text` and variants of it that git and libgit2 may judge differently."""
    yield "as is", text
    files = split(text)
    first = files[0]
    path = first.header[0].split(" b/", 1)[1]
    for k in (-7, -3, -1, 1, 2, 5):
        shifted = [replace(h, old=max(h.old + k, 1), new=max(h.new + k, 1)) for h in first.hunks]
        yield f"shifted {k:+}", render(with_hunks(files, 0, shifted))
    for k in (-1, 1):
        hunk = first.hunks[0]
        yield (
            f"new start {k:+}",
            render(with_hunks(files, 0, [replace(hunk, new=max(hunk.new + k, 0)), *first.hunks[1:]])),
        )
        yield (
            f"old start {k:+}",
            render(with_hunks(files, 0, [replace(hunk, old=max(hunk.old + k, 0)), *first.hunks[1:]])),
        )
    hunk = first.hunks[0]
    yield "new start 0", render(with_hunks(files, 0, [replace(hunk, new=0), *first.hunks[1:]]))
    for kind in (" ", "-"):
        at = next((i for i, line in enumerate(hunk.body) if line.startswith(kind)), None)
        if at is not None:
            body = [*hunk.body[:at], hunk.body[at] + " # changed", *hunk.body[at + 1 :]]
            yield f"wrong {kind!r} line", render(with_hunks(files, 0, [replace(hunk, body=body), *first.hunks[1:]]))
    for leading, trailing in ((False, True), (True, False), (True, True)):
        stripped = [strip_context(h, leading=leading, trailing=trailing) for h in first.hunks]
        yield f"context stripped {leading=} {trailing=}", render(with_hunks(files, 0, stripped))
    marked = replace(first.hunks[-1], body=[*first.hunks[-1].body, "\\ No newline at end of file"])
    yield "no-newline marker added", render(with_hunks(files, 0, [*first.hunks[:-1], marked]))
    odd = re.sub(r"^\\.*$", lambda _: "\\", text, flags=re.M) if "\n\\" in text else text.rstrip("\n") + "\n\\\n"
    yield "odd backslash line", odd
    yield "no final newline", text.rstrip("\n")
    yield "CRLF everywhere", text.replace("\n", "\r\n")
    crlf_bodies = [replace(h, body=[line + "\r" for line in h.body]) for h in first.hunks]
    yield "CRLF in the hunks", render(with_hunks(files, 0, crlf_bodies))
    neutral = [(" " + line[1:]) if line.startswith("-") else line for line in hunk.body if not line.startswith("+")]
    yield "hunk without a change", render(with_hunks(files, 0, [replace(hunk, body=neutral).recounted()]))
    yield "hunk twice", render(with_hunks(files, 0, [hunk, *first.hunks]))
    if len(first.hunks) > 1:
        yield "hunks reversed", render(with_hunks(files, 0, first.hunks[::-1]))
    post = [" " + line[1:] for line in hunk.body if line[:1] in (" ", "+")]
    if post:
        middle = len(post) // 2
        again = [*post[:middle], "-" + post[middle][1:], "+" + post[middle][1:] + " # again", *post[middle + 1 :]]
        over = replace(hunk, old=hunk.new, new=hunk.new, body=again).recounted()
        yield "second hunk over the first one's lines", render(with_hunks(files, 0, [hunk, over]))
    yield "without index lines", re.sub(r"^index .*\n", "", text, flags=re.M)
    yield "without diff --git lines", re.sub(r"^(diff --git .*|index .*)\n", "", text, flags=re.M)
    yield "with a signature", text + "-- \n2.39.5\n\n"
    yield "after a commit message", "Subject: fix it\n\nThe fix.\n---\n" + text
    existing = (base / path).read_bytes().decode() if (base / path).is_file() else None
    if existing is not None:
        yield "new file that exists", file_diff(path, None, existing)
        yield "delete, exact", file_diff(path, existing, None)
        stale = existing.replace("\n", " \n", 1)
        yield "delete, stale", file_diff(path, stale, None)
        yield "new file under a file", file_diff(path + "/x.py", None, "x = 1\n")
    for odd in (
        f"{path}/",
        f"{path}/x.py/",
        "pkg//x.py",
        "./x.py",
        "new/./x.py",
        "GIT~1/x.py",
        "a/.git./x.py",
        "x.py.",
        ".gitignore",
    ):
        yield f"new file at {odd!r}", file_diff(odd, None, "x = 1\n")
    yield f"edit at {path + '/'!r}", text.replace(f"a/{path}", f"a/{path}/").replace(f"b/{path}", f"b/{path}/")
    yield "delete a missing file", file_diff("missing/gone.py", "x = 1\n", None)
    yield "new file", file_diff("brand/new.py", None, "x = 1\n")
    yield "new file, no final newline", file_diff("brand/new.py", None, "x = 1") + "\\ No newline at end of file\n"
    others = sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    for target in ("renamed/target.py", next(other for other in others if other != path)):
        if len(files) == 1 and "\n--- " in text:
            head = f"diff --git a/{path} b/{target}\nsimilarity index 90%\nrename from {path}\nrename to {target}\n"
            body = text[text.index("\n--- ") + 1 :].replace(f"+++ b/{path}", f"+++ b/{target}", 1)
            yield f"renamed to {target}", head + body
    pure = (
        f"diff --git a/{path} b/renamed/pure.py\nsimilarity index 100%\nrename from {path}\nrename to renamed/pure.py\n"
    )
    yield "pure rename", pure
    yield "second file does not apply", text + file_diff("missing/other.py", "a\n", "b\n")


def corpus_texts() -> Iterator[tuple[str, str, str]]:
    """(base name, label, diff) for every diff the agreement tests start from."""
    for name in DEMO_TASKS:
        for patch in sorted((DEMO / name / "patches").glob("*.diff")):
            yield name, patch.name, patch.read_text()
    fixed = gcd_task.FIXED
    yield "gcd", "fix", gcd_task.fix_diff()
    yield "gcd", "fix and tests", gcd_task.make_diff({"tests/test_gcd.py": None, "gcd/__init__.py": fixed})
    yield "gcd", "pyproject", gcd_task.make_diff({"pyproject.toml": gcd_task.REPO["pyproject.toml"] + "# more\n"})
    stale = gcd_task.make_diff({"gcd/__init__.py": "x = 1\n"}, base={"gcd/__init__.py": "y = 2\n"})
    yield "gcd", "stale", stale
    for path in ("conftest.py", "gcd/evil.pth", "evil-1.0.dist-info/entry_points.txt", "tests/test_more.py"):
        yield "gcd", f"fix and add {path}", gcd_task.make_diff({path: "x = 1\n", "gcd/__init__.py": fixed})
    synthetic = SYNTHETIC
    for path, new in {
        "m.py": synthetic["m.py"].replace("line6\n", "line6\nsix and a half\n").replace("line11", "eleven"),
        "dup.py": synthetic["dup.py"].replace("old", "new", 1),
        "rep.py": synthetic["rep.py"][:-2] + "c\n",
        "nonl.py": synthetic["nonl.py"] + "er",
        "crlf.py": synthetic["crlf.py"].replace("two", "deux"),
        "pkg/inner.py": synthetic["pkg/inner.py"].replace("beta", "BETA"),
    }.items():
        yield "synthetic", path, _git_style(path, synthetic[path], new)
    yield "synthetic", "diffcheck's SIMPLE", SIMPLE


def _git_style(path: str, old: str, new: str) -> str:
    """A git-style diff of one file; a whole-file hunk with newline markers when the texts end without one."""
    return (
        gcd_task.make_diff({path: new}, base={path: old})
        if old.endswith("\n") and new.endswith("\n")
        else (
            f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
            + _nonl_hunk(old.splitlines(), new.splitlines())
        )
    )


def _nonl_hunk(old: list[str], new: list[str]) -> str:
    """A whole-file hunk from `old` to `new`, both without a final newline."""
    body = [f"-{line}" for line in old] + ["\\ No newline at end of file"]
    body += [f"+{line}" for line in new] + ["\\ No newline at end of file"]
    return f"@@ -1,{len(old)} +1,{len(new)} @@\n" + "".join(f"{line}\n" for line in body)


@pytest.fixture(scope="module")
def real_git_diffs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A cached base, and `git diff --cached` outputs against it written by git itself: an add, a modify with a
    mode change, a rename with edits, a delete; and the same without the delete."""
    root = tmp_path_factory.mktemp("real")
    files = {
        "calc.py": "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n",
        "notes.txt": "old notes\n",
        "old_name.py": "".join(f"VALUE_{i} = {i}\n" for i in range(12)),
    }
    repo = gcd_task.write_tree(root / "repo", files)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    (repo / "calc.py").write_text(files["calc.py"].replace("a - b", "a + b", 1) + "# end\n")
    (repo / "calc.py").chmod(0o755)
    (repo / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    git(repo, "rm", "-q", "notes.txt")
    git(repo, "mv", "old_name.py", "new_name.py")
    (repo / "new_name.py").write_text(files["old_name.py"].replace("VALUE_5 = 5", "VALUE_5 = 50"))
    git(repo, "add", "-A")
    kept = ["calc.py", "helpers.py", "old_name.py", "new_name.py"]
    texts = {"every kind": git(repo, "diff", "--cached"), "no delete": git(repo, "diff", "--cached", "--", *kept)}
    base = workspace.base_tree(gcd_task.make_archive(files, root / "real.tar.gz"), cache_root=root / "cache")
    return base, texts


# --- the tests ------------------------------------------------------------------------------------------------


def test_demo_patches_are_accepted_in_process(bases: dict[str, Path]) -> None:
    for name in DEMO_TASKS:
        for patch in sorted((DEMO / name / "patches").glob("*.diff")):
            text = patch.read_text()
            assert applycheck.libgit2_accepts(parse_diff(text), bases[name]), patch.name
            assert git_refusal(text, bases[name]) is None


@pytest.mark.parametrize("base_name", [*DEMO_TASKS, "gcd", "synthetic"])
def test_fast_path_never_accepts_what_git_refuses(bases: dict[str, Path], base_name: str) -> None:
    base = bases[base_name]
    corpus = (
        (f"{label} / {mutation}", mutated)
        for name, label, text in corpus_texts()
        if name == base_name
        for mutation, mutated in mutations(text, base)
    )
    outcome = run_corpus(corpus, base)
    assert outcome.wrong == []
    # The corpus bites: both verdicts occur, and libgit2 answered for a share of the accepted diffs.
    assert outcome.git_refuses > 10 and outcome.git_accepts > 5 and outcome.fast > 2


#: Backslash lines that libgit2 takes for git's "\\ No newline at end of file" marker and git calls corrupt.
ODD_MARKERS = ["\\", "\\ short", "\\x No newline at end of file"]
#: The ways a generated diff departs from what `git diff` writes; at most one per diff, so that most generated
#: diffs still apply and each departure is tried against diffs that libgit2 accepts.
HUNK_TWISTS = [
    "wrong line",
    "new start",
    "old start",
    "marker",
    "odd marker",
    "no trailing context",
    "no leading context",
    "no context",
    "over the previous hunk",
    "no change",
    "insert at the top",
]
HEADER_TWISTS = ["index", "modes", "new file", "from /dev/null", "rename", "names differ", "no diff --git line"]
PATH_TWISTS = ["trailing slash", "dot part", "double slash", "quoted"]
GENERATED_FILES = ["m.py", "dup.py", "rep.py", "nonl.py", "crlf.py", "pkg/inner.py", "empty.py"]


def section_header(style: str, path: str, other: str) -> list[str]:
    """The header lines of one file's section, in one of the shapes a diff writer (or an agent) produces."""
    git_line, plain = f"diff --git a/{path} b/{path}", [f"--- a/{path}", f"+++ b/{path}"]
    return {
        "plain": [git_line, *plain],
        "index": [git_line, "index 1111111..2222222 100644", *plain],
        "modes": [git_line, "old mode 100644", "new mode 100755", *plain],
        "new file": [git_line, "new file mode 100644", "--- /dev/null", f"+++ b/{path}"],
        "from /dev/null": [git_line, "--- /dev/null", f"+++ b/{path}"],
        "rename": [
            f"diff --git a/{path} b/{other}",
            "similarity index 90%",
            f"rename from {path}",
            f"rename to {other}",
            "index 1111111..2222222 100644",
            f"--- a/{path}",
            f"+++ b/{other}",
        ],
        "names differ": [git_line, f"--- a/{other}", f"+++ b/{other}"],
        "no diff --git line": plain,
        "quoted": [f'diff --git "a/{path}" "b/{path}"', f'--- "a/{path}"', f'+++ "b/{path}"'],
    }[style]


def test_real_git_diffs_and_their_mutations_agree(real_git_diffs: tuple[Path, dict[str, str]]) -> None:
    base, texts = real_git_diffs
    assert "rename from old_name.py" in texts["no delete"] and "old mode 100644" in texts["no delete"]
    assert applycheck.libgit2_accepts(texts["no delete"], base)
    assert not applycheck.libgit2_accepts(texts["every kind"], base)  # a delete: git's to check
    corpus = ((f"{label} / {name}", text) for label, diff in texts.items() for name, text in mutations(diff, base))
    outcome = run_corpus(corpus, base)
    assert outcome.wrong == []
    assert outcome.git_refuses > 10 and outcome.git_accepts > 5 and outcome.fast > 2


@st.composite
def honest_hunks(draw: st.DrawFn, text: str) -> list[Hunk]:
    """One to three hunks over `text` as `git diff` writes them: in order, apart, context on both sides."""
    final_newline = text.endswith("\n") or not text
    lines = text.split("\n")[:-1] if final_newline else text.split("\n")  # CRs stay
    if not lines:
        added = draw(st.lists(st.sampled_from(["new", "a"]), min_size=1, max_size=3))
        return [Hunk(0, 0, 1, 0, [f"+{x}" for x in added]).recounted()]
    hunks, growth, cursor = [], 0, 0
    for _ in range(draw(st.integers(1, 3))):
        if len(lines) - cursor < 2:
            break
        start = draw(st.integers(cursor, len(lines) - 2))
        size = draw(st.integers(2, min(6, len(lines) - start)))
        pre = lines[start : start + size]
        lead = draw(st.integers(1, size - 1))
        trail = draw(st.integers(1, size - lead)) if size - lead > 1 else 1
        removed = pre[lead : size - trail]
        added = draw(st.lists(st.sampled_from(["new", "a", "b", "line3", "two\r"]), min_size=0 if removed else 1))
        body = [f" {x}" for x in pre[:lead]] + [f"-{x}" for x in removed] + [f"+{x}" for x in added]
        body += [f" {x}" for x in pre[size - trail :]]
        if start + size == len(lines) and not final_newline:
            body.append("\\ No newline at end of file")  # the last line is trailing context: on both sides
        hunks.append(Hunk(start + 1, 0, start + 1 + growth, 0, body).recounted())
        growth += len(added) - len(removed)
        cursor = start + size
    return hunks


def twisted(hunks: list[Hunk], twist: str, k: int, draw: st.DrawFn) -> list[Hunk]:
    """`hunks` with hunk `k` departing from what git writes in the way `twist` names."""
    hunk = hunks[k]
    if twist == "wrong line":
        at = draw(st.integers(0, len(hunk.body) - 1))
        hunk = replace(hunk, body=[*hunk.body[:at], hunk.body[at] + "!", *hunk.body[at + 1 :]])
    elif twist == "new start":
        hunk = replace(hunk, new=max(hunk.new + draw(st.sampled_from([-2, -1, 1, 2])), 0))
    elif twist == "old start":
        hunk = replace(hunk, old=max(hunk.old + draw(st.sampled_from([-1, 1])), 0))
    elif twist == "marker":
        at = draw(st.integers(1, len(hunk.body)))
        hunk = replace(hunk, body=[*hunk.body[:at], "\\ No newline at end of file", *hunk.body[at:]])
    elif twist == "odd marker":
        odd = draw(st.sampled_from(ODD_MARKERS))
        body = [odd if line.startswith("\\") else line for line in hunk.body]
        hunk = replace(hunk, body=body if body != hunk.body else [*body, odd])
    elif twist.startswith("no ") and twist.endswith("context"):
        hunk = strip_context(hunk, leading=twist != "no trailing context", trailing=twist != "no leading context")
    elif twist == "no change":
        body = [(" " + line[1:]) if line.startswith("-") else line for line in hunk.body if not line.startswith("+")]
        hunk = replace(hunk, body=body).recounted()
    elif twist == "over the previous hunk":
        post = [" " + line[1:] for line in hunk.body if line[:1] in (" ", "+")]
        middle = len(post) // 2
        again = [*post[:middle], "-" + post[middle][1:], "+again", *post[middle + 1 :]]
        return [*hunks[: k + 1], replace(hunk, old=hunk.new, body=again).recounted(), *hunks[k + 1 :]]
    elif twist == "insert at the top":
        top = Hunk(draw(st.sampled_from([0, 1])), 0, draw(st.sampled_from([0, 1, 2])), 0, ["+top"]).recounted()
        return [top, *hunks]
    return [*hunks[:k], hunk, *hunks[k + 1 :]]


@st.composite
def generated_diffs(draw: st.DrawFn) -> str:
    """One or two file sections over SYNTHETIC files; at most one of them departs from what git writes."""
    paths = draw(st.lists(st.sampled_from(GENERATED_FILES), min_size=1, max_size=2, unique=True))
    twist = draw(st.sampled_from(["none"] * 6 + HUNK_TWISTS + HEADER_TWISTS + PATH_TWISTS))
    which = draw(st.integers(0, len(paths) - 1))
    sections = []
    for index, path in enumerate(paths):
        hunks = draw(honest_hunks(SYNTHETIC[path]))
        style, shown = "plain", path
        if index == which and twist in HUNK_TWISTS:
            hunks = twisted(hunks, twist, draw(st.integers(0, len(hunks) - 1)), draw)
        elif index == which and twist in HEADER_TWISTS:
            style = twist
        elif index == which and twist in PATH_TWISTS:
            style = "quoted" if twist == "quoted" else "plain"
            shown = {"trailing slash": f"{path}/", "dot part": f"./{path}", "double slash": f"x//{path}"}.get(
                twist, path
            )
        other = draw(st.sampled_from(["renamed.py", "m.py", "pkg/inner.py", "pkg/x.py/", "pkg"]))
        sections.append(FilePatch(section_header(style, shown, other), hunks).render())
    return "".join(sections)


@pytest.mark.fuzz
@GENERATED
@given(text=generated_diffs())
def test_generated_diffs_are_never_accepted_in_process_when_git_refuses(bases: dict[str, Path], text: str) -> None:
    base = bases["synthetic"]
    fast = applycheck.libgit2_accepts(text, base)
    event(f"in-process: {fast}")
    if fast:
        assert git_refusal(text, base) is None, text


@pytest.mark.fuzz
@FUZZ
@given(text=diffs())
def test_fuzz_intake_diffs_are_never_accepted_in_process_when_git_refuses(bases: dict[str, Path], text: str) -> None:
    base = bases["synthetic"]
    if applycheck.libgit2_accepts(text, base):
        assert git_refusal(text, base) is None, text


H = "diff --git a/{0} b/{0}\n--- a/{0}\n+++ b/{0}\n"


@pytest.mark.parametrize(
    ("case", "text", "git_says"),
    [
        (
            "a hunk without trailing context must end the file",
            H.format("m.py") + "@@ -3,2 +3,3 @@\n line3\n line4\n+new\n",
            "patch does not apply",
        ),
        (
            "a hunk from line 1 must match at the top",
            H.format("dup.py") + "@@ -1,3 +3,3 @@\n ctx1\n-old\n+new\n ctx2\n",
            "patch does not apply",
        ),
        (
            "a hunk may not match over an earlier hunk's lines",
            H.format("m.py") + "@@ -2,3 +2,3 @@\n line2\n-line3\n+new3\n line4\n"
            "@@ -3,3 +3,3 @@\n new3\n-line4\n+new4\n line5\n",
            "patch does not apply",
        ),
        (
            "a hunk that changes nothing is corrupt",
            H.format("m.py") + "@@ -1,2 +1,2 @@\n line1\n line2\n",
            "corrupt patch",
        ),
        (
            "a new file may not exist",
            "diff --git a/m.py b/m.py\nnew file mode 100644\n--- /dev/null\n+++ b/m.py\n@@ -0,0 +1 @@\n+x\n",
            "already exists",
        ),
        (
            "a path may not end with a slash",
            "diff --git a/pkg/x.py/ b/pkg/x.py/\nnew file mode 100644\n"
            "--- /dev/null\n+++ b/pkg/x.py/\n@@ -0,0 +1 @@\n+x\n",
            "invalid path",
        ),
        (
            "a backslash line must be git's marker",
            H.format("nonl.py") + "@@ -2,2 +2,2 @@\n second\n-last\n\\\n+LAST\n\\\n",
            "corrupt patch",
        ),
        (
            "a deleted file must hold exactly the deleted lines",
            "diff --git a/m.py b/m.py\ndeleted file mode 100644\n--- a/m.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-line1\n",
            "patch does not apply",
        ),
    ],
)
def test_what_libgit2_alone_would_wrongly_accept_goes_to_git(
    bases: dict[str, Path], case: str, text: str, git_says: str
) -> None:
    base = bases["synthetic"]
    assert libgit2_alone(text, base), f"libgit2 now refuses this itself: {case}"
    refusal = git_refusal(text, base)
    assert refusal is not None and git_says in refusal
    assert not applycheck.libgit2_accepts(text, base)
    with pytest.raises(DiffError) as caught:
        workspace.check_applies(text, base)
    assert str(caught.value) == refusal
    assert str(base) not in refusal


def test_refusal_carries_gits_message(bases: dict[str, Path]) -> None:
    base = bases["gcd"]
    stale = gcd_task.make_diff({"gcd/__init__.py": "x = 1\n"}, base={"gcd/__init__.py": "y = 2\n"})
    with pytest.raises(
        DiffError, match=r"does not apply to the base repository: error: patch failed: gcd/__init__\.py"
    ):
        workspace.check_applies(stale, base)


def test_shifted_hunks_that_libgit2_refuses_are_accepted_by_git(bases: dict[str, Path]) -> None:
    base = bases["synthetic"]
    shifted = H.format("m.py") + "@@ -5,3 +5,3 @@\n line3\n-line4\n+four\n line5\n"  # really at line 3
    assert not libgit2_alone(shifted, base)
    workspace.check_applies(shifted, base)


def test_check_repository_is_built_once_next_to_the_base_and_read_only(tmp_path: Path) -> None:
    archive, _ = gcd_task.archives(tmp_path / "in")
    base = workspace.base_tree(archive, cache_root=tmp_path / "cache")
    repo_dir = base.with_name(base.name + ".check.git")
    repo = pygit2.Repository(str(repo_dir))
    assert repo.is_bare
    assert sorted(entry.path for entry in repo.index) == sorted(gcd_task.REPO)
    blob = repo[repo.index["gcd/__init__.py"].id]
    assert blob.data.decode() == gcd_task.BUGGY
    assert all(not path.stat().st_mode & 0o222 for path in [repo_dir, *repo_dir.rglob("*")])
    made = repo_dir.stat().st_mtime_ns
    assert workspace.base_tree(archive, cache_root=tmp_path / "cache") == base
    assert repo_dir.stat().st_mtime_ns == made


def test_checking_leaves_the_check_repository_untouched(bases: dict[str, Path]) -> None:
    base = bases["gcd"]
    repo_dir = base.with_name(base.name + ".check.git")
    before = {path: path.stat().st_mtime_ns for path in repo_dir.rglob("*")}
    for i in range(50):
        text = gcd_task.make_diff({"gcd/__init__.py": gcd_task.FIXED + f"\nVERSION = {i}\n"})
        assert applycheck.libgit2_accepts(text, base)
    assert {path: path.stat().st_mtime_ns for path in repo_dir.rglob("*")} == before


def test_symlinks_in_a_base_are_left_to_git(tmp_path: Path) -> None:
    tree = gcd_task.write_tree(tmp_path / "bases" / "tree", {"pkg/mod.py": "a = 1\n"})
    (tree / "link").symlink_to("pkg")
    (tree / "alias.py").symlink_to("pkg/mod.py")
    applycheck.ensure_check_repo(tree)
    repo = pygit2.Repository(str(tree.with_name("tree.check.git")))
    assert [entry.path for entry in repo.index] == ["pkg/mod.py"]
    through_link = H.format("link/mod.py") + "@@ -1 +1 @@\n-a = 1\n+a = 2\n"
    onto_link = (
        "diff --git a/alias.py b/alias.py\nnew file mode 100644\n--- /dev/null\n+++ b/alias.py\n@@ -0,0 +1 @@\n+x\n"
    )
    under_link = (
        "diff --git a/link/x.py b/link/x.py\nnew file mode 100644\n--- /dev/null\n+++ b/link/x.py\n@@ -0,0 +1 @@\n+x\n"
    )
    for text in (through_link, onto_link, under_link):
        assert not applycheck.libgit2_accepts(text, tree)
        refusal = git_refusal(text, tree)
        assert refusal is not None and ("symbolic link" in refusal or "already exists" in refusal)
        assert check_applies_verdict(text, tree) == refusal


def test_a_tree_without_check_repository_is_checked_by_git(tmp_path: Path) -> None:
    tree = gcd_task.write_tree(tmp_path / "plain", gcd_task.REPO)
    assert not applycheck.libgit2_accepts(gcd_task.fix_diff(), tree)
    workspace.check_applies(gcd_task.fix_diff(), tree)
    stale = gcd_task.make_diff({"gcd/__init__.py": "x = 1\n"}, base={"gcd/__init__.py": "y = 2\n"})
    with pytest.raises(DiffError, match="does not apply"):
        workspace.check_applies(stale, tree)


def test_threads_checking_at_once_get_gits_verdicts(bases: dict[str, Path]) -> None:
    base = bases["gcd"]
    good = gcd_task.fix_diff()
    stale = gcd_task.make_diff({"gcd/__init__.py": "x = 1\n"}, base={"gcd/__init__.py": "y = 2\n"})
    results: list[tuple[bool, bool]] = []

    def check(index: int) -> None:
        for i in range(40):
            text = good if (i + index) % 3 else stale
            results.append((text is good, check_applies_verdict(text, base) is None))

    threads = [threading.Thread(target=check, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 160
    assert all(expected == got for expected, got in results)
