"""tools/analysis/check_dataset.py: every bad file of a dataset named at once, and the exit code."""

import json

import cv2
import mmcv
import numpy as np
from demo_checkpoint import DEMO_CONFIG
from PIL import Image
from tool_runner import load_tool

from ssd_plugin.datasets.demo_shapes import make_demo_dataset

check_tool = load_tool('analysis/check_dataset.py')


def test_demo_data_has_no_problems(tmp_path, capsys):
    root = tmp_path / 'demo'
    make_demo_dataset(str(root), num_train=6, num_val=3, image_size=64)
    assert check_tool.main([DEMO_CONFIG, '--data-root', str(root), '--workers', '1']) == 0
    out = capsys.readouterr().out
    assert f'train: {root}/annotations/instances_train.json: 6 images, 0 with problems' in out
    assert f'val: {root}/annotations/instances_val.json: 3 images, 0 with problems' in out
    assert 'test:' not in out  # the demo's test split is its val split: checked once
    assert out.endswith('no problems found\n')


def test_every_bad_kind_is_reported_by_file(tmp_path, capsys):
    root = tmp_path / 'bad'
    make_demo_dataset(str(root), num_train=9, num_val=2, image_size=64)
    ann_file = root / 'annotations' / 'instances_train.json'
    coco = json.load(open(ann_file))
    images = coco['images']
    path = [root / 'train' / img['file_name'] for img in images]
    rng = np.random.default_rng(0)

    path[0].write_bytes(b'this is no image')  # unreadable
    path[1].write_bytes(b'')  # zero bytes
    path[2].write_bytes(path[2].read_bytes()[:-500])  # truncated JPEG
    for i, depth in ((3, np.uint8), (4, np.uint16)):  # truncated PNG, 16-bit PNG
        path[i].unlink()
        images[i]['file_name'] = images[i]['file_name'].replace('.jpg', '.png')
        path[i] = root / 'train' / images[i]['file_name']
        cv2.imwrite(str(path[i]), rng.integers(0, 200, (64, 64, 3)).astype(depth))
    path[3].write_bytes(path[3].read_bytes()[:-30])
    exif = Image.Exif()
    exif[0x0112] = 6  # a quarter turn: 80x64 stored, 64x80 as loaded
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path[5], exif=exif)
    images[5].update(width=80, height=64)  # annotated on the stored pixels
    images[6].update(width=100)
    path[7].unlink()
    box = next(a for a in coco['annotations'] if a['image_id'] == images[8]['id'])
    box['bbox'][2] = -3  # negative width
    json.dump(coco, open(ann_file, 'w'))

    code = check_tool.main([DEMO_CONFIG, '--data-root', str(root), '--split', 'train',
                            '--workers', '2'])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    expected = {
        0: 'cannot be decoded by OpenCV (UnidentifiedImageError: cannot identify image file',
        1: 'empty file (0 bytes)',
        2: 'truncated JPEG (no end-of-image marker FFD9 at the end)',
        3: 'truncated PNG (no IEND chunk at the end); cannot be decoded by OpenCV',
        4: 'unsupported depth: 16-bit uint16 samples',
        5: 'EXIF orientation 6: the loader turns it to 64x80, but its annotation has the stored '
        'size 80x64',
        6: 'size 64x64 (as loaded) but the annotation says 100x64',
        7: 'cannot be read (FileNotFoundError',
    }
    for i, problem in expected.items():
        assert f'\n  {path[i]}: {problem}' in out, (i, out)
    assert f'  annotations: {ann_file}: of its ' in out
    assert f'1 non-positive width or height: ids [{box["id"]}]' in out
    assert f'train: {ann_file}: 9 images, 8 with problems, 1 annotation problems' in out
    # image 3 has two problems; image 2 too where the loader cannot decode a truncated JPEG
    jpeg_fails = mmcv.imfrombytes(path[2].read_bytes()) is None
    assert out.endswith(f'{10 + jpeg_fails} problems in 9 files\n')
    assert 'val:' not in out


def test_annotation_error_is_reported_and_the_other_splits_checked(tmp_path, capsys):
    root = tmp_path / 'demo'
    make_demo_dataset(str(root), num_train=3, num_val=2, image_size=64)
    ann_file = root / 'annotations' / 'instances_train.json'
    coco = json.load(open(ann_file))
    coco['categories'][0]['name'] = 'disc'
    json.dump(coco, open(ann_file, 'w'))
    assert check_tool.main([DEMO_CONFIG, '--data-root', str(root), '--workers', '1']) == 1
    out = capsys.readouterr().out
    assert "annotations: ValueError: metainfo classes ('circle', " in out
    assert "the classes ['circle'] are not category names of the file" in out
    assert f'val: {root}/annotations/instances_val.json: 2 images, 0 with problems' in out
