"""Rewriting a config with new values keeps the user's comments, order and layout."""

from __future__ import annotations

import copy
import textwrap

import pytest
import yaml

from sagebook.yaml_update import same, update_yaml

from conftest import REPO


def rewrite(text: str, change) -> str:
    old = yaml.safe_load(text)
    new = copy.deepcopy(old)
    change(new)
    result = update_yaml(text, old, new)
    assert same(yaml.safe_load(result), new)
    return result


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_unchanged_values_give_back_the_file_byte_for_byte(name):
    text = (REPO / "configs" / name).read_text()
    assert rewrite(text, lambda data: None) == text


def test_changed_value_is_replaced_where_it_stands_with_its_comment():
    text = "a: 1  # one\nb: 2\n"
    assert rewrite(text, lambda d: d.update(a=5)) == "a: 5  # one\nb: 2\n"


def test_removed_key_leaves_the_comment_that_introduces_the_next_key():
    text = textwrap.dedent("""\
        # head
        a: 1
        b: 2

        # about c
        c: 3
        """)
    result = rewrite(text, lambda d: d.pop("b"))
    assert result == "# head\na: 1\n\n# about c\nc: 3\n"


def test_new_key_of_a_section_goes_before_the_comment_that_follows_the_section():
    text = textwrap.dedent("""\
        tags:
          team: ml

        # records
        where: x
        """)
    result = rewrite(text, lambda d: d["tags"].update(owner="me"))
    assert result == "tags:\n  team: ml\n  owner: me\n\n# records\nwhere: x\n"
    appended = rewrite(text, lambda d: d.update(new=1))
    assert appended.endswith("# records\nwhere: x\nnew: 1\n")


def test_removing_a_list_item_keeps_the_others_and_their_comments():
    text = textwrap.dedent("""\
        metrics:
          - name: a   # first
            regex: "a=(.*)"
          - name: b
            regex: "b=(.*)"
          # the one that matters
          - name: c
            regex: "c=(.*)"
        """)
    result = rewrite(text, lambda d: d["metrics"].pop(1))
    assert result == textwrap.dedent("""\
        metrics:
          - name: a   # first
            regex: "a=(.*)"
          # the one that matters
          - name: c
            regex: "c=(.*)"
        """)


def test_a_value_written_short_can_become_a_section():
    text = "channels:\n  train: s3://b/train  # data\n  test: s3://b/test\n"
    result = rewrite(text, lambda d: d["channels"].update(
        train={"uri": "s3://b/train", "input_mode": "Pipe"}))
    assert yaml.safe_load(result)["channels"]["train"]["input_mode"] == "Pipe"
    assert result.endswith("  test: s3://b/test\n")


@pytest.mark.parametrize("value", ["yes", "on", "No", "1:30", "010", "2024-01-01", "null", "",
                                   "0x1F", "1e3", 1e-05, 2.5e20, 0.1, True, None, 7])
def test_new_values_read_back_the_same_with_pyyaml(value):
    # PyYAML (YAML 1.1) reads the configs; ruamel (YAML 1.2) writes them
    result = rewrite("a: 1\n", lambda d: d.update(a=value))
    assert same(yaml.safe_load(result)["a"], value)


def test_the_files_indentation_is_kept():
    text = "top:\n    inner:\n        - x\n        - y\n    other: 1\n"
    result = rewrite(text, lambda d: d["top"].update(other=2))
    assert result == text.replace("other: 1", "other: 2")
