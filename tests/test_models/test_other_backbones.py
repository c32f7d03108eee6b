"""docs/backbones.md, "Use the SSD head with another backbone": SSD300 on mmdet backbones.

Swin-T is the page's worked config, read out of it; RegNetX-400MF and CSPDarknet (YOLOX-S
widths) get configs written the same way. Each config is the SSD300 ResNet-50 config with only
the backbone and the three channel settings the page names changed (checked), and each model
trains one step (the backbone's first weights move) and predicts on two 300 px images. Pretrained
weights are dropped: nothing is downloaded.
"""

import glob
import os
import os.path as osp

import pytest
import torch
from data_factory import drop_pretrained
from doc_blocks import config_blocks
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import InstanceData

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOC = 'docs/backbones.md'
BASE = 'ssd300_r50_8xb8-120e_coco.py'
#: what such a config may set, as the page says
CHANNEL_KEYS = ('model.neck.in_channels', 'model.neck.out_channels', 'model.bbox_head.in_channels')

#: backbone, and the channels of its two outputs (strides 8 and 16)
OTHERS = {
    'regnetx-400mf': (dict(type='RegNet', arch='regnetx_400mf', out_indices=(1, 2)), (64, 160)),
    'cspdarknet-s': (
        dict(type='CSPDarknet', deepen_factor=0.33, widen_factor=0.5, out_indices=(2, 3)),
        (128, 256),
    ),
}


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    """``{name: config file}``: the page's, and the others, next to links to configs/."""
    folder = tmp_path_factory.mktemp('backbones') / 'configs'
    os.makedirs(folder)
    for path in glob.glob(osp.join(REPO, 'configs', '*.py')):
        os.symlink(path, folder / osp.basename(path))
    ((rel, body),) = config_blocks(DOC).items()
    files = {'swin-t (docs)': folder / osp.basename(rel)}
    files['swin-t (docs)'].write_text(body)
    for name, (backbone, channels) in OTHERS.items():
        outs = (*channels, 512, 256, 256, 256)
        files[name] = folder / f'ssd300_{name}.py'
        files[name].write_text(
            f'_base_ = {"./" + BASE!r}\n'
            f'model = dict(\n'
            f'    backbone=dict(_delete_=True, **{backbone!r}),\n'
            f'    neck=dict(in_channels={channels!r}, out_channels={outs!r}),\n'
            f'    bbox_head=dict(in_channels={outs!r}),\n'
            f')\n'
        )
    return {name: str(path) for name, path in files.items()}


def _flat(value, prefix=''):
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(_flat(inner, f'{prefix}.{key}' if prefix else key))
        return items
    return {prefix: value}


@pytest.mark.parametrize('name', ['swin-t (docs)', *OTHERS])
def test_ssd_head_trains_and_predicts_on_the_backbone(configs, name):
    cfg = Config.fromfile(configs[name])
    base = Config.fromfile(osp.join(REPO, 'configs', BASE))
    changed = {
        key
        for key in _flat(cfg.to_dict()).keys() | _flat(base.to_dict()).keys()
        if _flat(cfg.to_dict()).get(key) != _flat(base.to_dict()).get(key)
    }
    assert {k for k in changed if not k.startswith('model.backbone.')} == set(CHANNEL_KEYS)
    assert cfg.model.neck.out_channels == cfg.model.bbox_head.in_channels
    channels = tuple(cfg.model.neck.in_channels)
    assert tuple(cfg.model.neck.out_channels[: len(channels)]) == channels

    drop_pretrained(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # two images: the extra layers' BatchNorm needs more than one value at the 1x1 level
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 300, 300), dtype=torch.uint8, generator=generator)
    samples = []
    for boxes, labels in (([[30, 40, 150, 200], [160, 20, 290, 120]], [3, 17]),
                          ([[10, 100, 280, 290]], [0])):  # fmt: skip
        sample = DetDataSample(metainfo=dict(img_shape=(300, 300), ori_shape=(300, 300),
                                             scale_factor=(1.0, 1.0)))  # fmt: skip
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor(labels)
        )
        samples.append(sample)
    data = dict(inputs=list(images), data_samples=samples)

    # the backbone's two outputs have its channels, at SSD300's first two sizes, and the extra
    # layers complete SSD300's six levels: the paper's 8732 default boxes
    inputs = model.data_preprocessor(data, training=False)['inputs']
    feats = model.backbone(inputs)
    assert [tuple(f.shape[1:]) for f in feats] == [(channels[0], 38, 38), (channels[1], 19, 19)]
    levels = [tuple(f.shape[2:]) for f in model.neck(feats)]
    assert levels == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    priors = model.bbox_head.prior_generator.num_base_priors
    assert sum(h * w * k for (h, w), k in zip(levels, priors)) == 8732

    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    first = next(p for p in model.backbone.parameters() if p.requires_grad)
    before = first.detach().clone()
    losses = model.train_step(data, optim_wrapper)
    assert set(losses) >= {'loss_cls', 'loss_bbox'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert not torch.equal(first.detach(), before)  # the step reached the backbone's stem

    model.eval()
    for result in model.test_step(data):
        pred = result.pred_instances
        assert 0 < len(pred.bboxes) <= cfg.model.test_cfg.max_per_img
        assert (pred.bboxes >= 0).all() and (pred.bboxes <= 300).all()
        assert (pred.scores >= cfg.model.test_cfg.score_thr).all() and (pred.labels < 80).all()
