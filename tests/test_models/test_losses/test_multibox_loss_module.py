import pytest
import torch
from mmdet.registry import MODELS

NUM_CLASSES = 4


def _mmdet_ssd_head():
    return MODELS.build(
        dict(
            type='SSDHead',
            num_classes=NUM_CLASSES,
            in_channels=(1, 1, 1, 1, 1, 1),
            anchor_generator=dict(
                type='SSDAnchorGenerator',
                scale_major=False,
                input_size=300,
                basesize_ratio_range=(0.15, 0.9),
                strides=[8, 16, 32, 64, 100, 300],
                ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
            ),
            train_cfg=dict(
                assigner=dict(
                    type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0
                ),
                smoothl1_beta=1.0,
                allowed_border=-1,
                pos_weight=-1,
                neg_pos_ratio=3,
                debug=False,
            ),
        )
    )


def _batch(pos_counts, num_priors=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    num_imgs = len(pos_counts)
    cls = torch.randn(num_imgs, num_priors, NUM_CLASSES + 1, generator=g) * 3
    preds = torch.randn(num_imgs, num_priors, 4, generator=g)
    targets = torch.randn(num_imgs, num_priors, 4, generator=g) * 2
    labels = torch.full((num_imgs, num_priors), NUM_CLASSES)
    for b, n in enumerate(pos_counts):
        idx = torch.randperm(num_priors, generator=g)[:n]
        labels[b, idx] = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return cls, preds, labels, targets


def _mmdet_loss(head, cls, preds, labels, targets):
    """mmdet's SSDHead.loss_by_feat: per-image loss_by_feat_single, summed by parse_losses."""
    pos = (labels >= 0) & (labels < NUM_CLASSES)
    avg_factor = sum(max(int(p.sum()), 1) for p in pos)  # PseudoSampler's num_pos per image
    loss_cls, loss_bbox = 0.0, 0.0
    for b in range(len(labels)):
        weights = pos[b, :, None].float().expand(-1, 4)
        lc, lb = head.loss_by_feat_single(
            cls[b],
            preds[b],
            None,
            labels[b],
            torch.ones(len(labels[b])),
            targets[b],
            weights,
            avg_factor=avg_factor,
        )
        loss_cls, loss_bbox = loss_cls + lc.sum(), loss_bbox + lb
    return loss_cls, loss_bbox


@pytest.mark.parametrize('pos_counts,seed', [([1, 5, 12], 0), ([30, 2], 1), ([40], 2)])
def test_equals_mmdet_ssd_head_when_every_image_has_positives(pos_counts, seed):
    head = _mmdet_ssd_head()
    loss = MODELS.build(dict(type='MultiBoxLoss', neg_pos_ratio=3, beta=1.0, alpha=1.0))
    cls, preds, labels, targets = _batch(pos_counts, seed=seed)
    out = loss(cls, preds, labels, targets)
    ref_cls, ref_bbox = _mmdet_loss(head, cls, preds, labels, targets)
    torch.testing.assert_close(out['loss_cls'], ref_cls)
    torch.testing.assert_close(out['loss_bbox'], ref_bbox)


def test_differs_from_mmdet_only_in_normaliser_for_images_without_positives():
    head = _mmdet_ssd_head()
    loss = MODELS.build(dict(type='MultiBoxLoss'))
    cls, preds, labels, targets = _batch([6, 0, 3], seed=3)
    out = loss(cls, preds, labels, targets)
    ref_cls, ref_bbox = _mmdet_loss(head, cls, preds, labels, targets)
    # mmdet divides by sum(max(n_i, 1)) = 10, the paper (and this loss) by N = 9.
    torch.testing.assert_close(out['loss_cls'] * 9, ref_cls * 10)
    torch.testing.assert_close(out['loss_bbox'] * 9, ref_bbox * 10)


def test_alpha_weights_localisation_and_repr():
    cls, preds, labels, targets = _batch([5, 2], seed=4)
    base = MODELS.build(dict(type='MultiBoxLoss'))(cls, preds, labels, targets)
    module = MODELS.build(dict(type='MultiBoxLoss', alpha=2.5))
    weighted = module(cls, preds, labels, targets)
    torch.testing.assert_close(weighted['loss_bbox'], 2.5 * base['loss_bbox'])
    torch.testing.assert_close(weighted['loss_cls'], base['loss_cls'])
    assert 'alpha=2.5' in repr(module)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='neg_pos_ratio'):
        MODELS.build(dict(type='MultiBoxLoss', neg_pos_ratio=-1))
