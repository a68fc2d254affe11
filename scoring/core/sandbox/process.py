"""Run one untrusted command on a tree, inside bubblewrap, with limits, a wall clock and a capped output.

What a sandboxed command sees (see docs/sandbox.md for what this does and does not promise):

- an empty environment (`env -i` around bwrap) plus a fixed, secret-free one (PATH, HOME=/tmp, LANG, PYTHONPATH);
- its own PID, network, IPC and UTS namespaces: no interface but `lo`, no host process in /proc, no abstract
  or filesystem socket of the host (`/run`, `/var/run` and `/tmp` of the host are simply not there);
- read-only: /usr (with the /bin, /lib, /lib64 links), the worker's Python (its venv and base interpreter) and a
  few harmless files of /etc; writable: the tree at /sandbox/tree, the report folder at /sandbox/report, and small
  tmpfs mounts at /tmp and /dev/shm; the task environment read-only at /sandbox/env, on PYTHONPATH;
- an unprivileged uid, fresh for each run, without capabilities, so RLIMIT_NPROC binds (it does not bind root);
- RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE and RLIMIT_NPROC set by prlimit before the uid switch;
- a cgroup for the whole run (scoring.core.sandbox.cgroups), joined before bwrap starts: memory and process limits for
  all its processes together, the kernel's CPU accounting, and a kill of whatever is left at the end;
- a wall clock enforced from here: SIGKILL to bwrap's process group and to the namespace's PID 1, which takes
  every process of the namespace with it (a `setsid` daemon included);
- no sandbox outlives the worker (`spawn`): bwrap dies with it, and so does a sandbox whose set-up was under way.

Arguments may contain the placeholders `{tree}`, `{report_dir}` and `{env_dir}`; they are replaced by the paths
the command sees, so a caller can write `--junitxml={report_dir}/junit.xml` in either mode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from scoring.core.sandbox import warm as warm_runs
from scoring.core.sandbox.bwrap import (
    ENV_INSIDE,
    REPORT_INSIDE,
    TREE_INSIDE,
    env_assignments,
    fresh_uid,
    hand_over,
    limited,
    mount_args,
    processes_of,
    sandbox_mode,
    supervise,
)
from scoring.core.types import RunLimits, RunResult


def run(
    argv: Sequence[str],
    *,
    tree: Path,
    report_dir: Path | None = None,
    env_dir: Path | None = None,
    limits: RunLimits = RunLimits(),  # noqa: B008 - frozen, the signature of types.Runner
    allow_unsandboxed: bool = False,
    warm: bool = False,
) -> RunResult:
    """Run `argv` with `tree` as working directory inside the sandbox and return what happened.

    Never raises because of what the command does; raises SandboxUnavailable when there is no sandbox and
    `allow_unsandboxed` is false. Files in `tree` and `report_dir` are handed to the sandbox's uid.
    `warm`: a `python -m pytest` command may be forked from a warm zygote with the same isolation
    (scoring.core.sandbox.warm); any other command, or a worker that is not root, runs cold. A zygote lost during the
    run raises warm.WarmRunLost (the machinery failed, not the command: the caller retries on fresh copies).
    """
    mode = sandbox_mode(allow_unsandboxed)
    tree = Path(tree).resolve()
    report_dir = Path(report_dir).resolve() if report_dir else None
    env_dir = Path(env_dir).resolve() if env_dir else None
    # Root is not bound by RLIMIT_NPROC, so in the sandbox the command runs as a fresh uid. Unsandboxed it keeps
    # the worker's uid: the tree's parents may not be reachable by another uid without a private mount.
    uid = fresh_uid() if mode == "bwrap" and os.geteuid() == 0 else None
    if uid is not None:
        for path in (tree, report_dir):
            if path is not None:
                hand_over(path, uid)
    if mode == "bwrap":
        paths = {"{tree}": TREE_INSIDE, "{report_dir}": REPORT_INSIDE, "{env_dir}": ENV_INSIDE}
        if warm and uid is not None:
            result = warm_runs.run(
                _substitute(argv, paths), tree=tree, report_dir=report_dir, env_dir=env_dir, limits=limits, uid=uid
            )
            if result is not None:
                return result
        inner = limited(_substitute(argv, paths), limits, uid, nproc_base=0)
        outer = ["/usr/bin/env", "-i", *mount_args(tree, report_dir, env_dir)]
        cwd = "/"
    else:
        paths = {"{tree}": str(tree), "{report_dir}": str(report_dir or ""), "{env_dir}": str(env_dir or "")}
        inner = limited(_substitute(argv, paths), limits, None, nproc_base=processes_of(os.getuid()))
        outer = ["/usr/bin/env", "-i", *env_assignments(str(env_dir) if env_dir else None)]
        cwd = str(tree)
    return supervise(outer, inner, cwd=cwd, limits=limits, mode=mode)


def _substitute(argv: Sequence[str], paths: dict[str, str]) -> list[str]:
    """Replace the path placeholders in each argument (plain text replacement, no format syntax)."""
    out = []
    for arg in argv:
        for key, value in paths.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out
