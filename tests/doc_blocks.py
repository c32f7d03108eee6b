"""The fenced code blocks of README.md and docs/*.md, found by heading, for the tests that run them.

A section is a heading line (``## Check a dataset before a long run``, matched as written) and
everything up to the next heading of the same or a higher level; ``#`` lines inside fenced
blocks (shell and Python comments) are not headings.
"""

import glob
import os.path as osp
import re
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FENCE = re.compile(r'^(`{3,})\s*(\S*)')
HEADING = re.compile(r'^(#{1,6}) \S')
SHELL = ('bash', 'sh', 'shell', 'console')


def doc_files() -> List[str]:
    """README.md and every ``docs/*.md``, relative to the repository."""
    docs = sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md')))
    return ['README.md', *docs]


def _lines(doc: str) -> List[str]:
    with open(osp.join(REPO, doc), encoding='utf-8') as f:
        return f.read().splitlines()


def headings(doc: str) -> List[str]:
    """The heading lines of ``doc`` (outside fenced blocks), in order."""
    found, fence = [], None
    for line in _lines(doc):
        match = FENCE.match(line)
        if match and (fence is None or match.group(1) == fence):
            fence = None if fence else match.group(1)
        elif fence is None and HEADING.match(line):
            found.append(line.rstrip())
    return found


def section(doc: str, heading: Optional[str] = None) -> List[str]:
    """The lines of ``doc`` under ``heading`` (the whole file for None).

    Raises:
        AssertionError: ``heading`` is not a heading of ``doc``.
    """
    lines = _lines(doc)
    if heading is None:
        return lines
    level = len(heading) - len(heading.lstrip('#'))
    out, fence, inside = [], None, False
    for line in lines:
        match = FENCE.match(line)
        if match and (fence is None or match.group(1) == fence):
            fence = None if fence else match.group(1)
        elif fence is None and HEADING.match(line):
            if inside and len(HEADING.match(line).group(1)) <= level:
                break
            inside = inside or line.rstrip() == heading
        if inside:
            out.append(line)
    assert out, f'{doc} has no heading {heading!r} (its headings: {headings(doc)})'
    return out


def fenced_blocks(doc: str, heading: Optional[str] = None,
                  lang: Optional[str] = None) -> List[str]:  # fmt: skip
    """The bodies of the fenced blocks under ``heading`` whose info string is ``lang`` (any)."""
    blocks, body, fence, info = [], [], None, ''
    for line in section(doc, heading):
        match = FENCE.match(line)
        if fence is None and match:
            fence, info, body = match.group(1), match.group(2), []
        elif fence is not None and line.strip() == fence:
            if lang is None or info == lang:
                blocks.append('\n'.join(body) + '\n')
            fence = None
        elif fence is not None:
            body.append(line)
    return blocks


def config_blocks(doc: str, heading: Optional[str] = None) -> Dict[str, str]:
    """``{relative path: text}`` of the ``python`` blocks starting ``# configs/<name>.py``."""
    configs = {}
    for block in fenced_blocks(doc, heading, 'python'):
        first, _, body = block.partition('\n')
        match = re.fullmatch(r'# (configs/\S+\.py)', first.strip())
        if match:
            configs[match.group(1)] = body
    return configs


def _strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` that starts a word, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in '\'"':
            quote = char
        elif char == '#' and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def shell_commands(block: str) -> List[str]:
    """The commands of a shell block: continuations joined, comments and blank lines dropped.

    Whitespace runs outside quotes are not normalised: a command is compared as written.
    """
    joined = re.sub(r'\\\n\s*', '', block)
    commands = (_strip_comment(line).strip() for line in joined.splitlines())
    return [c for c in commands if c]


def all_shell_commands() -> Dict[str, List[str]]:
    """``{command: [the files it is documented in]}`` over README.md and docs/*.md."""
    found: Dict[str, List[str]] = {}
    for doc in doc_files():
        for lang in SHELL:
            for block in fenced_blocks(doc, lang=lang):
                for command in shell_commands(block):
                    found.setdefault(command, []).append(doc)
    return found
