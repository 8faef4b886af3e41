"""The work folder is this user's alone: what is found there (a launcher's claim, an unpacked
code package) is trusted more than the store, so another user must not be able to plant it."""

from __future__ import annotations

import os
import tempfile

import pytest

from sagebook.paths import UnsafeFolder, private_folder, work_base


def test_the_default_work_folder_is_made_private_to_its_user(tmp_path, monkeypatch):
    monkeypatch.delenv("SAGEBOOK_WORK_DIR")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = work_base()
    assert folder == tmp_path / f"sagebook-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert work_base() == folder  # found again as it is


def test_a_given_work_folder_is_used_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(tmp_path / "mine"))
    assert work_base() == tmp_path / "mine"


@pytest.mark.parametrize("planted", ["open to others", "a symlink", "a file"])
def test_a_planted_default_work_folder_is_refused(tmp_path, planted):
    folder = tmp_path / "sagebook-1000"
    if planted == "open to others":
        folder.mkdir()
        folder.chmod(0o777)
    elif planted == "a symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.write_text("")
    with pytest.raises(UnsafeFolder, match="not a folder of yours that only you can open"):
        private_folder(folder)
