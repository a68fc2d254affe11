"""Hostile and friendly repository archives through safe_extract (issue 2, "Bad input": archives)."""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from scoring.core.intake.archive import ArchiveError, safe_extract, sha256_file


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], *, gz: bool = True) -> Path:
    """Write a tar (gzip-compressed by default) holding exactly the given raw members."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def tar_file(name: str, data: bytes = b"x = 1\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def tar_special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def make_zip(path: Path, members: dict[str, bytes], *, modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def refused(archive: Path, dest: Path, **limits: float) -> str:
    """Extract expecting refusal; check dest and the temp folder are gone; return the message."""
    with pytest.raises(ArchiveError) as caught:
        safe_extract(archive, dest, **limits)
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".extract-")]
    return str(caught.value)


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_github_style_archive_is_unpacked_without_its_top_folder(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "repo.tar.gz",
        [
            tar_file("gcd-main/gcd/__init__.py", b"def gcd(a, b): ...\n"),
            tar_file("gcd-main/tests/test_gcd.py"),
        ],
    )
    safe_extract(archive, tmp_path / "out")
    assert listing(tmp_path / "out") == ["gcd", "gcd/__init__.py", "tests", "tests/test_gcd.py"]
    assert (tmp_path / "out/gcd/__init__.py").read_bytes() == b"def gcd(a, b): ...\n"


def test_zip_with_several_top_level_entries_keeps_its_layout(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "repo.zip", {"pkg/a.py": b"A = 1\n", "setup.cfg": b"[x]\n", "pkg/": b""})
    safe_extract(archive, tmp_path / "out")
    assert listing(tmp_path / "out") == ["pkg", "pkg/a.py", "setup.cfg"]


def test_plain_tar_and_executable_bits_survive(tmp_path: Path) -> None:
    info, data = tar_file("run.sh", b"#!/bin/sh\n")
    info.mode = 0o4755  # setuid must be dropped, the executable bit kept
    archive = make_tar(tmp_path / "repo.tar", [(info, data), tar_file("a.py")], gz=False)
    safe_extract(archive, tmp_path / "out")
    mode = (tmp_path / "out/run.sh").stat().st_mode
    assert mode & stat.S_IXUSR and not mode & stat.S_ISUID


def test_format_is_detected_from_content_not_name(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "misnamed.tar.gz", {"a.py": b"A = 1\n", "b.py": b""})
    safe_extract(archive, tmp_path / "out")
    assert listing(tmp_path / "out") == ["a.py", "b.py"]
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not an archive at all" * 30)
    assert "not a .tar.gz, .tar or .zip archive" in refused(junk, tmp_path / "out2")


def test_archive_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tar.gz", [tar_file("a.bin", bytes(range(256)) * 64)])
    message = refused(archive, tmp_path / "out", max_bytes=100)
    assert "too large" in message and "100" in message


def test_members_larger_than_the_limit_uncompressed_are_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tar.gz", [tar_file("a.txt", b"a" * 50_000)])
    message = refused(archive, tmp_path / "out", max_bytes=10_000)
    assert "too large uncompressed" in message and "a.txt" in message


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "many.tar.gz", [tar_file(f"f{i}.py") for i in range(30)])
    assert "too many members" in refused(archive, tmp_path / "out", max_files=10)


@pytest.mark.parametrize("name", ["/etc/passwd", "/tmp/evil.py"])
def test_absolute_member_path_is_refused(tmp_path: Path, name: str) -> None:
    archive = make_tar(tmp_path / "abs.tar.gz", [tar_file(name)])
    assert "absolute path" in refused(archive, tmp_path / "out")


def test_dotdot_member_is_refused_and_nothing_lands_outside(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "up.tar.gz", [tar_file("ok.py"), tar_file("../escaped.py")])
    assert "'..' in path" in refused(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.py").exists()
    zipped = make_zip(tmp_path / "up.zip", {"pkg/../../escaped.py": b"boom"})
    assert "'..' in path" in refused(zipped, tmp_path / "out")
    assert not (tmp_path / "escaped.py").exists()


@pytest.mark.parametrize(
    ("kind", "target"),
    [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.SYMTYPE, "../../outside"), (tarfile.SYMTYPE, "inside.py")],
)
def test_symlinks_are_refused_even_inside_the_tree(tmp_path: Path, kind: bytes, target: str) -> None:
    archive = make_tar(tmp_path / "link.tar.gz", [tar_file("inside.py"), tar_special("link", kind, target)])
    message = refused(archive, tmp_path / "out")
    assert "links are not allowed" in message and target in message


def test_hard_link_pointing_out_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "hard.tar.gz", [tar_special("pw", tarfile.LNKTYPE, "../../etc/passwd")])
    assert "links are not allowed" in refused(archive, tmp_path / "out")


def test_zip_symlink_entry_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "link.zip", {"link": b"/etc/passwd"}, modes={"link": stat.S_IFLNK | 0o777})
    assert "links are not allowed" in refused(archive, tmp_path / "out")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_files_and_fifos_are_refused(tmp_path: Path, kind: bytes) -> None:
    archive = make_tar(tmp_path / "dev.tar.gz", [tar_special("dev/null", kind)])
    assert "special files are refused" in refused(archive, tmp_path / "out")


def test_zip_bomb_is_refused_by_its_compression_ratio(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(8 << 20)})
    assert "zip bomb" in refused(archive, tmp_path / "out")


def test_gzip_bomb_is_refused_by_its_compression_ratio(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "bomb.tar.gz", [tar_file("zeros.bin", bytes(8 << 20))])
    assert "zip bomb" in refused(archive, tmp_path / "out")


def test_gzip_stream_far_longer_than_its_members_is_refused(tmp_path: Path) -> None:
    """A huge pax header inflates the tar stream without any member declaring a large size."""
    info, data = tar_file("a.py")
    info.pax_headers = {"comment": "x" * (2 << 20)}
    archive = make_tar(tmp_path / "pax.tar.gz", [(info, data)])
    assert "tar stream exceeds" in refused(archive, tmp_path / "out", max_bytes=20_000, max_files=10)


def test_name_with_nul_byte_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "nul.zip", {"aXb.py": b"x = 1\n"})
    archive.write_bytes(archive.read_bytes().replace(b"aXb.py", b"a\0b.py"))
    assert "NUL byte in name" in refused(archive, tmp_path / "out")


def test_duplicate_and_case_colliding_files_are_refused(tmp_path: Path) -> None:
    twice = make_tar(tmp_path / "dup.tar.gz", [tar_file("a.py"), tar_file("a.py", b"evil = 1\n")])
    assert "appears twice" in refused(twice, tmp_path / "out")
    cased = make_tar(tmp_path / "case.tar.gz", [tar_file("Readme.md"), tar_file("README.md")])
    assert "differ only in case" in refused(cased, tmp_path / "out")


def test_name_used_as_file_and_folder_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "clash.tar.gz", [tar_file("pkg"), tar_file("pkg/a.py")])
    assert "both a file and a folder" in refused(archive, tmp_path / "out")


def test_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "enc.zip", {"a.py": b"x = 1\n"})
    raw = bytearray(archive.read_bytes())
    # Set the "encrypted" general purpose bit in the local header and in the central directory entry.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature) + offset
        raw[at] |= 0x1
    archive.write_bytes(bytes(raw))
    assert "encrypted" in refused(archive, tmp_path / "out")


def test_truncated_archive_is_reported_as_corrupt(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "ok.tar.gz", [tar_file("a.py", bytes(range(256)) * 40)])
    archive.write_bytes(archive.read_bytes()[:200])
    assert "corrupt" in refused(archive, tmp_path / "out")


def test_archive_without_files_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "empty.tar.gz", [])
    assert "contains no files" in refused(archive, tmp_path / "out")


def test_existing_destination_is_a_caller_error(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [tar_file("a.py")])
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        safe_extract(archive, tmp_path / "out")


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(gzip.compress(b"reviewapp" * 10_000))
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_hidden_tests_keep_their_lone_top_folder_when_not_stripped(tmp_path):
    archive = make_tar(tmp_path / "hidden.tar.gz", [tar_file("tests/test_hidden.py")])
    safe_extract(archive, tmp_path / "kept", strip_root=False)
    safe_extract(archive, tmp_path / "stripped")
    assert (tmp_path / "kept" / "tests" / "test_hidden.py").is_file()
    assert (tmp_path / "stripped" / "test_hidden.py").is_file()
