"""Caffe SSD deploy prototxt + caffemodel -> ``DIR/config.py`` + ``DIR/model.pth``."""

import os
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.registry import DefaultScope

from .backbone_spec import conv_options, layer_dicts
from .caffe_net import CaffeNet
from .config_writer import detector_config, write_config
from .graph import NetSpec, parse_net
from .head_spec import class_permutation, detection_cfg, prior_generator_cfg
from .proto import CaffeFormatError, read_caffemodel, read_labelmap, read_prototxt
from .vgg import to_reduced_vgg
from .weights import backbone_state, caffemodel_blobs, head_state

__all__ = ['convert', 'build_model_cfg', 'class_names']

PathLike = Union[str, os.PathLike]
DEFAULT_MEAN = (104.0, 117.0, 123.0)  # Caffe SSD's VGG16 mean, BGR


def class_names(
    num_classes: int,
    background: int,
    classes: Optional[Sequence[str]] = None,
    labelmap: Optional[PathLike] = None,
) -> List[str]:
    """Names of the foreground classes, in the plugin's label order (Caffe labels, bg removed).

    From ``classes`` (one per foreground class), else an SSD ``labelmap.prototxt`` (its
    ``display_name``, else ``name``), else ``class<caffe label>``.
    """
    labels = class_permutation(num_classes, background)[:-1]
    if classes is not None:
        names = [str(c) for c in classes]
        if len(names) != num_classes - 1:
            raise ValueError(
                f'--classes: {len(names)} names given, the model has {num_classes - 1} '
                f'classes besides the background (DetectionOutput num_classes {num_classes})'
            )
        return names
    if labelmap is not None:
        items = {
            item.label: item.display_name or item.name for item in read_labelmap(labelmap).item
        }
        missing = [c for c in labels if c not in items]
        if missing:
            raise ValueError(f'label map {os.fspath(labelmap)!r} has no item for labels {missing}')
        return [items[c] for c in labels]
    return [f'class{c}' for c in labels]


def _head_kernels(spec: NetSpec, source: str) -> Tuple[List[int], List[int]]:
    """Kernel size and padding of each level's predictors (loc and conf must agree)."""
    kernels, pads = [], []
    for level in spec.levels:
        shapes = []
        for conv in (level.loc, level.conf):
            opts = conv_options(conv, 0)
            k, pad = opts['kernel_size'], opts['padding']
            if k[0] != k[1] or pad[0] != pad[1] or opts['stride'] + opts['dilation'] != [1] * 4:
                raise CaffeFormatError(
                    f'{source}: head convolution {conv.name!r}: square kernel and padding, '
                    'stride 1 and dilation 1 expected'
                )
            if opts['groups'] != 1:
                raise CaffeFormatError(f'{source}: head convolution {conv.name!r}: group != 1')
            shapes.append((k[0], pad[0]))
        if shapes[0] != shapes[1]:
            raise CaffeFormatError(
                f'{source}: {level.loc.name!r} and {level.conf.name!r} differ in kernel or pad'
            )
        kernels.append(shapes[0][0])
        pads.append(shapes[0][1])
    return kernels, pads


def build_model_cfg(
    spec: NetSpec,
    mean: Sequence[float],
    std: Optional[Sequence[float]],
    input_order: str,
    source: str,
    notes: List[str],
) -> Tuple[dict, List[dict], List[int], int, int]:
    """The detector config of a parsed net.

    Returns:
        ``(model, backbone layer dicts, in_channels, num_classes incl. background, background)``.
    """
    c, h, w = spec.input_shape
    layers, channels = layer_dicts(spec.backbone, spec.input_blob, c)
    out_blobs = [lv.feature for lv in spec.levels]
    backbone = dict(type='CaffeNet', layers=layers, out_blobs=out_blobs, input_blob=spec.input_blob)
    # The feature-map sizes come from running the backbone itself (Caffe's shape arithmetic).
    net = CaffeNet(layers, out_blobs, spec.input_blob, init_cfg=None).eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, c, h, w))
    sizes = [tuple(int(s) for s in f.shape[-2:]) for f in feats]
    prior_cfg, variances = prior_generator_cfg(
        [lv.prior_box for lv in spec.levels], sizes, (h, w), notes
    )
    num_base = TASK_UTILS.build(prior_cfg).num_base_priors
    num_priors = sum(k * fh * fw for k, (fh, fw) in zip(num_base, sizes))
    det = spec.detection_output
    test_cfg, coder, clip = detection_cfg(det, variances, num_priors)
    num_classes = int(det.detection_output_param.num_classes)
    background = int(det.detection_output_param.background_label_id)
    for lv, k in zip(spec.levels, num_base):
        for conv, per_box in ((lv.loc, 4), (lv.conf, num_classes)):
            if conv.convolution_param.num_output != k * per_box:
                raise CaffeFormatError(
                    f'{source}: {conv.name!r} has {conv.convolution_param.num_output} outputs; '
                    f'its PriorBox {lv.prior_box.name!r} makes {k} boxes per location, so '
                    f'{k * per_box} are needed'
                )
    kernels, pads = _head_kernels(spec, source)
    in_channels = [channels[f] for f in out_blobs]
    if input_order not in ('bgr', 'rgb'):
        raise ValueError(f"input_order must be 'bgr' or 'rgb', got {input_order!r}")
    if len(mean) != c or (std is not None and len(std) != c):
        raise ValueError(f'mean/std need {c} values (the input has {c} channels)')
    model = dict(
        type='SingleStageDetector',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[float(m) for m in mean],
            std=[float(s) for s in std] if std is not None else [1.0] * c,
            bgr_to_rgb=input_order == 'rgb',
            pad_size_divisor=1,
        ),
        backbone=backbone,
        bbox_head=dict(
            type='CaffeMultiBoxHead',
            num_classes=num_classes - 1,
            in_channels=in_channels,
            kernel_sizes=kernels,
            paddings=pads,
            prior_generator=prior_cfg,
            bbox_coder=coder,
            clip_border=clip,
        ),
        train_cfg=None,
        test_cfg=test_cfg,
    )
    notes.append(
        f'{len(spec.levels)} levels, feature maps {sizes}, {num_priors} default boxes, '
        f'{num_classes - 1} class(es) + background (Caffe label {background}, moved last)'
    )
    notes.append(f'test_cfg {test_cfg}; decoded boxes clipped to the image: {clip}')
    return model, layers, in_channels, num_classes, background


def convert(
    prototxt: PathLike,
    caffemodel: PathLike,
    out_dir: PathLike,
    classes: Optional[Sequence[str]] = None,
    labelmap: Optional[PathLike] = None,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Optional[Sequence[float]] = None,
    input_order: str = 'bgr',
    log: Callable[[str], None] = print,
) -> Tuple[str, str]:
    """Convert a Caffe SSD deploy net and its weights into an mmdet config and checkpoint.

    Args:
        prototxt: Deploy prototxt (text).
        caffemodel: Trained weights (binary); may be a training snapshot with extra layers.
        out_dir: Receives ``config.py`` and ``model.pth`` (created if needed).
        classes: Names of the foreground classes in Caffe label order (background excluded).
        labelmap: SSD ``labelmap.prototxt`` instead of ``classes``.
        mean: Per-channel mean subtracted from the input, in the net's channel order.
        std: Per-channel divisor after the mean (Caffe ``scale`` s: std 1/s); default none.
        input_order: Channel order the net was trained on, ``'bgr'`` (Caffe) or ``'rgb'``.
        log: Receives what the converter assumed, line by line.

    Returns:
        ``(config_path, checkpoint_path)``.
    """
    # mmengine builds the data preprocessor in the default scope: mmdet's, as mmdet's tools set
    with DefaultScope.overwrite_default_scope('mmdet'):
        return _convert(
            prototxt, caffemodel, out_dir, classes, labelmap, mean, std, input_order, log
        )


def _convert(prototxt, caffemodel, out_dir, classes, labelmap, mean, std, input_order, log):
    source = repr(os.fspath(prototxt))
    notes: List[str] = []
    spec = parse_net(read_prototxt(prototxt), source)
    model, layers, in_channels, num_classes, background = build_model_cfg(
        spec, mean, std, input_order, source, notes
    )
    names = class_names(num_classes, background, classes, labelmap)
    blobs = caffemodel_blobs(read_caffemodel(caffemodel))
    weights_source = repr(os.fspath(caffemodel))
    head = model['bbox_head']
    num_base = TASK_UTILS.build(head['prior_generator']).num_base_priors
    state = backbone_state(layers, blobs, weights_source)
    state.update(
        head_state(
            spec.levels,
            in_channels,
            num_base,
            num_classes,
            background,
            head['kernel_sizes'],
            blobs,
            weights_source,
        )
    )
    detector = MODELS.build(model)
    detector.load_state_dict(state, strict=True)  # every parameter comes from the caffemodel
    vgg = to_reduced_vgg(model, layers, state, notes)
    if vgg is not None:
        model, state = vgg

    c, h, w = spec.input_shape
    mean_bgr = list(mean) if input_order == 'bgr' else list(mean)[::-1]
    variables = detector_config(model, names, (h, w), mean_bgr)
    os.makedirs(out_dir, exist_ok=True)
    config_path = os.path.join(os.fspath(out_dir), 'config.py')
    checkpoint_path = os.path.join(os.fspath(out_dir), 'model.pth')
    write_config(
        config_path,
        variables,
        header=(
            'Converted from a Caffe SSD model by tools/model_converters/caffe_ssd_to_plugin.py.',
            'Preprocessing is not stored in Caffe files: see model.data_preprocessor.',
        ),
    )
    torch.save(
        dict(
            state_dict=state,
            meta=dict(dataset_meta=dict(variables['metainfo'])),
        ),
        checkpoint_path,
    )
    std_text = 'none' if std is None else list(std)
    log(
        f'input: {spec.input_blob!r} {c}x{h}x{w}, images resized to {w}x{h} (aspect ratio not kept)'
    )
    log(
        f'preprocessing (assumed, not stored by Caffe): {input_order.upper()} input, mean '
        f'{list(mean)}, std {std_text}'
    )
    log(f'classes: {names}')
    for note in notes:
        log(note)
    log(f'wrote {config_path} and {checkpoint_path}')
    return config_path, checkpoint_path
