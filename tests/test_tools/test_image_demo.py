"""tools/image_demo.py and the Python API of docs/deploy.md, on the demo config."""

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
    """The Python API of docs/deploy.md."""
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


def drawn_mask(shape, dets, margin: int = 5) -> np.ndarray:
    """Where the visualizer may have drawn: box outlines (3 px lines, antialiased) and labels.

    Generous on purpose: a label ``'class: 0.52'`` at the box's top-left corner, at most 10 px
    per character and 25 px high at this image size.
    """
    h, w = shape
    mask = np.zeros((h, w), bool)
    for d in dets:
        x1, y1, x2, y2 = np.round(d['bbox']).astype(int)
        outline = np.zeros_like(mask)
        outline[max(y1 - margin, 0) : y2 + margin, max(x1 - margin, 0) : x2 + margin] = True
        outline[y1 + margin : max(y2 - margin, 0), x1 + margin : max(x2 - margin, 0)] = False
        text = f'{d["class"]}: {d["score"]:.2f}'
        mask |= outline
        mask[max(y1 - margin, 0) : y1 + 25, max(x1 - margin, 0) : x1 + 10 * len(text) + 10] = True
    return mask


def test_drawn_png_is_the_input_away_from_the_drawings(tmp_path, checkpoint):
    """Per pixel, in RGB: red and blue stay where they were (they were swapped)."""
    rng = np.random.default_rng(1)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (400, 300))
    img[..., 0] //= 2  # blue != red nearly everywhere, so a swap cannot go unseen
    path = tmp_path / 'in' / 'photo.png'
    os.makedirs(path.parent)
    cv2.imwrite(str(path), img)
    _, (result,) = api_detections(checkpoint, [str(path)])
    scores = np.sort(result.scores.numpy())[::-1]
    thr = float(scores[2] + scores[3]) / 2  # three detections drawn
    out = tmp_path / 'out'
    image_demo.main([DEMO_CONFIG, checkpoint, str(path), '--out-dir', str(out),
                     '--score-thr', str(thr), '--device', 'cpu'])  # fmt: skip
    dets = json.load(open(out / 'preds' / 'photo.json'))['detections']
    assert len(dets) == 3
    vis_rgb = cv2.imread(str(out / 'vis' / 'photo.png'))[..., ::-1]
    img_rgb = img[..., ::-1]
    mask = drawn_mask(img.shape[:2], dets)
    assert (~mask).mean() > 0.3  # most of the image is compared
    np.testing.assert_array_equal(vis_rgb[~mask], img_rgb[~mask])
    assert (vis_rgb[mask] != img_rgb[mask]).any(axis=-1).mean() > 0.05  # and boxes are drawn


def test_no_noise(tmp_path, checkpoint):
    """No registry or vis-backend warnings; no "out of bounds" for boxes at the image's edges."""
    import logging
    import warnings

    from mmengine.logging import MMLogger

    path = tmp_path / 'in' / 'photo.png'
    os.makedirs(path.parent)
    rng = np.random.default_rng(2)
    cv2.imwrite(str(path), cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (400, 300)))
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            image_demo.main([DEMO_CONFIG, checkpoint, str(path), '--out-dir', str(tmp_path / 'o'),
                             '--score-thr', '0.1', '--device', 'cpu'])  # fmt: skip
    finally:
        logger.removeHandler(handler)
    dets = json.load(open(tmp_path / 'o' / 'preds' / 'photo.json'))['detections']
    boxes = np.array([d['bbox'] for d in dets])
    assert ((boxes[:, 2] == 400) | (boxes[:, 3] == 300)).any()  # boxes at the far edges drawn
    messages = [r.getMessage() for r in records] + [str(w.message) for w in caught]
    for noise in ('Failed to search registry', 'Failed to add', 'out of bounds'):
        assert not [m for m in messages if noise in m], noise
