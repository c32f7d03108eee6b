"""tools/image_demo.py and the README's three-line Python API, on the demo config."""

import json
import os

import cv2
import numpy as np
import pytest
from demo_checkpoint import DEMO_CONFIG, demo_checkpoint
from tool_runner import load_tool

image_demo = load_tool('image_demo.py')


def write_images(root) -> list:
    """Three images of different sizes: two in ``root``, one in ``root/sub`` (same stem)."""
    rng = np.random.default_rng(0)
    os.makedirs(root / 'sub')
    paths = []
    for rel, (h, w) in (('a.jpg', (150, 200)), ('b.png', (192, 192)), ('sub/a.jpg', (240, 160))):
        img = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (w, h))
        cv2.imwrite(str(root / rel), img)
        paths.append(str(root / rel))
    return paths


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return demo_checkpoint(str(tmp_path_factory.mktemp('ckpt') / 'demo.pth'))


def api_detections(checkpoint, paths):
    """The README's Python API."""
    from mmdet.apis import inference_detector, init_detector

    import ssd_plugin  # noqa: F401

    model = init_detector(DEMO_CONFIG, checkpoint, device='cpu')
    return model, [inference_detector(model, p).pred_instances for p in paths]


def test_demo_matches_python_api(tmp_path, checkpoint):
    paths = write_images(tmp_path / 'imgs')
    model, results = api_detections(checkpoint, paths)
    assert model.dataset_meta['classes'][0] == 'circle'
    for path, result in zip(paths, results):
        h, w = cv2.imread(path).shape[:2]
        assert 0 < len(result.scores) <= 100
        # boxes are in the original image's pixels (the 192x192 input is rescaled back)
        boxes = result.bboxes.numpy()
        assert boxes.min() >= 0 and boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
    # a threshold between two scores of the first image, so the filter is exercised
    scores0 = np.sort(results[0].scores.numpy())[::-1]
    thr = float(scores0[4] + scores0[5]) / 2

    out = tmp_path / 'out'
    image_demo.main([DEMO_CONFIG, checkpoint, str(tmp_path / 'imgs' / '**' / '*.*'),
                     '--out-dir', str(out), '--score-thr', str(thr), '--batch-size', '2',
                     '--device', 'cpu'])  # fmt: skip
    stems = ['a', 'b', 'sub__a']  # relative paths: the two a.jpg stay apart
    assert sorted(os.listdir(out / 'vis')) == [s + '.png' for s in stems]
    assert sorted(os.listdir(out / 'preds')) == [s + '.json' for s in stems]
    for path, stem, result in zip(paths, stems, results):
        img = cv2.imread(path)
        vis = cv2.imread(str(out / 'vis' / f'{stem}.png'))
        assert vis.shape == img.shape
        with open(out / 'preds' / f'{stem}.json') as f:
            record = json.load(f)
        assert record['image'] == path and (record['height'], record['width']) == img.shape[:2]
        dets = record['detections']
        keep = result.scores.numpy() >= thr
        assert len(dets) == keep.sum()
        if len(dets):
            assert (vis != img).any()  # boxes drawn
        scores = [d['score'] for d in dets]
        assert scores == sorted(scores, reverse=True)
        # each detection is the API's (batch 2 here, 1 there: float noise only)
        for d in dets:
            match = (
                (result.labels.numpy() == d['label'])
                & (np.abs(result.scores.numpy() - d['score']) < 1e-4)
                & (np.abs(result.bboxes.numpy() - d['bbox']).max(1) < 1e-2)
            )
            assert match.any(), d
            assert d['class'] == model.dataset_meta['classes'][d['label']]
    assert len(json.load(open(out / 'preds' / 'a.json'))['detections']) == 5


def test_single_file_and_folder(tmp_path, checkpoint):
    paths = write_images(tmp_path / 'imgs')
    assert image_demo.list_images(paths[1]) == [paths[1]]
    assert image_demo.list_images(str(tmp_path / 'imgs')) == sorted(paths[:2])  # not recursive
    image_demo.main([DEMO_CONFIG, checkpoint, paths[1], '--out-dir', str(tmp_path / 'o'),
                     '--device', 'cpu'])  # fmt: skip
    assert os.listdir(tmp_path / 'o' / 'preds') == ['b.json']


def test_clear_errors(tmp_path, checkpoint, capsys):
    with pytest.raises(FileNotFoundError, match='no file matches .*nothing'):
        image_demo.main([DEMO_CONFIG, checkpoint, str(tmp_path / 'nothing*.jpg')])
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='no image .* in folder'):
        image_demo.main([DEMO_CONFIG, checkpoint, str(tmp_path / 'empty')])
    bad = tmp_path / 'bad' / 'broken.jpg'
    os.makedirs(bad.parent)
    bad.write_bytes(b'not an image at all')
    out = tmp_path / 'out'
    with pytest.raises(ValueError, match='broken.jpg'):
        image_demo.main([DEMO_CONFIG, checkpoint, str(bad.parent), '--out-dir', str(out)])
    assert not out.exists()  # checked before anything is written
    with pytest.raises(ValueError, match='cannot read image .*broken.jpg'):
        image_demo.read_image(str(bad))
    for args, missing in (
        ([DEMO_CONFIG, 'no.pth'], 'checkpoint'),
        (['no.py', checkpoint], 'config'),
    ):
        with pytest.raises(SystemExit):
            image_demo.main([*args, str(bad)])
        assert f'{missing} file not found' in capsys.readouterr().err
