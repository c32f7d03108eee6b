"""README "SSD + FPN": its config, read out of README, trains and predicts; SSD300's strides on the
same network stop the run at the first forward with the fix in the message (the one README quotes).

The config is written to a ``configs/`` folder next to links to the repository's configs (its
``_base_``), given tiny generated COCO data (``tool_runner.tiny_config``: 3 classes, 5 training
images, one epoch of batch 2) and trained with ``tools/train.py``; the checkpoint then predicts
with mmdet's ``inference_detector``.
"""

import glob
import os
import os.path as osp

import pytest
import torch
from doc_blocks import config_blocks, fenced_blocks
from mmdet.apis import inference_detector, init_detector
from tool_runner import CONFIGS, REPO, load_tool, tiny_config

from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading

SECTION = '## SSD + FPN'
CONFIG = 'configs/ssd300_r18_fpn_8xb8-120e_coco.py'
train_tool = load_tool('train.py')


def test_readme_shows_the_repository_config():
    blocks = config_blocks('README.md', SECTION)
    assert list(blocks) == [CONFIG]
    with open(osp.join(REPO, CONFIG)) as f:
        assert blocks[CONFIG] == f.read()


@pytest.fixture()
def readme_config(tmp_path):
    """The README's config under ``tmp_path/configs/``, with tiny data: the config file."""
    os.makedirs(tmp_path / 'configs')
    for path in glob.glob(osp.join(CONFIGS, '*.py')):
        if osp.basename(path) != osp.basename(CONFIG):
            os.symlink(path, tmp_path / 'configs' / osp.basename(path))
    (tmp_path / CONFIG).write_text(config_blocks('README.md', SECTION)[CONFIG])
    return tiny_config(str(tmp_path / CONFIG), str(tmp_path / 'data'))


def test_readme_fpn_config_trains_and_predicts(readme_config, tmp_path):
    torch.manual_seed(0)
    work_dir = str(tmp_path / 'work_dir')
    train_tool.main([readme_config, '--work-dir', work_dir])
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    saved = torch.load(checkpoint, weights_only=False)
    assert saved['meta']['iter'] == 2  # 4 images with boxes (filter_empty_gt), batch 2
    with weights_only_checkpoint_loading():
        model = init_detector(readme_config, checkpoint, device='cpu')
    assert type(model.neck).__name__ == 'FPN'
    image = glob.glob(str(tmp_path / 'data' / 'coco' / 'test' / '*.jpg'))[0]
    result = inference_detector(model, image)
    pred = result.pred_instances
    h, w = result.ori_shape
    assert 0 < len(pred) <= 200 and (pred.labels < 3).all()
    assert (pred.bboxes >= 0).all() and (pred.bboxes[:, 0::2] <= w).all()
    assert (pred.bboxes[:, 1::2] <= h).all()
    # the network's levels at 300 px are the ones its strides lay out
    feats = model.extract_feat(torch.zeros(1, 3, 300, 300))
    generator = model.bbox_head.prior_generator
    assert [tuple(f.shape[-2:]) for f in feats] == generator.expected_featmap_sizes((300, 300))


def test_ssd300_strides_on_the_fpn_stop_the_run_and_say_what_to_set(readme_config, tmp_path):
    strides = 'model.bbox_head.prior_generator.strides=[8,16,32,64,100,300]'
    with pytest.raises(ValueError) as err:
        train_tool.main([readme_config, '--work-dir', str(tmp_path / 'w'),
                         '--cfg-options', strides])  # fmt: skip
    message = str(err.value)
    assert 'level 5: the network gives 2x2, stride 300 expects 1x1' in message
    assert 'strides=(8, 16, 32, 64, 100, 150)' in message
    # what README quotes of the message (its parts between '...', lines joined) is in it
    (quoted,) = fenced_blocks('README.md', SECTION, 'text')
    for part in ' '.join(quoted.split()).split('...'):
        assert part.strip() in message
