import pytest
import torch
import torch.nn.functional as F

from ssd_plugin.functional.head_outputs import level_views
from ssd_plugin.functional.multibox_loss import mine_hard_negatives, multibox_loss

NUM_CLASSES = 3  # background index 3


def _inputs(pos_counts, num_priors=40, seed=0, ignore=0):
    """Random scores/offsets; image b has pos_counts[b] positives, `ignore` ignored, rest bg."""
    g = torch.Generator().manual_seed(seed)
    num_imgs = len(pos_counts)
    cls = torch.randn(num_imgs, num_priors, NUM_CLASSES + 1, generator=g) * 2
    preds = torch.randn(num_imgs, num_priors, 4, generator=g)
    targets = torch.randn(num_imgs, num_priors, 4, generator=g)
    labels = torch.full((num_imgs, num_priors), NUM_CLASSES)
    for b, n in enumerate(pos_counts):
        perm = torch.randperm(num_priors, generator=g)
        labels[b, perm[:n]] = torch.randint(0, NUM_CLASSES, (n,), generator=g)
        labels[b, perm[n : n + ignore]] = -1
    return cls.requires_grad_(), preds.requires_grad_(), labels, targets


def _reference(cls, preds, labels, targets, ratio=3, beta=1.0, alpha=1.0):
    """Eq. 1-3 straight from the paper, one image at a time with a full sort."""
    total_cls, total_loc, num_pos = 0.0, 0.0, 0
    for b in range(len(labels)):
        ce = F.cross_entropy(cls[b], labels[b].clamp(min=0), reduction='none')
        pos = (labels[b] >= 0) & (labels[b] < NUM_CLASSES)
        neg = labels[b] == NUM_CLASSES
        n_neg = min(ratio * int(pos.sum()), int(neg.sum()))
        neg_losses = ce[neg].sort(descending=True).values[:n_neg]
        total_cls = total_cls + ce[pos].sum() + neg_losses.sum()
        loc = F.smooth_l1_loss(preds[b][pos], targets[b][pos], reduction='sum', beta=beta)
        total_loc = total_loc + loc
        num_pos += int(pos.sum())
    return total_cls / max(num_pos, 1), alpha * total_loc / max(num_pos, 1)


def test_hard_negative_count_per_image():
    cls, _, labels, _ = _inputs([2, 0, 7, 15], num_priors=40, ignore=3)
    conf = -F.log_softmax(cls.detach(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    pos = (labels >= 0) & (labels < NUM_CLASSES)
    neg = labels == NUM_CLASSES
    hard = mine_hard_negatives(conf, pos, neg, 3)
    # min(3 * pos, neg): 6, 0, min(21, 30) = 21, min(45, 22) = 22.
    assert hard.sum(1).tolist() == [6, 0, 21, 22]
    assert not (hard & ~neg).any()
    for b in range(len(labels)):
        chosen = conf[b][hard[b]]
        rest = conf[b][neg[b] & ~hard[b]]
        if len(chosen) and len(rest):
            assert chosen.min() >= rest.max()


def test_equals_formula_and_normalises_by_batch_positives():
    cls, preds, labels, targets = _inputs([2, 0, 7, 5], ignore=2)
    loss_cls, loss_bbox = multibox_loss(cls, preds, labels, targets, 3, 1.0, 1.0)
    ref_cls, ref_bbox = _reference(cls, preds, labels, targets)
    torch.testing.assert_close(loss_cls, ref_cls)
    torch.testing.assert_close(loss_bbox, ref_bbox)
    # Doubling the batch with a copy keeps the per-positive normalisation.
    cat = [torch.cat([t, t]) for t in (cls, preds, labels, targets)]
    loss_cls2, loss_bbox2 = multibox_loss(*cat)
    torch.testing.assert_close(loss_cls2, loss_cls)
    torch.testing.assert_close(loss_bbox2, loss_bbox)
    # An image without positives adds nothing, not even to N (mmdet's max(n, 1) would).
    extra = _inputs([0], seed=9)
    cat = [torch.cat([t, e]) for t, e in zip((cls, preds, labels, targets), extra)]
    loss_cls3, loss_bbox3 = multibox_loss(*cat)
    torch.testing.assert_close(loss_cls3, loss_cls)
    torch.testing.assert_close(loss_bbox3, loss_bbox)


@pytest.mark.parametrize('ratio,beta,alpha', [(1, 0.5, 2.0), (5, 0.11, 0.5), (0, 1.0, 1.0)])
def test_hyper_parameters(ratio, beta, alpha):
    cls, preds, labels, targets = _inputs([4, 3], seed=3)
    loss_cls, loss_bbox = multibox_loss(cls, preds, labels, targets, ratio, beta, alpha)
    ref_cls, ref_bbox = _reference(cls, preds, labels, targets, ratio, beta, alpha)
    torch.testing.assert_close(loss_cls, ref_cls)
    torch.testing.assert_close(loss_bbox, ref_bbox)


def test_gradients_equal_reference():
    cls, preds, labels, targets = _inputs([3, 6], seed=5)
    loss = sum(multibox_loss(cls, preds, labels, targets))
    grads = torch.autograd.grad(loss, [cls, preds])
    ref = sum(_reference(cls, preds, labels, targets))
    ref_grads = torch.autograd.grad(ref, [cls, preds])
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_no_positives_gives_zero_with_graph():
    cls, preds, labels, targets = _inputs([0, 0])
    targets[:] = float('nan')
    loss_cls, loss_bbox = multibox_loss(cls, preds, labels, targets)
    assert loss_cls.item() == 0 and loss_bbox.item() == 0
    assert loss_cls.requires_grad and loss_bbox.requires_grad
    (loss_cls + loss_bbox).backward()
    assert (cls.grad == 0).all() and (preds.grad == 0).all()


def test_non_finite_targets_off_positives_do_not_leak():
    cls, preds, labels, targets = _inputs([3, 2], seed=7)
    clean = multibox_loss(cls, preds, labels, targets)
    dirty_targets = targets.clone()
    off = ~((labels >= 0) & (labels < NUM_CLASSES))
    dirty_targets[off] = torch.tensor([float('nan'), float('inf'), -float('inf'), 1e30])
    dirty = multibox_loss(cls, preds, labels, dirty_targets)
    for a, b in zip(clean, dirty):
        torch.testing.assert_close(a, b)
    sum(dirty).backward()
    assert torch.isfinite(cls.grad).all() and torch.isfinite(preds.grad).all()


def test_half_precision_inputs_give_fp32_loss():
    cls, preds, labels, targets = _inputs([3, 2], seed=2)
    loss_cls, loss_bbox = multibox_loss(cls.half(), preds.half(), labels, targets.half())
    ref_cls, ref_bbox = _reference(
        cls.half().float(), preds.half().float(), labels, targets.half().float()
    )
    assert loss_cls.dtype == torch.float32
    torch.testing.assert_close(loss_cls, ref_cls)
    torch.testing.assert_close(loss_bbox, ref_bbox)


def test_level_views_equal_the_flattened_outputs_with_gradients():
    """Per-level head outputs give the flattened tensors' loss and gradients (rtol 1e-5)."""
    g = torch.Generator().manual_seed(11)
    shapes, anchors = [(5, 5), (3, 3), (1, 1)], [4, 6, 4]
    channels = NUM_CLASSES + 1
    cls_lvls = [
        torch.randn(3, a * channels, h, w, generator=g) * 2 for (h, w), a in zip(shapes, anchors)
    ]
    reg_lvls = [torch.randn(3, a * 4, h, w, generator=g) for (h, w), a in zip(shapes, anchors)]
    for t in cls_lvls + reg_lvls:
        t.requires_grad_()
    num_priors = sum(h * w * a for (h, w), a in zip(shapes, anchors))
    labels = torch.full((3, num_priors), NUM_CLASSES)
    labels[0, torch.randperm(num_priors, generator=g)[:9]] = torch.randint(
        0, NUM_CLASSES, (9,), generator=g
    )
    labels[1, torch.randperm(num_priors, generator=g)[:4]] = -1  # image 1: ignored, no positives
    labels[2, torch.randperm(num_priors, generator=g)[:2]] = 2
    targets = torch.randn(3, num_priors, 4, generator=g)

    def flat(levels, k):  # the head's layout: location-major, default box, channel
        return torch.cat([lvl.permute(0, 2, 3, 1).reshape(3, -1, k) for lvl in levels], dim=1)

    ours = multibox_loss(
        level_views(cls_lvls, anchors), level_views(reg_lvls, anchors), labels, targets
    )
    ref = multibox_loss(flat(cls_lvls, channels), flat(reg_lvls, 4), labels, targets)
    ref_plain = _reference(flat(cls_lvls, channels), flat(reg_lvls, 4), labels, targets)
    for a, b, c in zip(ours, ref, ref_plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(sum(ours), cls_lvls + reg_lvls)
    ref_grads = torch.autograd.grad(sum(ref_plain), cls_lvls + reg_lvls)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # Only the 11 positives and their 33 mined negatives receive gradients.
    rows = level_views(grads[:3], anchors)
    assert sum(int(r.ne(0).any(2).sum()) for r in rows) == 11 + 33


def test_mining_survives_logits_far_above_the_background():
    """A logit 200 above the background overflows the shifted sum: that box is recomputed."""
    cls, preds, labels, targets = _inputs([3, 2], seed=13)
    with torch.no_grad():
        cls[0, 5, 0] += 200.0  # the hardest negative of image 0 by far
        cls[1, 7, 1] += 120.0
    labels[0, 5], labels[1, 7] = NUM_CLASSES, NUM_CLASSES
    loss_cls, loss_bbox = multibox_loss(cls, preds, labels, targets)
    ref_cls, ref_bbox = _reference(cls, preds, labels, targets)
    torch.testing.assert_close(loss_cls, ref_cls)
    torch.testing.assert_close(loss_bbox, ref_bbox)
    assert loss_cls > 200 / 5  # both outliers were mined
