"""The `sagebook` program starts without the cyclic garbage collector and gets it back."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from sagebook import cli

WATCH = """
import gc, json, sys, time
import sagebook.cli as cli

def main():
    seen = {"at_start": gc.isenabled()}
    time.sleep(1.0)
    seen.update(later=gc.isenabled(), frozen=gc.get_freeze_count())
    print(json.dumps(seen))
    return 3

cli.STARTUP_SECONDS = 0.2
cli.main = main
cli.console()
"""


def test_the_program_pauses_the_collector_only_for_its_startup():
    result = subprocess.run([sys.executable, "-c", WATCH], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3, result.stderr  # main's exit code is the program's
    seen = json.loads(result.stdout)
    assert seen["at_start"] is False
    assert seen["later"] is True  # a command that runs for hours collects its garbage
    assert seen["frozen"] > 0  # what startup built is left out of later collections


def test_main_called_from_code_leaves_its_process_collector_alone(tmp_path: Path):
    assert gc.isenabled()
    assert cli.main(["list", "--store", str(tmp_path)]) == 0
    assert gc.isenabled()


def test_the_installed_command_is_the_program():
    [script] = entry_points(group="console_scripts", name="sagebook")
    assert script.value == "sagebook.cli:console"
