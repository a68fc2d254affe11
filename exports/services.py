"""Label exports: human-corrected labels as JSONL that trainers load without glue, each file with a manifest.

Five formats (docs/exports.md has an example row of each), for three audiences:

- `sft`: one chat per labelled patch, built by scoring.core.learned.prompt.sft_row (the one prompt builder that
  training and inference also call), teaching the reviewers' consensus; with `with_execution` a second row per
  patch teaches the execution-graded verdict (`source: "execution"`).
- `pairwise`: two labelled patches of the same task whose human final scores differ by at least `min_margin`.
- `raw`: every finished patch with its automatic Result and every label event, reviewers pseudonymised. For
  admins only: it keeps hidden test names, output and tracebacks, every client's diffs and external ids, and its
  manifest says so (`audience: admin`).
- `raw-safe`: the same rows for a trainer: hidden-test evidence reduced to counts, no external ids.
- `discriminator`: one row per input on which the discriminator judged a patch ("given the task, the patch and
  this call, does the patch agree with the reference?"), labelled with what execution found. For training this
  service's own critic (`audience: critic`), never for a client: the rows of honest patches give the reference's
  answers on the inputs every patch of the task is checked on.

`sft`, `pairwise`, `raw-safe` (`audience: trainer`) and `discriminator`: every string of their rows goes through
`HiddenScrub`, which takes out what names or quotes a task's hidden tests (test names, file names, source lines,
output), wherever it appears (a reviewer's comment that quotes a hidden test, a rationale step). With `client`,
an export holds that client's patches only, so the file can be handed to that client.

Writes stream: the patches are read in chunks and written a line at a time, so memory does not grow with the
number of rows. Only labels created at or before the cut-off are read, so a re-export with the same cut-off gives
the same file however many labels arrived since.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from functools import lru_cache
from importlib import metadata
from itertools import groupby
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from exports.parquet import parquet_path, write_parquet
from labeling.models import ExportJob, LabelEvent
from labeling.selectors import human_consensus, latest_labels
from scoring import queueing, storage
from scoring.conf import pipeline_settings
from scoring.core.critics import discriminator
from scoring.core.critics.registry import CRITERIA
from scoring.core.learned.prompt import DIFF_CHAR_BUDGET, discriminator_row, pairwise_row, sft_row, system_prompt
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.core.sandbox import workspace
from scoring.models import JUDGED_STATUSES, Evaluation, Patch, PatchStatus, Task
from scoring.selectors import critic_input, patch_result, spec_for_outsiders, tools_comments

FORMATS: tuple[str, ...] = ("sft", "pairwise", "raw", "raw-safe", "discriminator")

#: Who may read each format. "trainer" files carry nothing of the hidden tests nor more of the reference's
#: behaviour than the Result shows; "critic" files carry the discriminator's per-input verdicts (the operator's
#: own critic training); "admin" files carry everything. Only "admin" files skip HiddenScrub.
AUDIENCE: dict[str, str] = {
    "sft": "trainer",
    "pairwise": "trainer",
    "raw": "admin",
    "raw-safe": "trainer",
    "discriminator": "critic",
}

WITHHELD = "[withheld]"

_AUDIENCE_NOTE = {
    "admin": "for admins only, never for a trainer: holds hidden test names, source quoted in tracebacks and output, "
    "and every client's diffs and external ids",
    "trainer": "safe to hand to a trainer: hidden test names, files, source lines and output are withheld wherever "
    "they appeared, hidden-test evidence is counts only, no external ids",
    "critic": "for training this service's own critic, never for a client or an agent's trainer: each row says "
    "whether a patch agrees with the reference on one of its task's generated inputs, so the rows of honest patches "
    "give the reference's answers on inputs every later patch of the task is checked on; hidden test names, files, "
    "source lines and output are withheld, and no row holds the reference's source",
}

#: Share of tasks (by the hash of their name) whose rows go to the `val` split.
VAL_SHARE = 0.2

#: Default minimum difference of human final scores between the two patches of a pairwise row.
DEFAULT_MIN_MARGIN = 0.2

SPLIT_RULE = (
    f"by task: a task is 'val' when the first 8 bytes of sha256('reviewapp-split:' + task name), read as a "
    f"fraction of 2**64, are below {VAL_SHARE}, else 'train'. When an export has two or more tasks and they all "
    "fell on one side, the task with the lowest hash goes to 'val' (or, if all were 'val', the one with the "
    "highest hash to 'train'). A task is never in both splits."
)

_CHUNK = 200  # patches per database round trip; bounds memory together with the diff cache below
_DIFF_CACHE = 128  # diffs kept while pairing the patches of one task
_PROGRESS_EVERY = 100  # patches between progress callbacks
_EXPORTABLE = JUDGED_STATUSES | {PatchStatus.REJECTED}

Progress = Callable[[int, int], None]  # (patches done, patches total)


class ExportError(ValueError):
    """Bad export input (format, margin, output path); the message says what to change."""


def manifest_path(out: Path) -> Path:
    """Where the manifest of the export `out` goes: `out` + `.manifest.json`."""
    return out.with_name(out.name + ".manifest.json")


def task_split(names: Iterable[str]) -> dict[str, str]:
    """The split ("train" / "val") of each task in one export, by SPLIT_RULE. Deterministic; no task in both."""
    buckets = {name: _bucket(name) for name in set(names)}
    split = {name: "val" if bucket < VAL_SHARE else "train" for name, bucket in buckets.items()}
    if len(split) >= 2 and len(set(split.values())) == 1:
        # A small export would otherwise have no validation rows (or no training rows) at all.
        order = sorted(buckets, key=lambda name: (buckets[name], name))
        if "val" not in split.values():
            split[order[0]] = "val"
        else:
            split[order[-1]] = "train"
    return split


def _bucket(name: str) -> float:
    digest = hashlib.sha256(f"reviewapp-split:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def reviewer_pseudonym(reviewer_id: int) -> str:
    """A stable pseudonym for a reviewer: an HMAC of their id keyed with SECRET_KEY, never the username.

    Stable across exports of one deployment (so agreement can be studied), not reversible without the key.
    """
    digest = hmac.new(settings.SECRET_KEY.encode(), f"reviewer:{reviewer_id}".encode(), hashlib.sha256)
    return f"reviewer-{digest.hexdigest()[:16]}"


# --- what a trainer must not read -------------------------------------------------------------------------

_MIN_NAME = 6  # a test or file name shorter than this is too common a word to withhold everywhere
_MIN_LINE = 16  # a source or output line shorter than this says nothing about the hidden tests
#: Keys of hidden-test evidence whose text names or quotes the tests; the rest hold counts and fixed words.
_TEXT_KEYS = frozenset({"name", "output", "runs_apart"})
_TEST_NAME = re.compile(rf"\b(?:def|class)\s+(\w{{{_MIN_NAME},}})")


def _hidden_evidence(evaluation: Evaluation) -> Any:
    """The hidden-test part of an evaluation's correctness evidence (names, outcomes, output), or None."""
    return ((evaluation.subscores.get("correctness") or {}).get("evidence") or {}).get("hidden")


def _hidden_strings(value: Any) -> Iterator[str]:
    """The texts in hidden-test evidence worth withholding: test names (whole and each part), the lines of their
    output, and the names listed in lists."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend((str(k), v) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend(("[]", v) for v in item)
        elif isinstance(item, str) and (key in _TEXT_KEYS or key == "[]"):
            yield from _lines(item) if key == "output" else _name_parts(item)


def _name_parts(name: str) -> Iterator[str]:
    """A test id and its parts: `hidden/test_x.py::TestY::test_z[1]` gives itself, `test_x.py`, `test_x`, `TestY`,
    `test_z[1]` and `test_z` (folder names are left alone: "hidden" or "tests" are everyday words)."""
    name = name.strip()
    if len(name) >= _MIN_NAME:
        yield name
    first, *rest = name.split("::")
    base = first.rsplit("/", 1)[-1]
    for piece in (base, base.removesuffix(".py"), *rest, *(part.split("[", 1)[0] for part in rest)):
        if len(piece) >= _MIN_NAME:
            yield piece


def _lines(text: str, *, common: frozenset[str] = frozenset()) -> Iterator[str]:
    """The lines of `text` long enough to quote something, not imports, not in `common` (the base tree's lines)."""
    for line in text.splitlines():
        line = line.strip()
        if len(line) < _MIN_LINE or not any(c.isalnum() for c in line) or line in common:
            continue
        if line.startswith(("import ", "from ")):
            continue
        yield line


class HiddenScrub:
    """Takes out of a trainer-facing row every text that names or quotes the hidden tests of its task.

    Per task, once: the hidden archive's file names, its test function and class names and its source lines.
    Per row: the hidden evidence of the patch it came from (test names, output excerpts), which the row builders
    hand over under `_hidden_evidence` (removed here). Every string of the row, keys included, has each of those
    texts replaced by WITHHELD, longest first; the row's `task` name stays, being the task's public name.
    """

    def __init__(self) -> None:
        self._task_texts: dict[str, frozenset[str]] = {}

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        evidence = row.pop("_hidden_evidence", None)
        texts = self._texts_of_task(str(row.get("task", ""))) | frozenset(_hidden_strings(evidence))
        texts -= {row.get("task")}
        if not texts:
            return row
        pattern = _pattern(texts)
        return {key: _replace(value, pattern) if key != "task" else value for key, value in row.items()}

    def _texts_of_task(self, name: str) -> frozenset[str]:
        if name not in self._task_texts:
            task = Task.objects.filter(name=name).only("hidden_sha256", "base_sha256").first()
            self._task_texts[name] = frozenset(_archive_texts(task) if task else ())
        return self._task_texts[name]


@lru_cache(maxsize=256)
def _pattern(texts: frozenset[str]) -> re.Pattern[str]:
    """One regular expression for all of `texts`, longest first (rows of one task mostly share theirs)."""
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=lambda t: (-len(t), t))))


def _archive_texts(task: Task) -> Iterator[str]:
    """File names, test names and source lines of a task's hidden tests; lines the base tree also has stay."""
    hidden = _tree(task.hidden_sha256, strip_root=False)
    if hidden is None:
        return
    base = _tree(task.base_sha256, strip_root=True)
    common = frozenset(_lines("\n".join(_read(p) for p in base.rglob("*") if p.is_file()))) if base else frozenset()
    for path in sorted(hidden.rglob("*")):
        if path.is_file():
            source = _read(path)
            yield from _name_parts(path.relative_to(hidden).as_posix())
            yield from _TEST_NAME.findall(source)
            yield from _lines(source, common=common)


def _tree(sha256: str, *, strip_root: bool) -> Path | None:
    """The extracted (cached) tree of a stored archive, or None when there is none."""
    if not sha256 or not storage.archive_path(sha256).exists():
        return None
    return workspace.base_tree(
        storage.archive_path(sha256), cache_root=pipeline_settings().cache_root, strip_root=strip_root, sha256=sha256
    )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.stat().st_size <= 1 << 20 else ""


def _replace(value: Any, pattern: re.Pattern[str]) -> Any:
    """`value` with every match of `pattern` in its strings (and mapping keys) replaced by WITHHELD."""
    if isinstance(value, str):
        return pattern.sub(WITHHELD, value)
    if isinstance(value, Mapping):
        return {_replace(k, pattern): _replace(v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace(v, pattern) for v in value]
    return value


# --- selection --------------------------------------------------------------------------------------------


def _labels(*, cutoff: datetime, include_demo: bool) -> QuerySet[LabelEvent]:
    labels = LabelEvent.objects.filter(created_at__lte=cutoff)
    if not include_demo:
        labels = labels.filter(is_demo=False, patch__is_demo=False, patch__task__is_demo=False)
    return labels


def _patches(*, fmt: str, cutoff: datetime, include_demo: bool, client: Any = None) -> QuerySet[Patch]:
    """The patches an export reads, in (task, id) order, with their labels (up to the cut-off) and evaluations.

    With `client`, only that client's patches (so no pair or row mixes in another client's diff).
    """
    labels = _labels(cutoff=cutoff, include_demo=include_demo)
    labelled = Exists(labels.filter(patch=OuterRef("pk")))
    patches = Patch.objects.filter(created_at__lte=cutoff)
    if client is not None:
        patches = patches.filter(client=client)
    if not include_demo:
        patches = patches.filter(is_demo=False, task__is_demo=False)
    raw = fmt in ("raw", "raw-safe", "discriminator")  # every finished patch, labelled or not
    patches = patches.filter(labelled | Q(status__in=_EXPORTABLE)) if raw else patches.filter(labelled)
    patches = patches.defer("metadata", *(["diff"] if fmt == "pairwise" else []))  # pairs fetch diffs as needed
    return (
        patches.select_related("task")
        .prefetch_related(
            Prefetch("label_events", queryset=labels.order_by("id"), to_attr="label_list"),
            Prefetch(
                "evaluations",
                queryset=Evaluation.objects.select_related("weight_profile")
                .defer("weight_profile__weights", "weight_profile__perf_knots")
                .order_by("id"),
                to_attr="all_evaluations",
            ),
        )
        .order_by("task__name", "id")
    )


def _use_evaluation(patch: Patch) -> Evaluation | None:
    """Point patch_result at the evaluation to export: the current pipeline version's, else the latest one.

    Labels made under an older pipeline version keep their evaluation, which is what the reviewer corrected.
    """
    evaluations = patch.all_evaluations  # type: ignore[attr-defined]  # set by Prefetch(to_attr=...) in _patches
    current = [e for e in evaluations if e.pipeline_version == PIPELINE_VERSION] or evaluations[-1:]
    # The prefetch hook scoring.selectors.current_evaluation reads.
    patch.current_evaluations = current  # type: ignore[attr-defined]  # set by Prefetch(to_attr=...), read as one
    return current[0] if current else None


# --- writing ----------------------------------------------------------------------------------------------


class _Writer:
    """JSONL into a temporary file next to `out`, hashed and counted as it goes; `commit` moves it into place."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.part = out.with_name(f".{out.name}.part")
        self.handle = self.part.open("wb")
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.counts: Counter[str] = Counter()
        self.by_source: dict[str, Counter[str]] = defaultdict(Counter)
        self.tasks: dict[str, set[str]] = defaultdict(set)

    def write(self, row: Mapping[str, Any]) -> None:
        line = (json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode()
        self.handle.write(line)
        self.sha256.update(line)
        self.bytes += len(line)
        self.counts[row["split"]] += 1
        if "source" in row:
            self.by_source[row["source"]][row["split"]] += 1
        self.tasks[row["split"]].add(row["task"])

    def commit(self) -> None:
        self.handle.close()
        os.replace(self.part, self.out)

    def abort(self) -> None:
        self.handle.close()
        self.part.unlink(missing_ok=True)


class _Seen:
    """Versions met while exporting, for the manifest."""

    def __init__(self) -> None:
        self.pipeline_versions: set[str] = set()
        self.weight_profiles: set[str] = set()
        self.label_profile_versions: set[int] = set()
        self.tools: dict[str, set[str]] = defaultdict(set)
        self.skipped: Counter[str] = Counter()

    def note(self, patch: Patch, evaluation: Evaluation | None) -> None:
        if evaluation is not None:
            self.pipeline_versions.add(evaluation.pipeline_version)
            self.weight_profiles.add(f"{evaluation.weight_profile.name} v{evaluation.weight_profile.version}")
            for tool, version in (evaluation.meta.get("tools") or {}).items():
                self.tools[str(tool)].add(str(version))
        self.label_profile_versions.update(
            e.weight_profile_version
            for e in patch.label_list  # type: ignore[attr-defined]  # set by Prefetch(to_attr=...) in _patches
            if e.weight_profile_version is not None
        )


def export_labels(
    *,
    fmt: str,
    out: Path,
    include_demo: bool = False,
    cutoff: datetime | None = None,
    min_margin: float = DEFAULT_MIN_MARGIN,
    with_execution: bool = False,
    client: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the export `fmt` to `out` (JSONL) and its manifest to `manifest_path(out)`; return the manifest.

    Only labels created at or before `cutoff` (default: now) count, and only patches created by then.
    Demo data (demo labels, patches or tasks) only with `include_demo`; with `client` (a user), only that client's
    patches. The file appears whole or not at all. Raises ExportError on bad input.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 0.0 < min_margin <= 1.0:
        raise ExportError(f"min_margin must be in (0, 1], got {min_margin}")
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out} is a directory; give a file path such as {out / (fmt + '.jsonl')}")
    exported_at = timezone.now()
    cutoff = cutoff or exported_at
    if cutoff > exported_at:
        # A cut-off in the future would let labels made after this export into a re-export with the same one.
        raise ExportError(f"the cut-off {cutoff.isoformat()} is in the future; give a past moment or none")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = _Writer(out)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from exc
    patches = _patches(fmt=fmt, cutoff=cutoff, include_demo=include_demo, client=client)
    writers: dict[str, Callable[..., Iterator[dict[str, Any]]]] = {
        "sft": _sft_rows,
        "pairwise": _pairwise_rows,
        "raw": _raw_rows,
        "raw-safe": _raw_safe_rows,
        "discriminator": _discriminator_rows,
    }
    rows = writers[fmt]
    options: dict[str, Any] = {"min_margin": min_margin, "with_execution": with_execution}
    seen = _Seen()
    scrub = HiddenScrub() if AUDIENCE[fmt] != "admin" else None
    try:
        splits = task_split(patches.order_by().values_list("task__name", flat=True).distinct())
        total = patches.count()
        for row in rows(_counted(patches, total, progress), splits=splits, seen=seen, **options):
            writer.write(scrub.row(row) if scrub is not None else row)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    if progress is not None:
        progress(total, total)
    manifest = _manifest(
        fmt=fmt,
        out=out,
        writer=writer,
        seen=seen,
        filters={
            "include_demo": include_demo,
            "client": getattr(client, "username", None),
            **_format_filters(fmt, options),
        },
        cutoff=cutoff,
        exported_at=exported_at,
        patches=total,
    )
    manifest["parquet"] = write_parquet(out, parquet_path(out))
    manifest_path(out).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _format_filters(fmt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that shaped this format's rows, for the manifest."""
    if fmt == "sft":
        return {"with_execution": options["with_execution"]}
    if fmt == "pairwise":
        return {"min_margin": options["min_margin"]}
    return {}


def _counted(patches: QuerySet[Patch], total: int, progress: Progress | None) -> Iterator[Patch]:
    """Stream the patches in chunks, reporting progress every few of them."""
    for done, patch in enumerate(patches.iterator(chunk_size=_CHUNK), start=1):
        yield patch
        # The prefetched labels point back at their patch; dropping them breaks that cycle, so each patch is
        # freed by reference counting at once instead of piling up until the cyclic collector runs.
        for name in ("label_list", "all_evaluations", "current_evaluations"):
            patch.__dict__.pop(name, None)
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, total)


def _labelled(patch: Patch, seen: _Seen) -> dict[str, Any] | None:
    """The reviewers' consensus on a patch, or None when a reviewer marked the task broken (no signal)."""
    if any(label.task_broken for label in latest_labels(patch)):
        seen.skipped["task_broken"] += 1
        return None
    return human_consensus(patch)


def _sft_rows(patches: Iterable[Patch], *, splits: Mapping[str, str], seen: _Seen, with_execution: bool, **_):
    """One `human` row per labelled patch, plus an `execution` row with `with_execution`."""
    for patch in patches:
        evaluation = _use_evaluation(patch)
        if evaluation is None:
            seen.skipped["no_evaluation"] += 1
            continue
        human = _labelled(patch, seen)
        if human is None:
            continue
        seen.note(patch, evaluation)
        task, diff, result = critic_input(patch)
        extra = {
            "patch": patch.pk,
            "labels": human["labels"],
            "human_final": _number(human["final_score"]),
            "pipeline_version": evaluation.pipeline_version,
        }
        common: dict[str, Any] = {
            "task": task,
            "diff": diff,
            "result": result,
            "split": splits[patch.task.name],
            "criteria": CRITERIA,
        }
        subscores = {name: _number(human["subscores"].get(name)) for name in CRITERIA}
        extra["_hidden_evidence"] = _hidden_evidence(evaluation)  # what HiddenScrub takes out; dropped there
        yield sft_row(**common, subscores=subscores, comment=human["comment"], source="human", extra=extra)
        if with_execution:
            measured = {name: _number((result["subscores"].get(name) or {}).get("score")) for name in CRITERIA}
            comment = tools_comments(evaluation.meta, evaluation.comments)
            yield sft_row(**common, subscores=measured, comment=comment, source="execution", extra=extra)


def _pairwise_rows(patches: Iterable[Patch], *, splits: Mapping[str, str], seen: _Seen, min_margin: float, **_):
    """Per task, every pair of labelled patches whose human final scores differ by at least `min_margin`."""

    @lru_cache(maxsize=_DIFF_CACHE)
    def diff_of(patch_id: int) -> str:
        return Patch.objects.values_list("diff", flat=True).get(pk=patch_id)

    for _task_id, group in groupby(patches, key=lambda p: p.task_id):
        ranked: list[tuple[float, int]] = []
        task: Task | None = None
        for patch in group:
            task = patch.task
            human = _labelled(patch, seen)
            if human is not None and human["final_score"] is not None:
                seen.note(patch, _use_evaluation(patch))
                ranked.append((-human["final_score"], patch.pk))
        ranked.sort()  # best first; ties by id, so the file is deterministic
        if task is None:  # groupby gives no empty group
            continue
        diff_of.cache_clear()
        for i, (chosen_neg, chosen) in enumerate(ranked):
            for rejected_neg, rejected in ranked[i + 1 :]:
                # Rounded, so a margin of exactly `min_margin` counts whatever the float error.
                if round(rejected_neg - chosen_neg, 6) < min_margin:
                    continue
                yield pairwise_row(
                    task=task.spec,
                    chosen_diff=diff_of(chosen),
                    rejected_diff=diff_of(rejected),
                    chosen_score=-chosen_neg,
                    rejected_score=-rejected_neg,
                    split=splits[task.name],
                    extra={"chosen_patch": chosen, "rejected_patch": rejected},
                )


def _discriminator_rows(patches: Iterable[Patch], *, splits: Mapping[str, str], seen: _Seen, **_):
    """Per finished patch, one row per input verdict the discriminator kept (evidence["discriminator"]).

    The label is what the sandboxed run and the harness's comparison found; the prompt is the task, the diff and
    the call, never the Result (its rationale cites the counterexamples). Nothing here reads the reference: rows
    hold the patch's diff and the generated call, not the reference's source nor its answers.
    """
    for patch in patches:
        evaluation = _use_evaluation(patch)
        if evaluation is None:
            seen.skipped["no_evaluation"] += 1
            continue
        if any(label.task_broken for label in latest_labels(patch)):
            seen.skipped["task_broken"] += 1
            continue
        verdict = ((evaluation.subscores.get("correctness") or {}).get("evidence") or {}).get("discriminator") or {}
        verdicts = verdict.get(discriminator.INPUT_VERDICTS) or []
        if not verdict.get("ran") or not verdicts:
            seen.skipped["no_discriminator"] += 1
            continue
        seen.note(patch, evaluation)
        extra = {
            "patch": patch.pk,
            "pipeline_version": evaluation.pipeline_version,
            "seed": verdict.get("seed"),
            "_hidden_evidence": _hidden_evidence(evaluation),  # what HiddenScrub takes out; dropped there
        }
        for item in verdicts:
            yield discriminator_row(
                task=spec_for_outsiders(patch.task.spec),
                diff=patch.diff,
                entry=str(item["entry"]),
                call=str(item["call"]),
                agrees=bool(item["agrees"]),
                split=splits[patch.task.name],
                extra=extra,
            )


def _raw_rows(patches: Iterable[Patch], *, splits: Mapping[str, str], seen: _Seen, **_):
    """Every finished or labelled patch: its diff, the automatic Result, every label event, the consensus."""
    for patch in patches:
        yield _raw_row(patch, splits=splits, seen=seen, safe=False)


def _raw_safe_rows(patches: Iterable[Patch], *, splits: Mapping[str, str], seen: _Seen, **_):
    """`raw` for a trainer: hidden-test evidence as counts, no external id (the row's strings are scrubbed too)."""
    for patch in patches:
        yield _raw_row(patch, splits=splits, seen=seen, safe=True)


def _raw_row(patch: Patch, *, splits: Mapping[str, str], seen: _Seen, safe: bool) -> dict[str, Any]:
    evaluation = _use_evaluation(patch)
    seen.note(patch, evaluation)
    result = patch_result(patch, reveal_hidden=not safe, include_id=False)
    row = {
        "split": splits[patch.task.name],
        "task": patch.task.name,
        "patch": patch.pk,
        "external_id": None if safe else patch.external_id,
        "status": patch.status,
        "is_demo": patch.is_demo,
        "created_at": patch.created_at.isoformat(),
        "diff": patch.diff,
        "final_score": _number(result["final_score"]),
        "automatic": _automatic(result) if evaluation is not None else None,
        "human": _human(human_consensus(patch)),
        "labels": [_label(event) for event in patch.label_list],  # type: ignore[attr-defined]  # set by Prefetch(to_attr=...) in _patches
    }
    if safe and evaluation is not None:
        row["_hidden_evidence"] = _hidden_evidence(evaluation)  # what HiddenScrub takes out; dropped there
    return row


def _automatic(result: Mapping[str, Any]) -> dict[str, Any]:
    """The automatic part of a Result with fixed column types; each criterion's evidence as a JSON string,
    because its shape differs between criteria and rows and `datasets` needs one type per column."""
    profile = result["weight_profile"] or {}
    return {
        "final_score": _number(result["final_score"]),
        "route": result["route"],
        "flags": list(result["flags"]),
        "comments": result["comments"],
        "weight_profile": f"{profile.get('name')} v{profile.get('version')}" if profile else None,
        "pipeline_version": (result.get("meta") or {}).get("pipeline_version"),
        "subscores": {
            name: {
                "score": _number(sub.get("score")),
                "confidence": _number(sub.get("confidence")),
                "rationale": [str(step) for step in sub.get("rationale", ())],
                "flags": [str(flag) for flag in sub.get("flags", ())],
                "evidence_json": json.dumps(sub.get("evidence") or {}, sort_keys=True, allow_nan=False),
            }
            for name in CRITERIA
            if (sub := result["subscores"].get(name)) is not None
        },
    }


def _human(consensus: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if consensus is None:
        return None
    return {
        "subscores": {name: _number(consensus["subscores"].get(name)) for name in CRITERIA},
        "final_score": _number(consensus["final_score"]),
        "labels": consensus["labels"],
        "comment": consensus["comment"],
    }


def _label(event: LabelEvent) -> dict[str, Any]:
    """One label event, its reviewer pseudonymised."""
    return {
        "event": event.pk,
        "reviewer": reviewer_pseudonym(event.reviewer_id),
        "supersedes": event.supersedes_id,
        "created_at": event.created_at.isoformat(),
        "subscores": {
            name: {
                "auto": _number(value.get("auto")),
                "human": _number(value.get("human")),
                "note": str(value.get("note", "")),
            }
            for name in CRITERIA
            if (value := event.subscores.get(name)) is not None
        },
        "final_score": _number(event.final_score),
        "weight_profile_version": event.weight_profile_version,
        "comment": event.comment,
        "task_broken": event.task_broken,
        "is_demo": event.is_demo,
        "time_spent_s": _number(event.time_spent_s),
    }


def _number(value: Any) -> float | None:
    """Scores as floats (never ints), so each column has one type when `datasets` loads the file."""
    return None if value is None else float(value)


def _manifest(
    *,
    fmt: str,
    out: Path,
    writer: _Writer,
    seen: _Seen,
    filters: dict[str, Any],
    cutoff: datetime,
    exported_at: datetime,
    patches: int,
) -> dict[str, Any]:
    """What a trainer needs to trust the file: counts, filters, hash, versions, the cut-off."""
    return {
        "format": fmt,
        "audience": AUDIENCE[fmt],
        "audience_note": _AUDIENCE_NOTE[AUDIENCE[fmt]],
        "file": out.name,
        "sha256": writer.sha256.hexdigest(),
        "bytes": writer.bytes,
        "rows": sum(writer.counts.values()),
        "counts": {split: writer.counts.get(split, 0) for split in ("train", "val")},
        "counts_by_source": {source: dict(counts) for source, counts in sorted(writer.by_source.items())},
        "tasks": {split: sorted(writer.tasks.get(split, ())) for split in ("train", "val")},
        "patches_read": patches,
        "skipped": dict(seen.skipped),
        "filters": filters,
        "label_cutoff": cutoff.isoformat(),
        "exported_at": exported_at.isoformat(),
        "split_rule": SPLIT_RULE,
        "criteria": list(CRITERIA),
        "pipeline_versions": sorted(seen.pipeline_versions),
        "weight_profiles": sorted(seen.weight_profiles),
        "label_weight_profile_versions": sorted(seen.label_profile_versions),
        "tool_versions": {tool: sorted(versions) for tool, versions in sorted(seen.tools.items())},
        "prompt": {
            "system_sha256": hashlib.sha256(system_prompt(CRITERIA).encode()).hexdigest(),
            "diff_char_budget": DIFF_CHAR_BUDGET,
        },
        "software": _software(),
    }


def _software() -> dict[str, str]:
    versions = {"python": platform.python_version(), "pipeline": PIPELINE_VERSION}
    for package in ("reviewapp", "django", "transformers", "trl", "datasets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


# --- jobs (the /exports/ page and the API) ------------------------------------------------------------------


def exports_dir() -> Path:
    """Where jobs write their files: DATA_DIR/exports."""
    return Path(settings.DATA_DIR) / "exports"


def export_job_start(
    *,
    fmt: str,
    include_demo: bool = False,
    with_execution: bool = False,
    min_margin: float = DEFAULT_MIN_MARGIN,
    user: Any = None,
) -> ExportJob:
    """Record an export job (its cut-off is now) and send it to the `critic` queue once the row is committed.

    Raises ExportError on bad input. If the broker is down the job is marked failed with that reason.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 0.0 < min_margin <= 1.0:
        raise ExportError(f"min_margin must be in (0, 1], got {min_margin}")
    job = ExportJob.objects.create(
        fmt=fmt,
        include_demo=include_demo,
        with_execution=with_execution,
        min_margin=min_margin,
        cutoff=timezone.now(),
        requested_by=user if getattr(user, "is_authenticated", False) else None,
    )
    transaction.on_commit(lambda: _enqueue_export(job.pk))
    return job


def _enqueue_export(job_id: int) -> None:
    try:
        queueing.send(queueing.EXPORT_RUN, job_id)
    except Exception as exc:  # kombu raises many types for a dead broker; the page must say so, not spin
        ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.PENDING).update(
            status=ExportJob.Status.FAILED, error=f"could not reach the task queue: {exc}", finished_at=timezone.now()
        )


def export_job_run(*, job: ExportJob) -> ExportJob:
    """Run an export job to its file, updating its progress as it goes. Safe to call twice: a finished job stays.

    A redelivered job (the worker died) starts again from the beginning and replaces the partial file.
    """
    running = ExportJob.objects.filter(
        pk=job.pk, status__in=[ExportJob.Status.PENDING, ExportJob.Status.RUNNING]
    ).update(status=ExportJob.Status.RUNNING)
    if not running:
        job.refresh_from_db()
        return job
    out = exports_dir() / f"export-{job.pk}-{job.fmt}.jsonl"
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or done == total:  # a progress bar, not a write per row
            last[0] = now
            ExportJob.objects.filter(pk=job.pk).update(processed=done, total=total)

    try:
        manifest = export_labels(
            fmt=job.fmt,
            out=out,
            include_demo=job.include_demo,
            cutoff=job.cutoff,
            min_margin=job.min_margin,
            with_execution=job.with_execution,
            progress=report,
        )
    except Exception as exc:
        export_job_fail(job=job, error=f"{type(exc).__name__}: {exc}")
        raise
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.DONE,
        path=str(out),
        manifest=manifest,
        processed=manifest["patches_read"],
        total=manifest["patches_read"],
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


def export_job_fail(*, job: ExportJob, error: str) -> None:
    """Mark a job failed with the reason, so the progress bar shows it instead of spinning."""
    ExportJob.objects.filter(pk=job.pk).exclude(status=ExportJob.Status.DONE).update(
        status=ExportJob.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )
