"""Hostile inputs end in one clear line, in bounded memory: a YAML alias bomb, /dev/zero or a
megabyte of unknown keys as a config. Each runs `sagebook launch` in a child under an address
space limit, so that a regression fails the test instead of taking the machine down."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

MEMORY_LIMIT = 1 << 30  # address space: imports take ~300 MB, the 600-byte bomb would take 24 GB

BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}' if prev else '{0}lol{0}'.format(chr(34))] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def launch_limited(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sagebook.cli", "launch", *args],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limited)


def test_the_bomb_is_the_billion_laughs():
    # nine levels of nine aliases: 9**9 (387 million) values once expanded
    assert len(BOMB) < 700 and BOMB.count("*") == 8 * 9


@pytest.mark.parametrize("where", ["job", "training"])
def test_yaml_alias_bomb_is_refused_in_bounded_memory(make_config, tmp_path, where):
    path = make_config()
    if where == "job":
        path.write_text(BOMB)
    else:
        training = yaml.safe_load(path.read_text())["training_config"]
        (tmp_path / training).write_text(BOMB)
    result = launch_limited(str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert "YAML aliases expand this to more than 100,000 values" in lines[1]
    assert not (tmp_path / "experiments").exists()


def test_dev_zero_as_a_config_is_refused_at_once(tmp_path):
    result = launch_limited("/dev/zero")
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == [
        "  /dev/zero: not a regular file (a character device)"]


def test_a_five_megabyte_config_is_refused_by_its_size(make_config):
    path = make_config()
    path.write_text("".join(f"key_{i}: value{i}\n" for i in range(250_000)))
    result = launch_limited(str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == [
        f"  {path}: too large (5.5 MiB; the limit is 1.0 MiB)"]


def test_a_megabyte_of_unknown_keys_lists_the_first_problems_and_counts_the_rest(
        make_config, tmp_path):
    path = make_config()
    training = tmp_path / yaml.safe_load(path.read_text())["training_config"]
    training.write_text("".join(f"key_{i}: value{i}\n" for i in range(48_000)))
    assert training.stat().st_size > 1_000_000
    result = launch_limited(str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 + 20 + 1, lines[:3]
    assert lines[1] == (f"  {training}:1: training.key_0: unknown key; valid keys: "
                        "hidden_units, optimizer, epochs, batch_size, learning_rate, alpha, "
                        "seed, target_column, checkpoint_every, data")
    # 48,000 unknown keys, and the request's own: its 48,000 hyperparameters (at most 100)
    assert lines[-1] == f"  {training}:21: 47,981 more problems not shown"


def test_line_numbers_survive_aliases_without_walking_them_twice(tmp_path):
    from sagebook.config_files import read_yaml

    path = tmp_path / "job.yaml"
    path.write_text("base: &base\n  a: 1\n  b: 2\nother: *base\nthird:\n  <<: *base\n  c: 3\n")
    data, lines = read_yaml(path)
    assert data["third"] == {"a": 1, "b": 2, "c": 3}
    assert lines[("base", "a")] == 2 and lines[("other",)] == 4 and lines[("third", "c")] == 7
    assert ("other", "a") not in lines  # the aliased mapping is walked once, at its anchor


def test_an_unreadable_config_names_the_file_for_a_user_without_permission(make_config,
                                                                           tmp_path):
    if not (REPO / ".venv").exists() or subprocess.run(["which", "setpriv"]).returncode:
        pytest.skip("needs setpriv to run as an unprivileged user")
    path = make_config()
    path.chmod(0o200)
    tmp_path.chmod(0o755)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "sagebook.cli", "launch", str(path)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[1:] == [f"  {path}: permission denied"]


@pytest.mark.parametrize("store", ["loop1", "/dev/null"])
def test_a_store_path_that_cannot_be_a_folder_is_named(tmp_path, store):
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    result = subprocess.run([sys.executable, "-m", "sagebook.cli", "list", "--store", store],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sagebook: loop1: a symlink loop (or too many symlinks in a row)" if store == "loop1"
        else "sagebook: /dev/null: not a folder, so it cannot be a record store"]
