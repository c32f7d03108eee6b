"""The bounded ONNX post-processing against the unbounded graph and ``predict_by_feat``.

SSD300-COCO's head (8732 default boxes, 80 classes, the paper's test_cfg: score 0.01, 400 per
class, NMS 0.45, 200 per image) on the benchmarks' synthetic head outputs
(``tools/benchmarks/synthetic.py``): ``trained`` (the score shape of a trained model: tens of
thousands of candidates above 0.01), ``untrained`` (every score near 1/81: all 700k candidates
pass) and ``crowded`` (300 objects per image, each seen by 8 overlapping high-scoring boxes: NMS
removes most of a prefix, so the graph must widen it). Each at batch 1 and 3, in ONNX Runtime,
both for the post-processing graph on ``decode``'s outputs and for the head graph
(``export_head_postprocess_onnx``: decoding too) on the per-level outputs.
"""

import os.path as osp
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from ssd_plugin.deploy import PostProcess, export_head_postprocess_onnx, postprocess_onnx

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'benchmarks'))  # the benchmarks' generators
from synthetic import REGIMES, head_inputs  # noqa: E402

SIZE = 300
FEATMAP_SIZES = [(s, s) for s in (38, 19, 10, 5, 3, 1)]


@pytest.fixture(scope='module')
def head():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ssd300_vgg16_8xb8-120e_coco.py'))
    return MODELS.build(dict(cfg.model.bbox_head, test_cfg=cfg.model.test_cfg)).eval()


@pytest.fixture(scope='module')
def graphs(head):
    """``{bounded: (eager PostProcess, ONNX Runtime session)}``."""
    out = {}
    for bounded in (True, False):
        post = PostProcess(dict(head.test_cfg), head.channel_labels, bounded)
        model = postprocess_onnx(post, 8732, 80)
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=['CPUExecutionProvider'])  # fmt: skip
        out[bounded] = post, session
    return out


def predicted(head, regime: str, batch: int):
    """Synthetic head outputs of ``regime``, the batch's metas and ``predict_by_feat``'s
    results."""
    priors = torch.cat(head.prior_generator.grid_priors(FEATMAP_SIZES, device='cpu'))
    inputs = head_inputs(batch, regime, priors, FEATMAP_SIZES, head.num_base_priors,
                         head.num_classes, SIZE, seed=3)  # fmt: skip
    metas = [dict(img_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0))] * batch
    with torch.no_grad():
        ref = head.predict_by_feat(inputs.cls_scores, inputs.bbox_preds, batch_img_metas=metas)
    return inputs, metas, ref


def decoded(head, regime: str, batch: int):
    """Synthetic head outputs of ``regime``: ``predict_by_feat``'s results and ``decode``'s."""
    inputs, metas, ref = predicted(head, regime, batch)
    with torch.no_grad():
        scores, boxes = head.decode(inputs.cls_scores, inputs.bbox_preds, metas)
    return ref, scores, boxes


def assert_same(dets, labels, ref, score_tol=0.0, box_tol=0.0):
    """Padded ``(dets, labels)`` hold ``ref``'s detections (ties in any order)."""
    for i, result in enumerate(ref):
        num = len(result.scores)
        assert (labels[i, :num] >= 0).all() and (labels[i, num:] == -1).all()
        assert (dets[i, num:] == 0).all()
        got = np.concatenate([dets[i, :num], labels[i, :num, None].astype(np.float32)], 1)
        want = torch.cat([result.bboxes, result.scores[:, None], result.labels[:, None]], 1)
        # sort both by score, label, then box: equal scores may come in another order
        got, want = (a[np.lexsort(a[:, ::-1].T)] for a in (got, want.numpy()))
        np.testing.assert_allclose(got[:, 4], want[:, 4], rtol=0, atol=score_tol)
        np.testing.assert_array_equal(got[:, 5], want[:, 5])
        np.testing.assert_allclose(got[:, :4], want[:, :4], rtol=0, atol=box_tol)


@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('regime', REGIMES)
def test_bounded_graph_equals_unbounded_and_pytorch(head, graphs, regime, batch):
    ref, scores, boxes = decoded(head, regime, batch)
    counts = [len(r.scores) for r in ref]
    feeds = {'scores': scores.numpy(), 'boxes': boxes.numpy()}
    bounded = graphs[True][1].run(None, feeds)
    unbounded = graphs[False][1].run(None, feeds)
    # the graphs take decode's scores and boxes as they are: only NMS's IoU differs
    # (ONNX Runtime computes it in float32, torchvision's in the head's float64)
    assert_same(*bounded, ref)
    assert_same(*unbounded, ref)
    np.testing.assert_array_equal(bounded[1], unbounded[1])
    # the eager module (what the graph is traced from) agrees, and ends where expected
    dets, labels, stage = graphs[True][0].run(scores, boxes)
    assert_same(dets.numpy(), labels.numpy(), ref)
    if regime == 'crowded':
        # a prefix of 400 boxes keeps too few after NMS: the graph widened
        assert stage > 0 and min(counts) == 200
    else:
        assert stage == 0 and min(counts) == 200  # the first prefix was exact


@pytest.fixture(scope='module')
def head_graph(head):
    """ONNX Runtime session of the head's bounded post-processing (decode included)."""
    model = export_head_postprocess_onnx(head, FEATMAP_SIZES, (SIZE, SIZE))
    return ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('regime', REGIMES)
def test_head_graph_equals_predict_by_feat(head, head_graph, regime, batch):
    """The head's outputs in, ``predict_by_feat``'s detections out."""
    inputs, _, ref = predicted(head, regime, batch)
    names = [i.name for i in head_graph.get_inputs()]
    levels = range(len(FEATMAP_SIZES))
    assert names == [f'cls_score_{i}' for i in levels] + [f'bbox_pred_{i}' for i in levels]
    feeds = {n: t.numpy() for n, t in zip(names, inputs.cls_scores + inputs.bbox_preds)}
    dets, labels = head_graph.run(['dets', 'labels'], feeds)
    assert dets.shape == (batch, 200, 5) and labels.shape == (batch, 200)
    # softmax and box decoding run in ONNX Runtime: float32 rounding apart
    assert_same(dets, labels, ref, score_tol=1e-6, box_tol=1e-3)


def test_head_export_checks_and_records(head, tmp_path):
    path = tmp_path / 'head.onnx'
    model = export_head_postprocess_onnx(head, FEATMAP_SIZES, (SIZE, SIZE), str(path),
                                         bounded=False)  # fmt: skip
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta['postprocess'] == '"unbounded"' and meta['input_size'] == '[300, 300]'
    assert [o.name for o in model.graph.output] == ['dets', 'labels']
    with pytest.raises(ValueError, match='levels'):
        export_head_postprocess_onnx(head, FEATMAP_SIZES[:-1], (SIZE, SIZE))
    with pytest.raises(ValueError, match='opset >= 11'):
        export_head_postprocess_onnx(head, FEATMAP_SIZES, (SIZE, SIZE), opset=10)


def test_prefix_stage_says_when_it_is_exact(head):
    """A prefix stage reports ``done`` when its prefix held every candidate (or kept 200 boxes,
    above), not when NMS left fewer; the unbounded-only module has one stage."""
    post = PostProcess(dict(head.test_cfg, score_thr=0.8), head.channel_labels)
    stages = post.stages(8732)
    assert [s.prefix for s in stages] == [400, 1600, 6400, None]
    assert len(PostProcess(dict(head.test_cfg), head.channel_labels, False).stages(8732)) == 1
    stage = stages[0]
    _, scores, boxes = decoded(head, 'trained', 2)
    # every default box above the stage's own threshold is in its prefix, and NMS kept fewer
    # than max_per_img: exact because the prefix is complete
    _, labels, done = stage(scores, boxes)
    assert ((scores.amax(2) > stage.score_thr).sum(1) < stage.prefix).all()
    assert ((labels >= 0).sum(1) < stage.max_per_img).all() and bool(done)
    # crowded: more candidates above the threshold than the prefix holds, and NMS kept fewer
    # than max_per_img of them: not exact
    _, crowded_scores, crowded_boxes = decoded(head, 'crowded', 1)
    _, crowded_labels, crowded_done = stage(crowded_scores, crowded_boxes)
    assert ((crowded_scores.amax(2) > stage.score_thr).sum(1) >= stage.prefix).all()
    assert ((crowded_labels >= 0).sum(1) < stage.max_per_img).all() and not bool(crowded_done)


def test_clear_errors(head):
    with pytest.raises(ValueError, match='iou_threshold'):
        PostProcess(dict(score_thr=0.01), head.channel_labels)
    with pytest.raises(ValueError, match='score_thr must be >= 0'):
        PostProcess(dict(head.test_cfg, score_thr=-1), head.channel_labels)
    with pytest.raises(ValueError, match='opset >= 11'):
        postprocess_onnx(PostProcess(dict(head.test_cfg), head.channel_labels), 8732, 80, 10)
