"""Settings read from the environment: every documented default holds, a bad value stops the start with its name."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SHOW = (
    "from django.conf import settings as s; "
    "print(s.DEBUG, s.ALLOWED_HOSTS, s.LIMITS['DIFF_BYTES'], s.REVIEWAPP['HEAL_CONFIDENCE'], "
    "s.REVIEWAPP['WARM_TESTS'], s.DATABASES['default']['ENGINE'], s.DATABASES['default'].get('CONN_MAX_AGE'), "
    "s.METRICS_ALLOW, s.REDIS_URL.startswith('redis+socket://'), len(s.SECRET_KEY) > 20)"
)


def run(tmp_path, code, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DATABASE_URL", "REDIS_URL")}
    env.update({"REVIEWAPP_ENV": "development", "REVIEWAPP_DATA_DIR": str(tmp_path), **extra})
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unset_and_empty_variables_take_the_documented_defaults(tmp_path):
    for extra in ({}, {"DEBUG": "", "REVIEWAPP_MAX_DIFF_BYTES": "", "REVIEWAPP_WARM_TESTS": ""}):
        done = run(tmp_path, SHOW, **extra)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == (
            "False ['127.0.0.1', 'localhost', 'testserver'] 1000000 0.7 True django.db.backends.sqlite3 0 [] True True"
        )


def test_set_variables_are_read_with_their_types(tmp_path):
    done = run(
        tmp_path,
        SHOW,
        DEBUG="yes",
        ALLOWED_HOSTS="a.example.org,,b.example.org",
        REVIEWAPP_MAX_DIFF_BYTES="5000",
        REVIEWAPP_HEAL_CONFIDENCE="1e-3",
        REVIEWAPP_WARM_TESTS="off",
        DATABASE_URL=f"sqlite:///{tmp_path}/other.sqlite3",
        REVIEWAPP_METRICS_ALLOW="127.0.0.1, ::1",
        SECRET_KEY="$not-a-reference-to-another-variable",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "True ['a.example.org', 'b.example.org'] 5000 0.001 False django.db.backends.sqlite3 60 "
        "['127.0.0.1/32', '::1/128'] True True"
    )


def test_benchmark_cpus_are_a_list_of_numbers_reaching_the_pipeline(tmp_path):
    code = "from scoring.conf import pipeline_settings as p; print(p().bench_cpus)"
    assert run(tmp_path, code).stdout.strip().splitlines()[-1] == "()"
    assert run(tmp_path, code, REVIEWAPP_BENCH_CPUS="1, 3").stdout.strip().splitlines()[-1] == "(1, 3)"


def test_the_benchmark_score_tolerance_reaches_the_pipeline(tmp_path):
    code = "from scoring.conf import pipeline_settings as p; print(p().bench_score_tolerance)"
    assert run(tmp_path, code).stdout.strip().splitlines()[-1] == "0.2"
    assert run(tmp_path, code, REVIEWAPP_BENCH_SCORE_TOLERANCE="0").stdout.strip().splitlines()[-1] == "0.0"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("REVIEWAPP_MAX_DIFF_BYTES", "abc", "REVIEWAPP_MAX_DIFF_BYTES='abc' is not valid"),
        ("REVIEWAPP_HEAL_CONFIDENCE", "high", "REVIEWAPP_HEAL_CONFIDENCE='high' is not valid"),
        ("DEBUG", "maybe", "DEBUG='maybe' is not valid: not a yes/no value"),
        ("DATABASE_URL", "foo://x", "DATABASE_URL='foo://x' is not valid"),
        ("REVIEWAPP_METRICS_ALLOW", "127.0.0.1,10.0.0.x", "REVIEWAPP_METRICS_ALLOW is not valid"),
        ("REVIEWAPP_THROTTLE_RATE", "lots", "REVIEWAPP_THROTTLE_RATE='lots' is not valid"),
        ("REVIEWAPP_ENV", "prod", "REVIEWAPP_ENV='prod' is not valid"),
        ("REVIEWAPP_BENCH_CPUS", "2,x", "REVIEWAPP_BENCH_CPUS='2,x' is not valid"),
        ("REVIEWAPP_BENCH_SCORE_TOLERANCE", "1.5", "REVIEWAPP_BENCH_SCORE_TOLERANCE=1.5 is not valid: a score"),
        ("REVIEWAPP_BENCH_SCORE_TOLERANCE", "-0.1", "REVIEWAPP_BENCH_SCORE_TOLERANCE=-0.1 is not valid"),
    ],
)
def test_a_bad_value_stops_the_start_with_its_name_and_exit_2(tmp_path, variable, value, says):
    done = run(tmp_path, "print('started')", **{variable: value})
    assert done.returncode == 2
    assert "started" not in done.stdout
    assert done.stderr.startswith("reviewapp: configuration error: "), done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_production_without_a_secret_key_does_not_start(tmp_path):
    done = run(tmp_path, "print('started')", REVIEWAPP_ENV="production", SECRET_KEY="")
    assert done.returncode == 2
    assert "SECRET_KEY must be set when REVIEWAPP_ENV=production" in done.stderr
