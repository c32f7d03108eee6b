"""Every relative link of README.md and docs/*.md reaches a file, and its #anchor a heading."""

import os.path as osp
import re

import pytest
from doc_blocks import REPO, doc_files, headings, section

LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def slug(heading: str) -> str:
    """GitHub's anchor of a heading line: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.lstrip('#').strip().lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def test_slug_is_githubs():
    assert slug('## Mixed precision (`--amp`), on CPUs and GPUs') == (
        'mixed-precision---amp-on-cpus-and-gpus'
    )
    assert slug("## mmdet's analysis tools") == 'mmdets-analysis-tools'


def _links(doc: str) -> list:
    """The link targets of ``doc``'s prose (not of its code blocks)."""
    prose, fence = [], False
    for line in section(doc):
        if line.startswith('```'):
            fence = not fence
        elif not fence:
            prose.append(line)
    return LINK.findall('\n'.join(prose))


@pytest.mark.parametrize('doc', doc_files())
def test_relative_links_resolve(doc):
    broken = []
    for target in _links(doc):
        if re.match(r'[a-z]+:', target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition('#')
        file = osp.normpath(osp.join(osp.dirname(doc), path)) if path else doc
        if not osp.exists(osp.join(REPO, file)):
            broken.append(f'{target} (no file {file})')
        elif anchor and file.endswith('.md') and anchor not in map(slug, headings(file)):
            broken.append(f'{target} (no heading #{anchor} in {file})')
    assert not broken, f'{doc}: broken links {broken}'


def test_readme_links_every_docs_page():
    readme = set(_links('README.md'))
    missing = [d for d in doc_files()[1:] if d not in readme]
    assert not missing, f'README.md does not link {missing}'
