"""Whole-detector inference: ours (float32, bf16) against mmdet's and torchvision's SSDs and our
ONNX export (float32, int8) in ONNX Runtime and OpenVINO, like with like.

Usage::

    python tools/benchmarks/bench_inference.py --repeats 3          # CPU, batch 1 and 8
    python tools/benchmarks/bench_inference.py --device cuda --repeats 10
    python tools/benchmarks/bench_inference.py --checkpoint configs/ssd_demo_shapes.py \\
        work_dirs/demo/epoch_1.pth
    python tools/benchmarks/bench_inference.py --quick              # SSDLite, batch 1 (tests)
    python tools/benchmarks/bench_inference.py --families ssd300 --no-onnx --regime random

Families (``--families``), each timed at ``--batches`` (batch 1: latency; batch 8: throughput):

- ``ssd300``: ours from ``configs/ssd300_vgg16_8xb8-120e_coco.py``; mmdet's
  ``ssd/ssd300_coco.py``; torchvision's ``ssd300_vgg16``;
- ``ssdlite``: ours from ``configs/ssdlite_mobilenetv2_8xb24-600e_coco.py`` (and
  ``configs/ssdlite320_mobilenetv3-large_torchvision_coco.py`` when present); mmdet's
  ``ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py``; torchvision's
  ``ssdlite320_mobilenet_v3_large``;
- ``--checkpoint CFG CKPT`` (repeatable) adds ours with trained weights (in CFG's family, or a
  family of its own for another config such as the demo's).

Every detector gets random weights (PyTorch's default initialisation, no download) unless a
checkpoint is given, 81 classes (COCO's 80 and background) and the family's input size. Like with
like:

- one score threshold for all: our config's (``--score-thr`` sets another); torchvision's also get
  our NMS IoU, per-class top-k and per-image cap; mmdet's keep the rest of their test_cfg (its
  ``nms_pre`` caps candidates per level, ours per class);
- outputs that pass it (``--regime trained``, default): each random detector's class-logit convs
  are rescaled, once and untimed, so that on the benchmark's images every logit channel has mean
  0 and std 2, the background's mean 5: the score shape of ``bench_head.py``'s trained regime, the
  same for every detector, with hundreds of detections per image instead of none (mmdet's 0.02)
  or every default box (0.01); ``--regime random`` keeps PyTorch's initialisation.

mmdet 3.3's ``SSDHead`` never sets ``loss_cls`` and its ``predict`` reads it: the script sets it to
an empty object. Rows besides the peers' float32:

- ``bf16+cl``: ours with the network under bf16 autocast and channels_last
  (``ssd_plugin.engine.amp``, as ``--amp``), post-processing float32; only where the CPU has
  native bf16 (else the reason is printed);
- ``onnxruntime``: ours exported to ONNX (``ssd_plugin.deploy.export_onnx``) in ONNX Runtime (CPU;
  on CUDA only with its CUDAExecutionProvider, else the rows are skipped): raw outputs (``net``:
  the network and the graph's normalisation) and with the bounded post-processing in the graph
  (``with_nms``, ``full``);
- ``onnxruntime int8``: the same graphs quantised (``ssd_plugin.deploy.quantize``, QDQ, per
  channel, ``--int8-target``: default this CPU's), calibrated on the benchmark's own images
  (accuracy: ``tools/deploy/quantize_onnx.py --eval``); CPU only;
- ``openvino`` / ``openvino int8``: the same float32 graphs in OpenVINO (``f32`` precision hint)
  and quantised by NNCF (``ssd_plugin.deploy.openvino_quantize``) on the same images; CPU only,
  where ``openvino`` (and ``nncf`` for int8) is installed.

A second table puts every row's ``full`` time against the peers' float32 (``mmdet / this``,
``torchvision / this``; above 1: faster than the peer).

The inputs are synthetic 640x480 images put through each config's test pipeline once, untimed
(torchvision's and ONNX Runtime get the same resized pixels). Stages, per implementation:

- ``net``: the network on the preprocessed batch, up to the head's outputs (ours' and mmdet's:
  ``extract_feat`` and ``bbox_head``; torchvision's: ``backbone`` and ``head``);
- ``post``: post-processing of those outputs (``predict_by_feat``; torchvision's default boxes,
  ``postprocess_detections`` and ``transform.postprocess``); for ONNX Runtime ``full - net``
  (marked ``~``);
- ``full``: from the batch of resized pixels to detections (``model.test_step`` for ours and
  mmdet's: data preprocessor included; ``model(images)`` for torchvision's).

``dets / image`` says how much work post-processing had (with ``--regime random`` every score
sits near 1/81: above 0.01, all candidates, and below 0.02, none).

Timing rules: see ``bench_common.py`` (interleaved, warm-up, best of ``--repeats``, ratios
``peer / ours``, ``ours`` being the family's first config with random weights).
"""

import argparse
import copy
import os.path as osp
import sys
import tempfile
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

import bench_common as common
import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.dataset import Compose, pseudo_collate
from mmengine.runner import load_checkpoint
from synthetic import random_images
from torchvision.models import detection

import ssd_plugin  # noqa: F401  (registers the components)
from ssd_plugin.deploy.quantize import INT8_TARGETS, int8_settings
from ssd_plugin.deploy.runtimes import load_runtime
from ssd_plugin.engine.amp import autocast_network, choose_amp
from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading

FAMILIES = {
    'ssd300': dict(
        ours=['ssd300_vgg16_8xb8-120e_coco.py'],
        mmdet='ssd/ssd300_coco.py',
        torchvision='ssd300_vgg16',
    ),
    'ssdlite': dict(
        ours=[
            'ssdlite_mobilenetv2_8xb24-600e_coco.py',
            'ssdlite320_mobilenetv3-large_torchvision_coco.py',
        ],  # fmt: skip
        mmdet='ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
        torchvision='ssdlite320_mobilenet_v3_large',
    ),
}
STAGES = ('net', 'post', 'full')
REGIMES = ('trained', 'random')
CALIBRATION_IMAGES = 8  # images the trained-like rescaling and the int8 calibration see


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Whole-detector inference: ours vs mmdet vs '
                                     'torchvision vs our ONNX export')  # fmt: skip
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--families', nargs='+', choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--repeats', type=int, default=2, help='timed rounds (best is reported)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--seed', type=int, default=0, help='seed of the synthetic images')
    parser.add_argument('--checkpoint', nargs=2, action='append', default=[],
                        metavar=('CFG', 'CKPT'),
                        help='also time ours with trained weights')  # fmt: skip
    parser.add_argument('--score-thr', type=float, help="set every detector's score threshold")
    parser.add_argument(
        '--regime',
        choices=REGIMES,
        default='trained',
        help='class-logit regime of random detectors (default trained)',
    )
    parser.add_argument('--no-onnx', action='store_true', help='skip the ONNX Runtime rows')
    parser.add_argument('--no-int8', action='store_true', help='skip the int8 rows')
    parser.add_argument('--no-openvino', action='store_true', help='skip the OpenVINO rows')
    parser.add_argument('--int8-target', default='auto', choices=['auto', *INT8_TARGETS],
                        help='ONNX Runtime int8 target CPU (default: this one)')  # fmt: skip
    parser.add_argument('--no-bf16', action='store_true', help='skip the bf16 rows')
    parser.add_argument('--quick', action='store_true',
                        help="SSDLite's first config, batch 1, one timed round: proves the "
                        'script runs')  # fmt: skip
    return common.parse_with_quick(parser, argv, families=['ssdlite'], batches=[1], repeats=1)


def in_memory_pipeline(cfg: Config) -> Compose:
    """The config's test pipeline reading an in-memory image instead of a file."""
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pipeline[0] = dict(type='mmdet.LoadImageFromNDArray')
    return Compose(pipeline)


def input_size(cfg: Config) -> int:
    """The square input size of an SSD config (its test pipeline's Resize)."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if step['type'].split('.')[-1] == 'Resize':
            scale = step['scale']
            return int(scale if isinstance(scale, int) else scale[0])
    raise ValueError('the test pipeline has no Resize')


def last_conv(module: nn.Module) -> nn.Conv2d:
    """The last ``Conv2d`` of a head level's classification branch (the logit conv)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs or convs[-1].bias is None:
        raise TypeError(f'no class-logit Conv2d with a bias in {type(module).__name__}')
    return convs[-1]


def make_trained_like(convs: List[nn.Conv2d], columns: int, background: int,
                      net: Callable) -> None:  # fmt: skip
    """Rescale the class-logit ``convs`` in place so that, on what ``net()`` feeds them, every
    logit channel has mean 0 (background, channel ``background`` of each box's ``columns``: 5)
    and std 2 (see the module docstring)."""
    outputs = {}
    hooks = [conv.register_forward_hook(lambda m, i, o: outputs.__setitem__(m, o.detach().float()))
             for conv in convs]  # fmt: skip
    try:
        with torch.no_grad():
            net()
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for conv in convs:
            out = outputs[conv]
            # random SSDLites' logits vary by 1e-15 to 1e-28 (vanishing features): any
            # non-zero spread is rescaled (float32 keeps its relative precision down there)
            std = torch.nan_to_num(out.std((0, 2, 3)), nan=1.0).clamp(min=1e-35)
            scale = 2 / std
            target = torch.zeros_like(scale)
            target[background::columns] = 5
            conv.weight.mul_(scale.to(conv.weight)[:, None, None, None])
            conv.bias.copy_((conv.bias - out.mean((0, 2, 3))) * scale + target)


class Detector:
    """An mmdet-style single-stage detector (ours or mmdet's) and its three stages."""

    kind = 'pytorch'

    def __init__(self, name: str, cfg: Config, device: str, checkpoint: Optional[str] = None,
                 score_thr: Optional[float] = None) -> None:  # fmt: skip
        if score_thr is not None:
            cfg.model.test_cfg.score_thr = score_thr
        self.name, self.cfg = name, cfg
        model = common.build_detector(cfg.model)
        if checkpoint:
            with weights_only_checkpoint_loading():  # mmengine's checkpoints, torch >= 2.6
                load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
        if not hasattr(model.bbox_head, 'loss_cls'):  # mmdet 3.3's SSDHead (see the docstring)
            model.bbox_head.loss_cls = SimpleNamespace()
        self.model = model.to(device).eval()
        self.pipeline = in_memory_pipeline(cfg)
        self.settings = ConfigDict(cfg.model.test_cfg).to_dict()
        self.trained = bool(checkpoint)

    def make_trained_like(self, data: Dict) -> None:
        """See :func:`make_trained_like`; ``data``: this detector's pixels of the images."""
        head = self.model.bbox_head
        convs = [last_conv(level) for level in head.cls_convs]
        columns = head.cls_out_channels  # background last (ours and mmdet's)
        make_trained_like(convs, columns, columns - 1, self.stages(data)['net'])

    def variant(self, name: str, kind: str, model: nn.Module) -> 'Detector':
        """The same detector with another (transformed) model."""
        other = copy.copy(self)
        other.name, other.kind, other.model = name, kind, model
        return other

    def pixels(self, images: List[np.ndarray]) -> Dict:
        """The images through the config's test pipeline, collated."""
        return pseudo_collate([self.pipeline(dict(img=img, img_id=i)) for i, img in
                               enumerate(images)])  # fmt: skip

    def stages(self, data: Dict) -> Dict[str, Callable]:
        model = self.model
        pre = model.data_preprocessor(data, False)
        metas = [sample.metainfo for sample in pre['data_samples']]

        def net():
            return model.bbox_head(model.extract_feat(pre['inputs']))

        outs = net()
        return dict(
            net=net,
            post=lambda: model.bbox_head.predict_by_feat(
                *outs, batch_img_metas=metas, rescale=True
            ),  # fmt: skip
            full=lambda: model.test_step(data),
        )

    @staticmethod
    def num_detections(full_result) -> float:
        return float(np.mean([len(r.pred_instances) for r in full_result]))


class TorchvisionDetector:
    """torchvision's SSD / SSDLite builder with random weights and given post-processing."""

    kind = 'pytorch'

    def __init__(self, name: str, builder: str, device: str, settings: ConfigDict) -> None:
        self.name = name
        self.settings = dict(score_thresh=settings.score_thr,
                             nms_thresh=settings.nms.iou_threshold,
                             topk_candidates=settings.nms_pre,
                             detections_per_img=settings.max_per_img)  # fmt: skip
        model = getattr(detection, builder)(weights=None, weights_backbone=None, num_classes=81,
                                            **self.settings)  # fmt: skip
        self.model = model.to(device).eval()
        self.trained = False

    def make_trained_like(self, data: Dict) -> None:
        """See :func:`make_trained_like`; ``data``: ours' pixels of the images."""
        head = self.model.head.classification_head
        convs = [last_conv(level) for level in head.module_list]
        make_trained_like(convs, head.num_columns, 0, self.stages(data)['net'])  # background 0

    def stages(self, data: Dict) -> Dict[str, Callable]:
        model = self.model
        device = next(model.parameters()).device
        # the same resized pixels as ours, RGB in 0-1 as torchvision expects
        images = [img.flip(0).to(device).float() / 255 for img in data['inputs']]
        sizes = [tuple(img.shape[-2:]) for img in images]
        image_list, _ = model.transform(images)

        def net():
            features = list(model.backbone(image_list.tensors).values())
            return features, model.head(features)

        features, head_outputs = net()

        def post():
            anchors = model.anchor_generator(image_list, features)
            dets = model.postprocess_detections(head_outputs, anchors, image_list.image_sizes)
            return model.transform.postprocess(dets, image_list.image_sizes, sizes)

        return dict(net=net, post=post, full=lambda: model(images))

    @staticmethod
    def num_detections(full_result) -> float:
        return float(np.mean([len(r['scores']) for r in full_result]))


class OnnxDetector:
    """Ours exported to ONNX, in ONNX Runtime: raw outputs (``net``) and ``with_nms`` (``full``)."""

    kind = 'onnxruntime'

    def __init__(self, name: str, detector: Detector, device: str, workdir: str) -> None:
        from ssd_plugin.deploy import export_onnx

        self.name, self.device = name, device
        self.settings = detector.settings
        size = input_size(detector.cfg)
        model = detector.model if device == 'cpu' else copy.deepcopy(detector.model).cpu()
        self.paths = {}
        for stage, with_nms in (('net', False), ('full', True)):
            self.paths[stage] = osp.join(workdir, f'{name.replace(" ", "_")}_{stage}.onnx')
            export_onnx(model, self.paths[stage], (size, size), with_nms=with_nms)
        self.sessions = self.load(self.paths)

    def load(self, paths: Dict[str, str]) -> Dict:
        import onnxruntime as ort

        options = common.ort_session_options()
        providers = ['CUDAExecutionProvider'] if self.device == 'cuda' else ['CPUExecutionProvider']
        return {stage: ort.InferenceSession(path, options, providers=providers)
                for stage, path in paths.items()}  # fmt: skip

    def int8(self, name: str, calibration: np.ndarray, target: str = 'auto') -> 'OnnxDetector':
        """These graphs quantised to int8 for ``target`` CPUs, calibrated on ``calibration`` (a
        pixel batch)."""
        from ssd_plugin.deploy.quantize import quantize_onnx

        other = copy.copy(self)
        other.name, other.kind = name, f'onnxruntime int8 ({int8_settings(target).target})'
        other.paths = {}
        for stage, path in self.paths.items():
            other.paths[stage] = path.replace('.onnx', '_int8.onnx')
            quantize_onnx(path, other.paths[stage], [calibration], int8_settings(target),
                          note=f'{len(calibration)} benchmark images')  # fmt: skip
        other.sessions = other.load(other.paths)
        return other

    def openvino(self, name: str) -> 'OnnxDetector':
        """The same float32 graphs in OpenVINO."""
        other = copy.copy(self)
        other.name, other.kind = name, 'openvino'
        other.sessions = {stage: load_runtime(path, 'openvino', torch.get_num_threads())
                          for stage, path in self.paths.items()}  # fmt: skip
        return other

    def openvino_int8(self, name: str, calibration: np.ndarray) -> 'OnnxDetector':
        """These float32 graphs quantised by NNCF, in OpenVINO."""
        from ssd_plugin.deploy.openvino_quantize import quantize_openvino

        other = copy.copy(self)
        other.name, other.kind = name, 'openvino int8 (nncf)'
        other.paths = {stage: quantize_openvino(path, path.replace('.onnx', '_ov_int8.xml'),
                                                [calibration]) for stage, path in
                       self.paths.items()}  # fmt: skip
        other.sessions = {stage: load_runtime(path, 'openvino', torch.get_num_threads())
                          for stage, path in other.paths.items()}  # fmt: skip
        return other

    def stages(self, data: Dict) -> Dict[str, Callable]:
        # the graph takes 0-255 pixels in the loader's (BGR) order and normalises itself
        pixels = np.stack([img.numpy() for img in data['inputs']]).astype(np.float32)
        if self.kind.startswith('openvino'):  # runtimes.load_runtime's functions
            return {stage: (lambda run=run: run(pixels)) for stage, run in self.sessions.items()}
        return {stage: (lambda s=session: s.run(None, {'input': pixels}))
                for stage, session in self.sessions.items()}  # fmt: skip

    @staticmethod
    def num_detections(full_result) -> float:
        return float((full_result[1] >= 0).sum(1).mean())


def onnx_available(device: str) -> Optional[str]:
    """Why ONNX Runtime rows cannot run here, or None."""
    try:
        import onnxruntime as ort
    except ImportError:
        return 'onnxruntime is not installed'
    if device == 'cuda' and 'CUDAExecutionProvider' not in ort.get_available_providers():
        return 'onnxruntime has no CUDAExecutionProvider here'
    return None


def openvino_available(int8: bool) -> Optional[str]:
    """Why OpenVINO rows (``int8``: NNCF's too) cannot run here, or None."""
    for module in ('openvino', 'nncf') if int8 else ('openvino',):
        try:
            __import__(module)
        except ImportError:
            return f'{module} is not installed'
    return None


def stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def build_family(family: str, args, workdir: str, images: List[np.ndarray]) -> List:
    """The implementations of one family; ours (random weights, first config) first."""
    spec = FAMILIES.get(family)
    if spec:
        configs = [
            common.repo_config(name)
            for name in spec['ours']
            if osp.isfile(common.repo_config(name))
        ]
        configs = configs[:1] if args.quick else configs
    else:  # the family of a --checkpoint config
        configs = [cfg for cfg, _ in args.checkpoint if stem(cfg) == family][:1]
    ours = [Detector(f'ours {stem(path)}', Config.fromfile(path), args.device,
                     score_thr=args.score_thr) for path in configs]  # fmt: skip
    for cfg_path, ckpt in args.checkpoint:
        if any(osp.abspath(cfg_path) == osp.abspath(path) for path in configs):
            name = f'ours {stem(cfg_path)} (trained: {osp.basename(ckpt)})'
            cfg = Config.fromfile(cfg_path)
            ours.append(Detector(name, cfg, args.device, ckpt, args.score_thr))
    impls = list(ours)
    score_thr = ours[0].settings['score_thr']  # one threshold for every detector
    if spec:
        mm_cfg = Config.fromfile(common.mmdet_config(spec['mmdet']))
        impls.append(Detector(f'mmdet {stem(spec["mmdet"])}', mm_cfg, args.device,
                              score_thr=score_thr))  # fmt: skip
        impls.append(TorchvisionDetector(f'torchvision {spec["torchvision"]}',
                                         spec['torchvision'], args.device,
                                         ConfigDict(ours[0].settings)))  # fmt: skip
    calibration = images[:CALIBRATION_IMAGES]
    ours_data = ours[0].pixels(calibration)
    if args.regime == 'trained':
        for impl in impls:
            if not impl.trained:
                own = impl.pixels(calibration) if isinstance(impl, Detector) else ours_data
                impl.make_trained_like(own)
    if not args.no_bf16:
        choice = choose_amp(args.device)
        print(f'{family}: {choice.describe()}')
        if choice.dtype is not None:
            bf16 = [d.variant(f'{d.name} {str(choice.dtype)[6:]}+cl', 'pytorch autocast',
                              copy.deepcopy(d.model)) for d in ours]  # fmt: skip
            for variant in bf16:
                autocast_network(variant.model, choice)
            impls[len(ours) : len(ours)] = bf16
    if not args.no_onnx and not onnx_available(args.device):
        onnx = [OnnxDetector(f'onnxruntime {d.name}', d, args.device, workdir) for d in ours]
        impls += onnx
        pixels = np.stack([img.numpy() for img in ours_data['inputs']]).astype(np.float32)
        if not args.no_int8 and args.device == 'cpu':
            impls += [d.int8(d.name.replace('onnxruntime', 'onnxruntime int8'), pixels,
                             args.int8_target) for d in onnx]  # fmt: skip
        if not args.no_openvino and args.device == 'cpu':
            impls += openvino_rows(family, onnx, pixels, int8=not args.no_int8)
    return impls


def openvino_rows(family: str, onnx: List[OnnxDetector], pixels: np.ndarray,
                  int8: bool) -> List[OnnxDetector]:  # fmt: skip
    """The ONNX graphs in OpenVINO, float32 and (``int8``) NNCF-quantised on ``pixels``, where
    the packages are installed (else the reason is printed)."""
    why = openvino_available(int8=False)
    if why:
        print(f'{family}: OpenVINO rows skipped: {why}')
        return []
    rows = [d.openvino(d.name.replace('onnxruntime', 'openvino')) for d in onnx]
    why = openvino_available(int8=True) if int8 else None
    if why:
        print(f'{family}: OpenVINO int8 rows skipped: {why}')
    elif int8:
        rows += [d.openvino_int8(d.name.replace('onnxruntime', 'openvino int8'), pixels)
                 for d in onnx]  # fmt: skip
    return rows


def bench_family(family: str, args, workdir: str, images) -> Tuple[List[List[str]], List]:
    """The family's table rows, and ``(family, batch, name, full ms)`` of every implementation."""
    impls = build_family(family, args, workdir, images)
    ours_cfg = impls[0].cfg
    print(f'\n## {family}: input {input_size(ours_cfg)} px')
    for impl in impls:
        print(f'- {impl.name} ({impl.kind}): post-processing {impl.settings}')
    sys.stdout.flush()
    pipeline_of = {impl.name: impl for impl in impls if isinstance(impl, Detector)}
    print(f'- score threshold {impls[0].settings["score_thr"]} for every detector; class logits: '
          f'{args.regime}')  # fmt: skip
    rows, fulls = [], []
    for batch in args.batches:
        batch_images = images[:batch]
        ours_data = impls[0].pixels(batch_images)
        fns = {}
        with torch.inference_mode():
            for impl in impls:
                own = pipeline_of.get(impl.name)
                data = own.pixels(batch_images) if own is not None else ours_data
                for stage, fn in impl.stages(data).items():
                    fns[(impl.name, stage)] = fn
            sync = common.synchronizer(args.device)
            best, results = common.interleaved_best(fns, args.repeats, args.warmup, sync)
        ref = {stage: best.get((impls[0].name, stage)) for stage in STAGES}
        for impl in impls:
            times = {stage: best.get((impl.name, stage)) for stage in STAGES}
            post = common.ms(times['post'])
            if times['post'] is None and times['net'] is not None:
                # best full minus best net, two separate minima: on a busy machine it can
                # come out below 0, which means "within the noise", not a negative time
                times['post'] = max(times['full'] - times['net'], 0.0)
                post = f'~{times["post"]:.1f}'
            dets = impl.num_detections(results[(impl.name, 'full')])
            net, full = common.ms(times['net']), common.ms(times['full'])
            rows.append([family, batch, impl.name, net, post, full,
                         f'{batch * 1e3 / times["full"]:.2f}', f'{dets:.1f}',
                         *(common.ratio(times[s], ref[s]) for s in STAGES)])  # fmt: skip
            fulls.append((family, batch, impl.name, times['full']))
            print(f'{family} batch {batch}: {impl.name}: net {net} ms, post {post} ms, '
                  f'full {full} ms', flush=True)  # fmt: skip
    return rows, fulls


def peer_rows(fulls: List) -> List[List[str]]:
    """Each implementation's full time against its family's mmdet and torchvision float32 ones
    at the same batch (``peer / this``)."""
    peers = {}
    for family, batch, name, full in fulls:
        for peer in ('mmdet', 'torchvision'):
            if name.startswith(peer + ' '):
                peers[(family, batch, peer)] = full
    return [[family, batch, name, common.ms(full),
             common.ratio(peers.get((family, batch, 'mmdet')), full),
             common.ratio(peers.get((family, batch, 'torchvision')), full)]
            for family, batch, name, full in fulls]  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    common.begin('Whole-detector inference: ours (PyTorch, ONNX Runtime, OpenVINO) vs mmdet vs '
                 'torchvision', args.device, __file__, argv)  # fmt: skip
    print(f'repeats {args.repeats} (best reported) after {args.warmup} warm-up round(s), '
          f'interleaved; batches {args.batches}; seed {args.seed}')  # fmt: skip
    print("mmdet SSDHead: head.loss_cls set to an empty object (mmdet 3.3's predict reads it "
          'and the head never sets it)')  # fmt: skip
    why_not = onnx_available(args.device)
    if why_not and not args.no_onnx:
        print(f'ONNX Runtime rows skipped: {why_not}')
    families = list(args.families)
    family_of = {
        osp.abspath(common.repo_config(n)): f for f, spec in FAMILIES.items() for n in spec['ours']
    }
    for cfg_path, _ in args.checkpoint:  # a checkpoint's family is always timed
        family = family_of.get(osp.abspath(cfg_path), stem(cfg_path))
        if family not in families:
            families.append(family)
    images = random_images(max(*args.batches, CALIBRATION_IMAGES), args.seed)
    rows, fulls = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for family in families:
            family_rows, family_fulls = bench_family(family, args, workdir, images)
            rows += family_rows
            fulls += family_fulls
    title = "Inference (ms per batch, best of repeats; ratio = peer / ours, ours = the family's "
    header = ['family', 'batch', 'implementation', 'net', 'post', 'full', 'images/s (full)',
              'dets / image', 'net ratio', 'post ratio', 'full ratio']  # fmt: skip
    common.print_table(title + 'first row)', header, rows)
    common.print_table('Against the peers (full, ms per batch; ratio = peer float32 / this, above '
                       '1: faster than the peer)',
                       ['family', 'batch', 'implementation', 'full', 'mmdet / this',
                        'torchvision / this'], peer_rows(fulls))  # fmt: skip
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
