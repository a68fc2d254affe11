"""The review page's diff: files of numbered lines, findings pinned to the new line they name, nothing unescaped."""

from labeling import present
from labeling.present import Finding, render_diff
from tests.labeling.factories import SAMPLE_DIFF

TWO_FILES = """\
diff --git a/a.py b/a.py
--- a/a.py
+++ b/a.py
@@ -10,3 +10,3 @@ def f():
 x = 1
-y = 2
+y = 3
 z = 4
diff --git a/logo.png b/logo.png
Binary files a/logo.png and b/logo.png differ
diff --git a/b.txt b/b.txt
--- a/b.txt
+++ b/b.txt
@@ -1 +1 @@
-old
\\ No newline at end of file
+new
\\ No newline at end of file
"""


def rows(diff_file):
    return [(line.kind, line.old, line.new) for line in diff_file.lines]


def test_lines_carry_old_and_new_numbers_from_their_hunk():
    files, omitted = render_diff(TWO_FILES)
    assert omitted == 0
    assert [f.path for f in files] == ["a.py", "b.txt"]  # the binary file has no lines to show
    assert rows(files[0]) == [
        ("hunk", None, None),
        ("ctx", 10, 10),
        ("del", 11, None),
        ("add", None, 11),
        ("ctx", 12, 12),
    ]
    assert str(files[0].lines[0].html) == "@@ -10,3 +10,3 @@ def f():"
    assert rows(files[1]) == [
        ("hunk", None, None),
        ("del", 1, None),
        ("note", None, None),
        ("add", None, 1),
        ("note", None, None),
    ]
    assert str(files[1].lines[0].html) == "@@ -1 +1 @@"
    assert str(files[1].lines[2].html) == "\\ No newline at end of file"
    assert (files[0].added, files[0].removed, files[1].added, files[1].removed) == (1, 1, 1, 1)


def test_a_finding_is_pinned_to_the_added_or_context_line_it_names():
    lint = Finding("style", "Style", "calc.py", 2, "unused import os")
    elsewhere = Finding("style", "Style", "other.py", 2, "not in this diff")
    files, _ = render_diff(SAMPLE_DIFF, [lint, elsewhere])
    pinned = [(line.kind, line.new) for line in files[0].lines if line.findings]
    assert pinned == [("add", 2)]
    assert files[0].lines[4].findings == [lint]


def test_code_is_highlighted_and_attacker_text_is_escaped():
    diff = SAMPLE_DIFF.replace('# "euclid"', "# <script>alert(1)</script>")
    files, _ = render_diff(diff)
    html = "".join(str(line.html) for line in files[0].lines)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'class="tok-k"' in html  # Pygments coloured the Python keywords


def test_crlf_lines_keep_no_carriage_return():
    files, _ = render_diff(SAMPLE_DIFF.replace("\n", "\r\n"))
    assert files[0].path == "calc.py"
    assert all("\r" not in str(line.html) for line in files[0].lines)
    assert rows(files[0])[1:3] == [("ctx", 1, 1), ("del", 2, None)]


def test_rows_past_the_limit_are_counted_not_shown(monkeypatch):
    monkeypatch.setattr(present, "MAX_DIFF_LINES", 4)
    files, omitted = render_diff(TWO_FILES)
    assert [len(f.lines) for f in files] == [4]
    assert omitted == 1 + 5  # the last row of a.py and all of b.txt


def test_a_diff_unidiff_cannot_read_is_shown_as_escaped_text():
    files, _ = render_diff("--- a/x\n+++ b/x\n@@ -1,5 +1,5 @@\n-a <b>bold</b>\n")  # a hunk shorter than its header
    shown = [line for f in files for line in f.lines]
    assert [line.kind for line in shown] == ["note"] * 4
    assert "&lt;b&gt;bold&lt;/b&gt;" in str(shown[3].html)
