"""Test helpers for the command line: its options, read from the parser (so that a command or
flag added tomorrow is checked the day it is added)."""

from __future__ import annotations

import argparse
from typing import Iterator


def walk_options(parser: argparse.ArgumentParser,
                 path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    """(command path, action) for every option of every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk_options(sub, path + (name,))
        elif action.option_strings:
            yield path, action
