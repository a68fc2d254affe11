"""The warm analyser: pylint and bandit kept loaded in one limited child process, and the patch analysis on top.

Start-up dominates the command-line tools (pylint ~0.8 s, bandit ~0.25 s before reading a line), so `Analyser`
keeps one child process (analyser_worker) with both tools imported and feeds it requests over pipes.
The child reads attacker-written code, so it runs under an address-space limit, a generous CPU limit and a
per-request wall clock; after a timeout, a crash, any error, or `recycle_after` requests it is killed and a fresh
one is started on the next request. Analysis never runs in the caller's process.

`analyse_patch` is what the style and security critics call: it analyses the changed Python files of the base and
the patched tree with one configuration, caching base-tree results per task.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.core.analysis.findings import Finding, FindingDiff, diff_findings
from scoring.core.intake import configread
from scoring.core.intake.configread import ConfigError
from scoring.core.types import ScoringContext
from scoring.core.versions import package_version

#: The fixed configuration patches are judged with unless the task names its own (docs/style-security.md).
REVIEW_PYLINTRC = Path(__file__).with_name("pylintrc_review")
#: Bumped when the worker's output changes meaning, so cached base results from an older worker are not reused.
ANALYSIS_FORMAT = 1
#: A response larger than this is treated as an attack on the parent's memory.
MAX_RESPONSE_BYTES = 64 << 20
#: Options a task's lint configuration may not set: they run code in the analyser (init-hook, plugins, C
#: extensions), change what is reported (output, ignore lists that would hide a changed file), or its process model.
BLOCKED_OPTIONS = frozenset(
    {
        "init-hook",
        "load-plugins",
        "extension-pkg-allow-list",
        "extension-pkg-whitelist",
        "unsafe-load-any-extension",
        "jobs",
        "persistent",
        "output-format",
        "output",
        "reports",
        "score",
        "fail-under",
        "fail-on",
        "exit-zero",
        "ignore",
        "ignore-patterns",
        "ignore-paths",
        "recursive",
        "from-stdin",
        "rcfile",
    }
)


class AnalyserError(RuntimeError):
    """The child failed a request: timed out, crashed, or answered with an error. It has been killed."""


@dataclass(frozen=True)
class FileReport:
    """What the analyser found in one file. `error` is set when the analyser failed on it (nothing was judged).

    `notes` are "skipped: ...", "partial: ...", "huge: ..." and "generated: ..." remarks that lower confidence.
    `statement_lines` are the lines on which a statement starts (what the style score divides by).
    """

    path: str
    pylint: tuple[Finding, ...] = ()
    bandit: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    statement_lines: frozenset[int] = frozenset()
    error: str | None = None

    @property
    def skipped(self) -> bool:
        return self.error is not None or any(note.startswith("skipped") for note in self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "pylint": [finding.to_json() for finding in self.pylint],
            "bandit": [finding.to_json() for finding in self.bandit],
            "notes": list(self.notes),
            "statement_lines": sorted(self.statement_lines),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileReport:
        return cls(
            path=data["path"],
            pylint=tuple(Finding.from_json(item) for item in data.get("pylint", ())),
            bandit=tuple(Finding.from_json(item) for item in data.get("bandit", ())),
            notes=tuple(data.get("notes", ())),
            statement_lines=frozenset(data.get("statement_lines", ())),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class AnalysisReport:
    """One analyser run over some files of one tree; every requested file has an entry."""

    root: str
    files: Mapping[str, FileReport]
    elapsed_s: float = 0.0

    @property
    def errors(self) -> dict[str, str]:
        """The files the analyser failed on, with the reason."""
        return {path: report.error for path, report in self.files.items() if report.error is not None}


def tool_versions() -> dict[str, str]:
    """The versions of the analysis tools, read from package metadata (no import of the tools here)."""
    return {name: package_version(name) for name in ("pylint", "astroid", "bandit")}


class Analyser:
    """Owns one warm analyser child process, started lazily; use as a context manager or call `close()`.

    Not thread-safe: one caller at a time (each Celery worker process owns one Analyser).
    """

    def __init__(self, *, recycle_after: int = 200, timeout_s: float = 30.0, memory_bytes: int = 1 << 30) -> None:
        self.recycle_after = recycle_after
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        #: How many child processes this analyser has started (tests watch recycling through it).
        self.children_started = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = 0
        self._buffer = bytearray()
        self._home = tempfile.TemporaryDirectory(prefix="analyser-")
        self._stderr: Any = None

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None when no child is running."""
        return self._proc.pid if self._proc is not None else None

    def analyse(self, root: Path, files: list[str], *, pylintrc: Path | None) -> AnalysisReport:
        """Analyse `files` (paths relative to `root`) with pylint and bandit in the child; never raises on a failure.

        When a batch fails, each file is retried alone, so one hostile file costs only its own entry: that entry
        carries `error`, the others are analysed normally. `pylintrc=None` means pylint's defaults (no
        configuration file is ever discovered from the tree or the home folder).
        """
        started = time.monotonic()
        try:
            reports = self._analyse_batch(root, files, pylintrc)
        except AnalyserError as exc:
            if len(files) == 1:
                reports = {files[0]: FileReport(path=files[0], error=str(exc))}
            else:
                reports = {}
                for path in files:
                    reports.update(self.analyse(root, [path], pylintrc=pylintrc).files)
        return AnalysisReport(root=str(root), files=reports, elapsed_s=time.monotonic() - started)

    def _analyse_batch(self, root: Path, files: list[str], pylintrc: Path | None) -> dict[str, FileReport]:
        if not files:
            return {}
        request = {"root": str(Path(root).resolve()), "files": files, "pylintrc": str(pylintrc) if pylintrc else None}
        response = self._request(request)
        try:
            return {
                path: FileReport.from_json({"path": path, **response["files"][path], "error": None}) for path in files
            }
        except (KeyError, TypeError, ValueError) as exc:
            self._stop()
            raise AnalyserError(f"analyser answered a malformed report ({exc!r})") from None

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its answer; kill the child on any failure, recycle it when it is due."""
        try:
            if self._proc is not None and self._proc.poll() is not None:
                self._stop()  # died while idle (killed from outside): start afresh rather than fail a request
            if self._proc is None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
            response: dict[str, Any] = json.loads(self._read_line(time.monotonic() + self.timeout_s))
            if not response.get("ok"):
                raise AnalyserError(f"analyser error: {response.get('error', 'no detail')}")
        except (OSError, ValueError, AnalyserError) as exc:
            detail = self._stderr_tail()
            self._stop()
            message = str(exc) if isinstance(exc, AnalyserError) else f"analyser failed: {exc}"
            raise AnalyserError(message + (f" ({detail})" if detail else "")) from None
        self._served += 1
        if self._served >= self.recycle_after:
            self._stop()
        return response

    def _start(self) -> None:
        """Start a fresh child and wait until it has loaded the tools."""
        project_root = Path(__file__).resolve().parents[3]  # scoring/core/analysis/ -> the project
        home = self._home.name
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(project_root),
            "HOME": home,  # no ~/.pylintrc or user configuration of the host leaks in
            "PYLINTHOME": home,
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        # CPU is a backstop for a child that escapes the wall clock; the wall clock is the real per-request limit.
        cpu_s = int(self.timeout_s * (self.recycle_after + 2)) + 60
        self._stderr = tempfile.TemporaryFile(dir=home)  # noqa: SIM115 - lives as long as the child, closed in _stop
        self._buffer.clear()
        self._served = 0
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scoring.core.analysis.analyser_worker",
                f"--memory-bytes={self.memory_bytes}",
                f"--cpu-s={cpu_s}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=home,  # an empty folder: pylint finds no configuration file next to it
            env=env,
            start_new_session=True,
        )
        self.children_started += 1
        ready = json.loads(self._read_line(time.monotonic() + self.timeout_s + 30.0))
        if not ready.get("ready"):
            raise AnalyserError("analyser did not start")

    def _read_line(self, deadline: float) -> bytes:
        """Read one response line from the child before `deadline`, or raise AnalyserError."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AnalyserError(f"analyser timed out after {self.timeout_s:g} s and was killed")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self._proc.wait(timeout=5)
                raise AnalyserError(f"analyser exited with code {code}")
            self._buffer += chunk
            if len(self._buffer) > MAX_RESPONSE_BYTES:
                raise AnalyserError("analyser response too large")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return line

    def _stderr_tail(self) -> str:
        """The last line the child wrote to stderr (usually why it crashed), for the error message."""
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError):
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 400))
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
            return lines[-1] if lines else ""
        return ""

    def _stop(self) -> None:
        """Kill the child (it holds no state worth a graceful exit) and forget it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]  # the pipe was opened above
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Stop the child and remove its private folder; the analyser can not be used afterwards."""
        self._stop()
        self._home.cleanup()

    def __enter__(self) -> Analyser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- The patch analysis shared by the style and security critics ------------------------------------------------


@dataclass(frozen=True)
class ChangedFile:
    """One changed Python file: its base report (None when the patch adds it) and its patched report."""

    path: str
    base: FileReport | None
    patched: FileReport
    added_lines: frozenset[int]


#: How much a note on a changed file lowers a critic's confidence (multiplied in, the worst note per file counts).
NOTE_CONFIDENCE = {"huge": 0.75, "generated": 0.6, "partial": 0.5, "skipped": 0.4}


@dataclass(frozen=True)
class PatchAnalysis:
    """The analysis of a patch's changed Python files, and the lint configuration it used."""

    files: tuple[ChangedFile, ...]
    config: str
    config_notes: tuple[str, ...] = ()
    lint_config_edited: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[ChangedFile, ...]:
        """Files the analyser failed on in the patched tree (timeout, crash) while the base was fine or absent.

        The patch made the judge fail on them, so the critics give them no credit.
        """
        return tuple(
            item
            for item in self.files
            if item.patched.error is not None and (item.base is None or item.base.error is None)
        )

    def diffs(self, tool: str) -> dict[str, FindingDiff]:
        """Per analysed file, the `tool` ("pylint" or "bandit") findings the patch introduced and fixed.

        A file whose base analysis failed is compared against nothing: every finding on an added line counts.
        """
        result = {}
        for item in self.files:
            if item.patched.skipped:
                continue
            base = item.base if item.base is not None and item.base.error is None else None
            result[item.path] = diff_findings(
                getattr(base, tool) if base else (), getattr(item.patched, tool), item.added_lines
            )
        return result

    def caveats(self) -> list[tuple[float, str]]:
        """Why a score resting on this analysis is less certain: (confidence factor, sentence) per affected file."""
        caveats = []
        for item in self.files:
            notes = [*item.patched.notes, *(item.base.notes if item.base else ())]
            if item.base is not None and item.base.error is not None:
                notes.append(f"partial: the base version could not be analysed ({item.base.error})")
            factors = {note: NOTE_CONFIDENCE[kind] for note in notes if (kind := note.split(":")[0]) in NOTE_CONFIDENCE}
            if factors:
                worst = min(factors, key=factors.__getitem__)
                caveats.append((factors[worst], f"{item.path}: {worst}"))
        return caveats

    def confidence(self, full: float) -> float:
        """`full`, lowered by the worst caveat of each changed file and by a fallback from the task's config."""
        value = full
        for factor, _ in self.caveats():
            value *= factor
        if self.config_notes:
            value *= 0.8
        return round(value, 4)


def python_files(ctx: ScoringContext) -> list[str]:
    """The changed files that are Python source, in the order the patch lists them."""
    return [path for path in ctx.changed_files if path.endswith(".py")]


def analyse_patch(ctx: ScoringContext) -> PatchAnalysis:
    """Analyse the changed Python files in the base and patched trees with the same configuration.

    Uses `ctx.analyser`; when it is None (a one-off `score_patch`), a short-lived Analyser is started from
    `ctx.settings` and closed afterwards, which costs the tools' start-up once more. Base results come from the
    per-task cache when the file, the tools and the configuration are unchanged.
    """
    paths = python_files(ctx)
    rcfile, config, notes = lint_configuration(ctx)
    edited = lint_config_edits(ctx)
    if not paths:
        return PatchAnalysis(files=(), config=config, config_notes=notes, lint_config_edited=edited)
    key = _patch_key(ctx, paths, rcfile)
    if key in _LAST_PATCH:
        return _LAST_PATCH[key]
    with _analyser_for(ctx) as analyser:
        patched = analyser.analyse(ctx.patched_dir, paths, pylintrc=rcfile)
        in_base = [path for path in paths if (ctx.base_dir / path).is_file()]
        base = base_reports(ctx, analyser, in_base, rcfile)
    files = tuple(
        ChangedFile(
            path=path,
            base=base.get(path),
            patched=patched.files[path],
            added_lines=frozenset(ctx.added_lines.get(path, ())),
        )
        for path in paths
    )
    analysis = PatchAnalysis(files=files, config=config, config_notes=notes, lint_config_edited=edited)
    _LAST_PATCH.clear()
    _LAST_PATCH[key] = analysis
    return analysis


#: The last patch analysed in this process: the security critic reuses what the style critic just computed.
_LAST_PATCH: dict[str, PatchAnalysis] = {}


def _patch_key(ctx: ScoringContext, paths: Sequence[str], rcfile: Path) -> str:
    """What determines a patch analysis: both trees, the files the patch touched with their contents, the config."""
    digest = hashlib.sha256()
    for part in (ctx.base_dir, ctx.patched_dir, rcfile, *ctx.deleted_files, *sorted(ctx.changed_files)):
        digest.update(f"{part}\0".encode())
    for path in paths:
        target = ctx.patched_dir / path
        readable = target.is_file() and not target.is_symlink()
        digest.update(target.read_bytes() if readable else b"\0unreadable")
        digest.update(repr(sorted(ctx.added_lines.get(path, ()))).encode())
    digest.update(rcfile.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _analyser_for(ctx: ScoringContext) -> Iterator[Analyser]:
    """Yield the pipeline's shared analyser, or a short-lived one that is closed on exit."""
    if ctx.analyser is not None:
        yield ctx.analyser
        return
    settings = ctx.settings
    with Analyser(
        recycle_after=settings.analyser_recycle_after,
        timeout_s=settings.analyser_timeout_s,
        memory_bytes=settings.analyser_memory_bytes,
    ) as analyser:
        yield analyser


def base_reports(ctx: ScoringContext, analyser: Analyser, paths: Sequence[str], rcfile: Path) -> dict[str, FileReport]:
    """Base-tree reports of `paths`, from the per-task cache where possible; fresh successful ones are cached.

    A cache entry is keyed by the file's path and sha256, the tool versions and the configuration's sha256, and
    written atomically (temporary file, then rename), so concurrent workers never read half an entry.
    """
    cache_dir = ctx.task_cache_dir / "analysis"
    config_sha = hashlib.sha256(rcfile.read_bytes()).hexdigest()
    versions = tool_versions()
    reports: dict[str, FileReport] = {}
    keys: dict[str, Path] = {}
    for path in paths:
        file_sha = hashlib.sha256((ctx.base_dir / path).read_bytes()).hexdigest()
        identity = json.dumps([ANALYSIS_FORMAT, path, file_sha, versions, config_sha])
        keys[path] = cache_dir / f"{hashlib.sha256(identity.encode()).hexdigest()}.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            reports[path] = FileReport.from_json(json.loads(keys[path].read_text()))
    missing = [path for path in paths if path not in reports]
    fresh = analyser.analyse(ctx.base_dir, missing, pylintrc=rcfile).files if missing else {}
    for path, report in fresh.items():
        reports[path] = report
        if report.error is None:
            atomic_write(keys[path], json.dumps(report.to_json()))
    return reports


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def lint_configuration(ctx: ScoringContext) -> tuple[Path, str, tuple[str, ...]]:
    """The rcfile to judge with, a label for the rationale, and notes on any fallback.

    The task's `lint_config` is read from the BASE tree only (a path relative to its root), never from the patched
    tree; options that could run code or hide files are dropped (BLOCKED_OPTIONS) and the rest rewritten as a
    plain rcfile in the task cache. Without one, or when it cannot be read, the review configuration applies.
    """
    name = getattr(ctx.spec, "lint_config", None)
    review = (REVIEW_PYLINTRC, "the review configuration", ())
    if not name:
        return review
    base = ctx.base_dir.resolve()
    source = (base / name).resolve()
    if not source.is_relative_to(base) or not source.is_file():
        return (
            REVIEW_PYLINTRC,
            "the review configuration",
            (f"lint_config {name} is not a file in the base tree; the review configuration applies",),
        )
    try:
        options = read_pylint_options(source)
    except ConfigError as exc:
        return (
            REVIEW_PYLINTRC,
            "the review configuration",
            (f"lint_config {name} could not be read (it {exc}); the review configuration applies",),
        )
    dropped = sorted(option for option in options if option in BLOCKED_OPTIONS)
    lines = ["[MAIN]"] + [f"{key}={value}" for key, value in options.items() if key not in BLOCKED_OPTIONS]
    text = "\n".join(lines) + "\n"
    target = ctx.task_cache_dir / f"pylintrc-task-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if not target.exists():
        atomic_write(target, text)
    notes = (f"lint_config options ignored for safety: {', '.join(dropped)}",) if dropped else ()
    return target, f"the task's lint configuration ({name}, from the base tree)", notes


def read_pylint_options(path: Path) -> dict[str, str]:
    """The pylint options in a pylintrc, setup.cfg, tox.ini or pyproject.toml, read the way pylint reads them.

    Raises configread.ConfigError (a ValueError) when the file is missing or cannot be read, whatever it holds.
    """
    options: dict[str, str] = {}
    text = configread.read_text(path, encoding="utf-8-sig")
    if text is None:
        raise ConfigError("is not a file")
    if path.suffix == ".toml":
        pylint_table = configread.table(configread.load_toml(text), "tool", "pylint")
        for key, value in pylint_table.items():
            for option, raw in value.items() if isinstance(value, dict) else [(key, value)]:
                options[option] = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    else:
        only_pylint_sections = path.name in ("setup.cfg", "tox.ini")
        for section, items in configread.configparser_sections(text, inline_comments=True).items():
            if not only_pylint_sections or section.startswith("pylint"):
                options.update(items)
    return {key.replace("_", "-").lower(): " ".join(value.split()) for key, value in options.items()}


#: Files that configure pylint wherever they sit; a patch that edits one is trying to change its own judge.
LINT_CONFIG_NAMES = frozenset({"pylintrc", ".pylintrc"})


def lint_config_edits(ctx: ScoringContext) -> tuple[str, ...]:
    """The changed files that are lint configuration: the task's lint_config, any pylintrc, or pylint settings
    edited inside pyproject.toml / setup.cfg / tox.ini (compared between the base and patched trees)."""
    task_config = getattr(ctx.spec, "lint_config", None)
    edited = []
    for path in ctx.changed_files:
        name = Path(path).name
        if name in ("pyproject.toml", "setup.cfg", "tox.ini"):
            changed = _pylint_section(ctx.base_dir / path) != _pylint_section(ctx.patched_dir / path)
        else:
            changed = path == task_config or name in LINT_CONFIG_NAMES
        if changed:
            edited.append(path)
    return tuple(edited)


def _pylint_section(path: Path) -> dict[str, str] | str:
    """The pylint options a configuration file holds ({} when it is missing), or why it cannot be read: a file
    made unreadable is an edit too, never "absent"."""
    if not path.is_file():
        return {}
    try:
        return read_pylint_options(path)
    except ConfigError as exc:
        return str(exc)
