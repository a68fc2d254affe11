"""OpenRLHF rewards from reviewapp, in both of OpenRLHF's remote reward modes (`--reward.remote_url`).

1. A reward function file: `--reward.remote_url /path/to/reviewapp_client/openrlhf.py`. OpenRLHF (>= 0.10)
   loads it with importlib under the name `reward_func` and, for every rollout, calls
   `reward_func(queries=[query], prompts=[prompt], labels=[label])` in a Ray task, many at once.
2. An HTTP reward server: `python -m reviewapp_client.openrlhf serve --port 5005`, then
   `--reward.remote_url http://127.0.0.1:5005/reward`. OpenRLHF POSTs `{"query": [...], "prompts": [...],
   "labels": [...]}` with no auth header and reads `rewards` (and `scores`, `extra_logs`) from the JSON answer.

Either way the label is the reviewapp task name (`--data.label_key`), the response is the query after its
prompt, and calls arriving together are coalesced into batched /rewards/ calls (reviewapp_client.batcher).
The service comes from REVIEWAPP_URL and REVIEWAPP_TOKEN; REVIEWAPP_WAIT_S (default 120) sets the wait.

OpenRLHF cannot hold None and turns a raised exception into a missing reward, so neither reaches it: a None
reward (failed, cancelled, withheld, unfinished) or an unreachable service becomes 0.0 with
`extra_logs["reviewapp/unscored"] = 1.0`, and is logged.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from reviewapp_client.batcher import RewardBatcher, Scored, batcher_from_env
from reviewapp_client.client import CRITERIA, RewardServiceError

logger = logging.getLogger("reviewapp_client.openrlhf")

UNSCORED_LOG = "reviewapp/unscored"  # 1.0 where the reward below is a stand-in 0.0, not a judgement
MAX_BODY_BYTES = 64 * 1024 * 1024


def response_of(query: str, prompt: str) -> str:
    """The response part of a query (prompt + response): the text after the prompt."""
    if query.startswith(prompt):
        return query[len(prompt) :]
    at = query.find(prompt) if prompt else -1
    if at >= 0:  # a BOS token or template prefix before the prompt
        return query[at + len(prompt) :]
    # Never score the prompt's own diff (a task prompt may show one) as the response's: say so, use it all.
    logger.warning("query does not contain its prompt; scoring the whole query")
    return query


def rewards_for(
    batcher: RewardBatcher, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]
) -> dict[str, Any]:
    """OpenRLHF's answer for these rows, as plain lists: {"rewards", "scores", "extra_logs"}. Never raises for
    a service fault: such rows get 0.0 and extra_logs[UNSCORED_LOG] = 1.0."""
    if not len(queries) == len(prompts) == len(labels):
        raise ValueError(f"{len(queries)} queries, {len(prompts)} prompts and {len(labels)} labels")
    futures: list[Future] = [
        batcher.submit(str(label).strip(), response_of(query, prompt))
        for query, prompt, label in zip(queries, prompts, labels, strict=True)
    ]
    rows: list[Scored | None] = []
    for future in futures:
        try:
            rows.append(future.result())
        except RewardServiceError as exc:
            logger.error("reviewapp reward unavailable, counted as 0.0 and logged as %s: %s", UNSCORED_LOG, exc)
            rows.append(None)
    rewards = [row.reward if row is not None and row.reward is not None else 0.0 for row in rows]
    unscored = [1.0 if row is None or row.reward is None else 0.0 for row in rows]
    if any(unscored):
        statuses = sorted({row.status or "?" for row in rows if row is not None and row.reward is None})
        logger.warning("%d of %d rollouts have no reward (%s), counted as 0.0", sum(unscored), len(rows), statuses)
    logs: dict[str, list[float]] = {
        name: [(row.subscores[name] or 0.0) if row is not None else 0.0 for row in rows] for name in CRITERIA
    }
    logs[UNSCORED_LOG] = unscored
    return {"rewards": rewards, "scores": list(rewards), "extra_logs": logs}


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict:
    """OpenRLHF's reward function: {"rewards", "scores", "extra_logs"}, torch tensors when torch is installed.

    Extra keyword arguments OpenRLHF may pass (metas, ...) are accepted and ignored.
    """
    answer = rewards_for(batcher_from_env(), queries, prompts, labels)
    return {
        "rewards": _tensor(answer["rewards"]),
        "scores": _tensor(answer["scores"]),
        "extra_logs": {name: _tensor(values) for name, values in answer["extra_logs"].items()},
    }


def _tensor(values: list[float]) -> Any:
    try:
        import torch
    except ImportError:
        return values
    return torch.tensor(values, dtype=torch.float32)


# --- the HTTP reward server -----------------------------------------------------------------------------


def make_server(batcher: RewardBatcher, *, host: str = "127.0.0.1", port: int = 5005, token: str | None = None):
    """An HTTP server speaking OpenRLHF's remote reward protocol, scoring through `batcher`.

    OpenRLHF sends no Authorization header, so with `token` set a request must carry it as `?token=` in the
    --reward.remote_url (or as `Authorization: Bearer ...`); without it, bind to loopback only.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if token is not None and not self._authorized():
                self._reply(401, {"detail": "missing or wrong token (?token=... in --reward.remote_url)"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._reply(413, {"detail": f"body over {MAX_BODY_BYTES} bytes"})
                    return
                body = json.loads(self.rfile.read(length) or b"null")
                queries, prompts, labels = _rows(body)
                answer = rewards_for(batcher, queries, prompts, labels)
            except ValueError as exc:
                self._reply(400, {"detail": str(exc)})
                return
            self._reply(200, answer)

        def _authorized(self) -> bool:
            given = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            header = self.headers.get("Authorization", "")
            if header.split(" ", 1)[0] in ("Bearer", "Token"):
                given = given or header.split(" ", 1)[-1]
            return bool(given) and hmac.compare_digest(given.encode(), str(token).encode())

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            content = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

    return ThreadingHTTPServer((host, port), Handler)


def _rows(body: Any) -> tuple[list[str], list[str], list[Any]]:
    """The (queries, prompts, labels) of an OpenRLHF request body; ValueError saying what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), list):
        raise ValueError('expected a JSON object {"query": [...], "prompts": [...], "labels": [...]}')
    queries = body["query"]
    prompts = body.get("prompts") or [""] * len(queries)
    labels = body.get("labels")
    if not isinstance(labels, list):
        raise ValueError('"labels" must list the reviewapp task of each query (--data.label_key)')
    if not all(isinstance(item, str) for item in (*queries, *prompts)):
        raise ValueError('"query" and "prompts" must be lists of strings')
    return queries, prompts, labels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewapp_client.openrlhf", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve OpenRLHF's HTTP remote reward protocol")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5005)
    serve.add_argument("--token-env", default="REVIEWAPP_BRIDGE_TOKEN", help="variable holding the ?token= value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        batcher = batcher_from_env()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = make_server(batcher, host=args.host, port=args.port, token=os.environ.get(args.token_env) or None)
    print(f"reviewapp OpenRLHF reward server on http://{args.host}:{server.server_address[1]}/reward", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
