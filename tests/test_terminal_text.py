"""Whatever a record holds reaches the terminal as text that shows it, never as control: the
escape sequences, carriage returns and bidirectional overrides a store writer plants in a
user, a tag, a note, a name, a failure reason, a config or a store key are printed as visible
escapes by every reader command — over a local folder and over S3 on the local endpoint."""

from __future__ import annotations

import datetime
import json
import re

import pytest

from sagebook.printing import cell_text, terminal_text
from sagebook.sweeps.record import SweepRecord

from conftest import add_run, run_cli

# What a store writer would plant: a window title (OSC 0, ended by BEL), clear screen (CSI),
# a hyperlink whose text hides its target (OSC 8), a carriage return that overwrites the line,
# the 8-bit CSI (C1), DEL, and a right-to-left override that shows `safe‮gpj.exe` as
# `safeexe.jpg`, and an isolate around it.
EVIL = ("\x1b]0;pwned\x07" "\x1b[2J" "\x1b]8;;https://evil.example/\x1b\\here\x1b]8;;\x1b\\"
        "\roverwritten" "\x9b31m" "\x7f" "safe\u202egpj.exe" "\u2066x\u2069")
# How it reads once escaped: each control as `\xNN`, each bidirectional mark as `\uNNNN`.
SHOWN = r"\x1b]0;pwned\x07\x1b[2J\x1b]8;;https://evil.example/\x1b\here\x1b]8;;\x1b\\x0d" \
        r"overwritten\x9b31m\x7fsafe\u202egpj.exe\u2066x\u2069"
# No raw C0 but newline and tab, no DEL, no C1, no bidirectional control.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def assert_inert(*texts: str) -> None:
    for text in texts:
        found = sorted({ascii(c) for c in RAW.findall(text)})
        assert not found, f"raw control characters reached the terminal: {found}"


def test_a_cell_is_text_as_it_is_and_anything_else_json():
    assert [cell_text(v) for v in ("adam", 0.001, 3, True, None, [1, "a"], {"k": 1})] == [
        "adam", "0.001", "3", "true", "null", '[1, "a"]', '{"k": 1}']
    # what JSON cannot write (a YAML date in a config) as its text
    assert cell_text({"day": datetime.date(2026, 1, 2)}) == '{"day": "2026-01-02"}'
    assert cell_text("x" * 8, 8) == "x" * 8 and cell_text("x" * 9, 8) == "x" * 7 + "…"


def test_terminal_text_escapes_controls_and_bidi_and_keeps_the_rest():
    assert terminal_text(EVIL) == SHOWN
    assert terminal_text("a\tb\nc") == "a\tb\nc"
    assert terminal_text("a\tb\nc", one_line=True) == r"a\tb\nc"
    assert terminal_text("héllo — ✓ 日本") == "héllo — ✓ 日本"  # printable Unicode stays
    assert terminal_text(terminal_text(EVIL)) == SHOWN  # nothing left to escape


@pytest.fixture
def hostile(store):
    """Two runs and a sweep whose every printed field a store writer chose."""
    sweep_id = "sweep-evil01"
    evil = add_run(store, user=f"mallory{EVIL}", tags={"team": EVIL, f"k{EVIL}": "v"},
                   failure=f"Traceback:\n  {EVIL}\nError: {EVIL}",
                   metrics={"acc": 0.5, f"loss{EVIL}": 0.25},
                   training={"epochs": 2, "optimizer": EVIL, f"key{EVIL}": 1})
    evil.update(host=EVIL, job_name=f"job{EVIL}", image_uri=f"img{EVIL}",
                git={"commit": f"c0ffee{EVIL}", "branch": EVIL},
                config={"overrides": [f"training.x={EVIL}"], "digest": "d"},
                sweep={"id": sweep_id, "trial": 0, "parameters": {"training.lr": EVIL}},
                checkpoints={"uri": f"s3://b/{EVIL}"})
    evil.annotate({"name": f"name{EVIL}", "note": f"first line\n{EVIL}", "tags.owner": EVIL})
    plain = add_run(store, training={"epochs": 3, "optimizer": "adam"}, metrics={"acc": 0.7})
    SweepRecord.create(store, "exp-a", sweep_id, {
        "objective": {"metric": "acc", "goal": "maximize"}, "parameters": ["training.lr"],
        "strategy": EVIL, "instance_type": EVIL, "max_parallel": 1, "backend": "local",
        "config": {"job_file": f"job{EVIL}.yaml", "overrides": []},
        "trials": [{"trial": 0, "run_id": evil.run_id, "status": "Completed",
                    "objective": 0.5, "parameters": {"training.lr": EVIL},
                    "overrides": [f"training.lr={EVIL}"]}]})
    return store, evil, plain, sweep_id


def test_list_shows_record_fields_as_visible_escapes(hostile, capsys):
    store, evil, _, sweep_id = hostile
    code, out, err = run_cli(capsys, "list", "--store", store.uri, "-p", "")
    assert code == 0, err
    assert_inert(out, err)
    row = next(line for line in out.splitlines() if evil.run_id in line)
    for shown in (f"mallory{SHOWN}", r"name\x1b]0;pwned", r"k\x1b]0;pwned",
                  r"first line \x1b]0;pwned"):  # user, name, tags, note
        assert shown in row, shown
    header = out.splitlines()[0]
    assert r"LOSS\x1b]0;PWNED" in header and r"key\x1b]0;pwned" in header  # metric, param

    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--sweep", sweep_id)
    assert code == 0, err
    assert_inert(out, err)
    assert SHOWN in out  # the trial's parameter


def strings(data: object) -> list[str]:
    """Every string in a JSON document, keys too."""
    if isinstance(data, dict):
        return [*data, *(s for value in data.values() for s in strings(value))]
    if isinstance(data, list):
        return [s for value in data for s in strings(value)]
    return [data] if isinstance(data, str) else []


@pytest.mark.parametrize("verb", ["list", "show", "diff", "show-sweep"])
def test_json_output_escapes_controls_and_bidi_as_json_does(hostile, capsys, verb):
    store, evil, plain, sweep_id = hostile
    refs = {"list": [], "show": [evil.run_id], "diff": [evil.run_id, plain.run_id, "--all"],
            "show-sweep": [sweep_id]}[verb]
    code, out, err = run_cli(capsys, verb.removesuffix("-sweep"), *refs, "--store", store.uri,
                             "--json")
    assert code == 0, err
    assert_inert(out, err)
    assert "\\u202e" in out and "\\u001b]0;pwned\\u0007" in out
    documents = [json.loads(line) for line in out.splitlines()] if verb == "list" else \
        [json.loads(out)]
    assert any(EVIL in text for text in strings(documents))  # the same text, as JSON has it


def test_show_shows_every_field_as_visible_escapes(hostile, capsys):
    store, evil, _, _ = hostile
    code, out, err = run_cli(capsys, "show", evil.run_id, "--store", store.uri)
    assert code == 0, err
    assert_inert(out, err)
    lines = out.splitlines()
    for label in ("user:", "name:", "job:", "image:", "git:", "overrides:", "tags:", "sweep:",
                  "checkpoints:"):
        [line] = [line for line in lines if line.startswith(label)]
        assert SHOWN in line, label
    # the failure reason and a note, line by line (a carriage return starts a line of its own)
    assert any(line.startswith(r"  Error: \x1b]0;pwned\x07\x1b[2J") for line in lines)
    assert any(line.startswith(r"    \x1b]0;pwned\x07\x1b[2J") for line in lines)
    assert any(line.startswith(f"  loss{SHOWN}") for line in lines)  # a metric's name


def test_show_of_a_sweep_and_diff_show_record_fields_as_visible_escapes(hostile, capsys):
    store, evil, plain, sweep_id = hostile
    code, out, err = run_cli(capsys, "show", sweep_id, "--store", store.uri)
    assert code == 0, err
    assert_inert(out, err)
    assert f"strategy: {SHOWN}" in out

    code, out, err = run_cli(capsys, "diff", evil.run_id, plain.run_id, "--store", store.uri)
    assert code == 0, err
    assert_inert(out, err)
    [row] = [line for line in out.splitlines() if "run.user" in line]
    assert row.startswith("*") and terminal_text(f"mallory{EVIL}"[:57], one_line=True) in row


@pytest.mark.slow  # on S3, ~12 s of listing runs whose ids are not valid
def test_note_and_an_error_naming_record_values_print_visible_escapes(hostile, capsys):
    store, evil, _, _ = hostile
    code, out, err = run_cli(capsys, "note", evil.run_id, EVIL, "--store", store.uri)
    assert code == 0, err
    assert_inert(out, err)
    assert out.strip() == f"exp-a/{evil.run_id}: note={SHOWN}"
    # two runs whose ids a store writer chose: no valid run id, so no run at all; `list`
    # names what it skipped, and the names show as escapes
    for suffix in ("a", "b"):
        add_run(store, run_id=f"20260101-000000-x\x1b[2J\u202e{suffix}")
    code, out, err = run_cli(capsys, "show", "000000-x", "--store", store.uri)
    assert code == 1 and "no run '000000-x'" in err
    assert_inert(out, err)
    code, out, err = run_cli(capsys, "list", "--store", store.uri)
    assert code == 0, err
    assert_inert(out, err)
    assert "\\x1b[2J\\u202e" in err and "is not a valid run id" in err


def test_fsck_names_a_planted_key_with_visible_escapes(tmp_path, capsys):
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    add_run(store)
    folder = tmp_path / "records" / "exp-a" / f"run{EVIL.replace('/', '')}"
    folder.mkdir()
    (folder / "stray.txt").write_text("no manifest here")
    code, out, err = run_cli(capsys, "fsck", "--store", store.uri)
    assert code == 1
    assert_inert(out, err)
    assert "a record folder without manifest.json" in out
    assert terminal_text(folder, one_line=True) in out
