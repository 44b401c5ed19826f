"""``dfptmag-cli`` directive: the command-line reference generated from ``dfptmag.cli.build_parser()``.

Every subcommand (and sub-subcommand, e.g. ``plot bands``, ``model dos``) becomes a section whose
body is exactly what ``dfptmag <command> --help`` prints, so the page cannot drift from the code.
"""
from __future__ import annotations

import argparse
import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def walk(parser: argparse.ArgumentParser, prefix: list[str]):
    """(words, parser) for every subcommand below ``parser``, depth first, in the parser's order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + [name], sub
                yield from walk(sub, prefix + [name])


def _help(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"                 # a fixed width: the same page on every terminal
    try:
        return parser.format_help()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


class CliDirective(SphinxDirective):
    has_content = False

    def run(self):
        from dfptmag.cli import build_parser
        parser = build_parser()
        out = []
        top = nodes.section(ids=["cli-dfptmag"])
        top += nodes.title(text="dfptmag")
        top += nodes.literal_block(text=_help(parser), language="text")
        out.append(top)
        for words, sub in walk(parser, ["dfptmag"]):
            sec = nodes.section(ids=["cli-" + "-".join(words[1:])])
            sec += nodes.title(text=" ".join(words))
            sec += nodes.literal_block(text=_help(sub), language="text")
            out.append(sec)
        return out


def setup(app):
    app.add_directive("dfptmag-cli", CliDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
