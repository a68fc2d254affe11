"""Task registration through the API, with hostile archives and specs."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest

from scoring.core.trees import pack_tree
from scoring.models import Task
from tests.helpers import TINY

pytestmark = pytest.mark.django_db


def _repo_archive(tmp_path) -> io.BytesIO:
    data = pack_tree(TINY / "repo", tmp_path / "repo.tar.gz").read_bytes()
    archive = io.BytesIO(data)
    archive.name = "repo.tar.gz"
    return archive


def _tar_with(member: tarfile.TarInfo, payload: bytes = b"") -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(member, io.BytesIO(payload) if payload else None)
    buffer.seek(0)
    buffer.name = "evil.tar.gz"
    return buffer


def test_an_admin_registers_a_task_with_archives(make_user, tmp_path, spec_json):
    from rest_framework.test import APIClient

    admin, _ = make_user("ada", "admin")
    client = APIClient()
    client.force_authenticate(admin)
    response = client.post("/api/v1/tasks/", {"spec": spec_json, "repo": _repo_archive(tmp_path)}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "tiny"
    assert client.get("/api/v1/tasks/tiny/").json()["spec"]["test_command"] == "python -m pytest -q tests"
    again = client.post("/api/v1/tasks/", {"spec": spec_json, "repo": _repo_archive(tmp_path)}, format="multipart")
    assert again.status_code == 409


def _evil_archives():
    traversal = tarfile.TarInfo("../escape.py")
    traversal.size = 1
    absolute = tarfile.TarInfo("/tmp/abs.py")
    absolute.size = 1
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "../../etc/passwd"
    device = tarfile.TarInfo("dev")
    device.type = tarfile.CHRTYPE
    return {
        "traversal": _tar_with(traversal, b"x"),
        "absolute": _tar_with(absolute, b"x"),
        "symlink": _tar_with(link),
        "hardlink": _tar_with(hard),
        "device": _tar_with(device),
    }


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink", "hardlink", "device", "zipbomb", "junk"])
def test_hostile_archives_get_400_and_write_nothing_outside_storage(api, tmp_path, spec_json, kind):
    if kind == "zipbomb":
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("big.txt", b"0" * (300 << 20))
        archive.seek(0)
        archive.name = "bomb.zip"
    elif kind == "junk":
        archive = io.BytesIO(b"this is not an archive")
        archive.name = "junk.tar.gz"
    else:
        archive = _evil_archives()[kind]
    response = api.post("/api/v1/tasks/", {"spec": spec_json, "repo": archive}, format="multipart")
    assert response.status_code in (400, 413), (kind, response.content)
    assert response.json()["detail"]
    assert not Task.objects.exists()
    assert not (tmp_path.parent / "escape.py").exists()


@pytest.mark.parametrize(
    "spec, word",
    [
        ("{broken", "JSON"),
        (json.dumps({"name": "x", "test_command": "python -m pytest", "surprise": 1}), "surprise"),
        (json.dumps({"name": "x", "test_command": ""}), "test_command"),
        (json.dumps({"name": "x", "test_command": 5}), "test_command"),
        (json.dumps({"name": "x", "test_command": "python -m pytest", "repo": "/etc"}), "repo"),
        (json.dumps({"name": "x", "test_command": "python -m pytest \ud800"}), "test_command"),  # "\\ud800" in JSON
        (json.dumps({"name": "x", "test_command": "python -m pytest \x00"}), "test_command"),  # "\\u0000" in JSON
        # A raw NUL in a multipart field of an API view: the serializer answers, in the API's JSON.
        ('{"name": "x", "test_command": "python -m pytest \x00"}', "null characters"),
    ],
)
def test_bad_specs_get_400_naming_the_field(api, tmp_path, spec, word):
    response = api.post("/api/v1/tasks/", {"spec": spec, "repo": _repo_archive(tmp_path)}, format="multipart")
    assert response.status_code == 400, response.content
    assert word.lower() in response.json()["detail"].lower()
