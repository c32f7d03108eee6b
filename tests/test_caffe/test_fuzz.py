"""Seeded mutations of a Caffe SSD's prototxt and caffemodel: converted, or refused by name.

Each case mutates the tiny net of ``tiny_ssd`` (a number set to an extreme value, a line
dropped or repeated, a blob name changed, braces nested; the caffemodel cut, flipped or
spliced) and runs the whole conversion. The outcome is a converted model, or a
:class:`CaffeFormatError` whose message starts with the file; any other exception is a defect.
The cases are fixed by their seeds; the time bound only skips the last ones on a slow machine.
"""

import random
import re
import time

import pytest
from tiny_ssd import prototxt_text, write_net

from ssd_plugin.caffe.converter import CaffeFormatError, convert

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

PROTOTXT_CASES = 40
CAFFEMODEL_CASES = 15
SECONDS = 90.0  # a bound on each test, not a measurement
INTEGERS = ['0', '-1', '1', '3', '7', '100000', '1000000000', '2147483647', '4294967295']
FLOATS = ['0', '-1', '0.5', '-0.5', '1e30', 'nan', 'inf', '-inf']
NUMBER = re.compile(r'(?<=: )-?\d+(\.\d+)?\b')


def _mutate_text(text: str, rng: random.Random) -> str:
    kind = rng.randrange(5)
    lines = text.splitlines()
    if kind == 0:  # a number set to an extreme value
        spots = list(NUMBER.finditer(text))
        spot = rng.choice(spots)
        value = rng.choice(FLOATS if spot.group(1) else INTEGERS)
        return text[: spot.start()] + value + text[spot.end() :]
    if kind == 1:  # a line dropped
        del lines[rng.randrange(len(lines))]
    elif kind == 2:  # a line repeated
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif kind == 3:  # a blob or layer name changed (a cycle, a missing bottom, a duplicate)
        names = re.findall(r'"([a-z0-9_]+)"', text)
        old, new = rng.choice(names), rng.choice(names)
        return text.replace(f'"{old}"', f'"{new}"', rng.randrange(1, 3))
    else:  # braces nested around a line
        i = rng.randrange(len(lines))
        depth = rng.choice([1, 50, 5000])
        lines[i] = 'x { ' * depth + lines[i] + ' }' * depth
    return '\n'.join(lines)


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    kind = rng.randrange(3)
    if kind == 0:
        return data[:at]
    if kind == 1:
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    return data[:at] + data[at : at + rng.randrange(1, 200)] + data[at:]


def _outcome(tmp_path, case: str, prototxt: str, caffemodel: str) -> str:
    out = tmp_path / case
    try:
        convert(prototxt, caffemodel, out, log=lambda line: None)
    except CaffeFormatError as err:
        message = str(err)
        assert message.startswith(("'", '"')), message  # the file comes first, quoted
        return 'refused'
    assert (out / 'config.py').is_file() and (out / 'model.pth').is_file()
    return 'converted'


def test_fuzzed_prototxts(tmp_path):
    _, caffemodel, _ = write_net(tmp_path)
    text = prototxt_text()
    rng = random.Random('ssd_plugin-caffe-prototxt')
    deadline = time.monotonic() + SECONDS
    outcomes = []
    for case in range(PROTOTXT_CASES):
        if time.monotonic() > deadline:
            break
        prototxt = tmp_path / f'case{case}.prototxt'
        prototxt.write_text(_mutate_text(text, rng))
        outcomes.append(_outcome(tmp_path, f'p{case}', str(prototxt), caffemodel))
    assert 'refused' in outcomes  # the mutations reach the checks


def test_fuzzed_caffemodels(tmp_path):
    prototxt, caffemodel, _ = write_net(tmp_path)
    data = open(caffemodel, 'rb').read()
    rng = random.Random('ssd_plugin-caffe-caffemodel')
    deadline = time.monotonic() + SECONDS
    for case in range(CAFFEMODEL_CASES):
        if time.monotonic() > deadline:
            break
        path = tmp_path / f'case{case}.caffemodel'
        path.write_bytes(_mutate_bytes(data, rng))
        _outcome(tmp_path, f'm{case}', prototxt, str(path))
