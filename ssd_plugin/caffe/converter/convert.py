"""Caffe SSD deploy prototxt + caffemodel -> ``DIR/config.py`` + ``DIR/model.pth``."""

import contextlib
import os
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.registry import DefaultScope

from .backbone_spec import conv_options, layer_dicts
from .config_writer import detector_config, write_config
from .errors import CaffeFormatError, field_error
from .graph import NetSpec, parse_net
from .head_spec import class_permutation, detection_cfg, prior_generator_cfg
from .proto import BACKEND, DEFAULT_MAX_PROTOTXT_MIB, read_caffemodel, read_labelmap, read_prototxt
from .shapes import check_memory, conversion_estimate, spatial_sizes
from .vgg import to_reduced_vgg
from .weights import backbone_state, caffemodel_blobs, head_state

__all__ = [
    'DEFAULT_MAX_MEMORY_GIB',
    'DEFAULT_MAX_PROTOTXT_MIB',
    'DEFAULT_MEAN',
    'ModelPlan',
    'build_model_cfg',
    'class_names',
    'convert',
]

PathLike = Union[str, os.PathLike]
DEFAULT_MEAN = (104.0, 117.0, 123.0)  # Caffe SSD's VGG16 mean, BGR
# VGG16 SSD512 (the largest of weiliu89's nets) needs about 1 GiB (estimate of shapes.py)
DEFAULT_MAX_MEMORY_GIB = 2.0


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


class ModelPlan(NamedTuple):
    """The converted detector's config, as :func:`build_model_cfg` derives it from the net."""

    model: dict
    layers: List[dict]  # the backbone's CaffeNet layer dicts
    in_channels: List[int]
    num_classes: int  # with the background
    background: int  # Caffe's background label
    num_base_priors: List[int]  # default boxes per location, per level


def _head_convs(spec: NetSpec, in_channels: Sequence[int]) -> List[Tuple[dict, dict]]:
    """``conv_options`` of each level's (loc, conf) predictors: square, stride 1, same size."""
    convs = []
    for level, cin in zip(spec.levels, in_channels):
        pair = []
        for conv in (level.loc, level.conf):
            opts = conv_options(conv, cin)
            (k, k_w), (pad, pad_w) = opts['kernel_size'], opts['padding']
            if k != k_w or pad != pad_w or opts['stride'] + opts['dilation'] != [1] * 4:
                raise field_error(
                    conv,
                    'convolution_param',
                    'a head convolution needs a square kernel and padding, stride 1 and dilation 1',
                )
            if opts['groups'] != 1:
                raise field_error(conv, 'convolution_param.group', 'must be 1 in a head')
            if k != 2 * pad + 1:
                raise field_error(
                    conv,
                    'convolution_param.pad',
                    f'{pad} with kernel {k} changes the map size; a head keeps it '
                    '(kernel = 2 * pad + 1)',
                )
            pair.append(opts)
        if pair[0]['kernel_size'] != pair[1]['kernel_size']:
            raise CaffeFormatError(
                f'{level.loc.name!r} and {level.conf.name!r} differ in kernel or pad'
            )
        convs.append((pair[0], pair[1]))
    return convs


def _check_preprocessing(
    mean: Sequence[float], std: Optional[Sequence[float]], input_order: str, channels: int
) -> None:
    if input_order not in ('bgr', 'rgb'):
        raise ValueError(f"input_order must be 'bgr' or 'rgb', got {input_order!r}")
    if len(mean) != channels or (std is not None and len(std) != channels):
        raise ValueError(f'mean/std need {channels} values (the input has {channels} channels)')


def _check_head_outputs(spec: NetSpec, num_base: Sequence[int], num_classes: int) -> None:
    for lv, k in zip(spec.levels, num_base):
        for conv, per_box in ((lv.loc, 4), (lv.conf, num_classes)):
            if conv.convolution_param.num_output != k * per_box:
                raise field_error(
                    conv,
                    'convolution_param.num_output',
                    f'{conv.convolution_param.num_output}; its PriorBox '
                    f'{lv.prior_box.name!r} makes {k} boxes per location, so {k * per_box} '
                    'are needed',
                )


def _detector(mean, std, input_order: str, channels: int, backbone, bbox_head, test_cfg) -> dict:
    """The SingleStageDetector config (the data preprocessor from the assumed preprocessing)."""
    return dict(
        type='SingleStageDetector',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[float(m) for m in mean],
            std=[float(s) for s in std] if std is not None else [1.0] * channels,
            bgr_to_rgb=input_order == 'rgb',
            pad_size_divisor=1,
        ),
        backbone=backbone,
        bbox_head=bbox_head,
        train_cfg=None,
        test_cfg=test_cfg,
    )


def build_model_cfg(
    spec: NetSpec,
    mean: Sequence[float],
    std: Optional[Sequence[float]],
    input_order: str,
    source: str,
    notes: List[str],
    caffemodel_bytes: int = 0,
    max_memory_gib: float = DEFAULT_MAX_MEMORY_GIB,
) -> ModelPlan:
    """The detector config of a parsed net, every field checked before anything is built.

    Feature-map sizes come from Caffe's shape arithmetic (:func:`spatial_sizes`); the memory
    the conversion needs is estimated from them and refused above ``max_memory_gib``
    (:func:`check_memory`) before a tensor is allocated.
    """
    c, h, w = spec.input_shape
    _check_preprocessing(mean, std, input_order, c)
    layers, channels = layer_dicts(spec.backbone, spec.input_blob, c)
    sizes = spatial_sizes(layers, spec.input_blob, (h, w))
    out_blobs = [lv.feature for lv in spec.levels]
    in_channels = [channels[f] for f in out_blobs]
    heads = _head_convs(spec, in_channels)
    head_convs = [(conv, sizes[f]) for f, pair in zip(out_blobs, heads) for conv in pair]
    estimate = conversion_estimate(layers, channels, sizes, head_convs, caffemodel_bytes)
    check_memory(estimate, max_memory_gib, source)
    feature_sizes = [sizes[f] for f in out_blobs]
    prior_cfg, variances = prior_generator_cfg(
        [lv.prior_box for lv in spec.levels], feature_sizes, (h, w), notes
    )
    num_base = list(TASK_UTILS.build(prior_cfg).num_base_priors)
    num_priors = sum(k * fh * fw for k, (fh, fw) in zip(num_base, feature_sizes))
    det = spec.detection_output
    test_cfg, coder, clip = detection_cfg(det, variances, num_priors)
    num_classes = int(det.detection_output_param.num_classes)
    background = int(det.detection_output_param.background_label_id)
    _check_head_outputs(spec, num_base, num_classes)
    backbone = dict(type='CaffeNet', layers=layers, out_blobs=out_blobs, input_blob=spec.input_blob)
    bbox_head = dict(
        type='CaffeMultiBoxHead',
        num_classes=num_classes - 1,
        in_channels=in_channels,
        kernel_sizes=[loc['kernel_size'][0] for loc, _ in heads],
        paddings=[loc['padding'][0] for loc, _ in heads],
        featmap_sizes=[list(hw) for hw in feature_sizes],
        prior_generator=prior_cfg,
        bbox_coder=coder,
        clip_border=clip,
    )
    model = _detector(mean, std, input_order, c, backbone, bbox_head, test_cfg)
    notes.append(
        f'{len(spec.levels)} levels, feature maps {feature_sizes}, {num_priors} default boxes, '
        f'{num_classes - 1} class(es) + background (Caffe label {background}, moved last); '
        f'converting needs {estimate.describe()}'
    )
    notes.append(f'test_cfg {test_cfg}; decoded boxes clipped to the image: {clip}')
    return ModelPlan(model, layers, in_channels, num_classes, background, num_base)


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
    max_memory_gib: float = DEFAULT_MAX_MEMORY_GIB,
    max_prototxt_mib: float = DEFAULT_MAX_PROTOTXT_MIB,
) -> Tuple[str, str]:
    """Convert a Caffe SSD deploy net and its weights into an mmdet config and checkpoint.

    The prototxt is checked whole before anything is built (the layer graph, every field's
    range, every window against its input) and the memory the conversion needs is estimated
    from it: a net that needs more than ``max_memory_gib`` is refused with the estimate.

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
        max_memory_gib: Largest estimated memory a conversion may take (GiB).
        max_prototxt_mib: Largest prototxt parsed (MiB; larger ones are refused unread).

    Returns:
        ``(config_path, checkpoint_path)``.

    Raises:
        CaffeFormatError: A file the converter cannot read or express; the message names the
            file, and the layer and field where there is one.
    """
    options = _Options(
        classes, labelmap, mean, std, input_order, log, max_memory_gib, max_prototxt_mib
    )
    # mmengine builds the data preprocessor in the default scope: mmdet's, as mmdet's tools set
    with DefaultScope.overwrite_default_scope('mmdet'):
        return _convert(prototxt, caffemodel, out_dir, options)


class _Options(NamedTuple):
    classes: Optional[Sequence[str]]
    labelmap: Optional[PathLike]
    mean: Sequence[float]
    std: Optional[Sequence[float]]
    input_order: str
    log: Callable[[str], None]
    max_memory_gib: float
    max_prototxt_mib: float


@contextlib.contextmanager
def _in_file(source: str) -> Iterator[None]:
    """A :class:`CaffeFormatError` raised in the block names ``source`` (if it names no file)."""
    try:
        yield
    except CaffeFormatError as err:
        if err.file is None and not str(err).startswith(source):
            err.file = source
        raise


def _convert(prototxt, caffemodel, out_dir, opts: _Options) -> Tuple[str, str]:
    source, weights_source = repr(os.fspath(prototxt)), repr(os.fspath(caffemodel))
    notes: List[str] = []
    if BACKEND == 'python':
        opts.log(
            "protobuf's pure-Python backend: decoding the caffemodel may take minutes (protobuf's "
            "wheels bring the compiled 'upb' backend; PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION)"
        )
    size = os.path.getsize(caffemodel) if os.path.isfile(caffemodel) else 0
    with _in_file(source):
        spec = parse_net(read_prototxt(prototxt, opts.max_prototxt_mib), source)
        plan = build_model_cfg(
            spec, opts.mean, opts.std, opts.input_order, source, notes, size, opts.max_memory_gib
        )
    names = class_names(plan.num_classes, plan.background, opts.classes, opts.labelmap)
    with _in_file(weights_source):
        model, state = _weights(spec, plan, read_caffemodel(caffemodel), weights_source, notes)
    c, h, w = spec.input_shape
    mean_bgr = list(opts.mean) if opts.input_order == 'bgr' else list(opts.mean)[::-1]
    variables = detector_config(model, names, (h, w), mean_bgr)
    config_path, checkpoint_path = _write(out_dir, variables, state)
    std_text = 'none' if opts.std is None else list(opts.std)
    opts.log(
        f'input: {spec.input_blob!r} {c}x{h}x{w}, images resized to {w}x{h} (aspect ratio not kept)'
    )
    opts.log(
        f'preprocessing (assumed, not stored by Caffe): {opts.input_order.upper()} input, mean '
        f'{list(opts.mean)}, std {std_text}'
    )
    opts.log(f'classes: {names}')
    for note in notes:
        opts.log(note)
    opts.log(f'wrote {config_path} and {checkpoint_path}')
    return config_path, checkpoint_path


def _weights(spec: NetSpec, plan: ModelPlan, net, source: str, notes: List[str]):
    """``(model config, state dict)``: the caffemodel's blobs, onto ReducedVGG16 where it fits."""
    blobs = caffemodel_blobs(net)
    del net  # the blobs keep what they need
    state = backbone_state(plan.layers, blobs, source)
    head = plan.model['bbox_head']
    state.update(
        head_state(
            spec.levels,
            plan.in_channels,
            plan.num_base_priors,
            plan.num_classes,
            plan.background,
            head['kernel_sizes'],
            blobs,
            source,
        )
    )
    del blobs
    detector = MODELS.build(plan.model)
    detector.load_state_dict(state, strict=True)  # every parameter comes from the caffemodel
    vgg = to_reduced_vgg(plan.model, plan.layers, state, notes, generic=detector)
    return vgg if vgg is not None else (plan.model, state)


def _write(out_dir: PathLike, variables: dict, state: dict) -> Tuple[str, str]:
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
    meta = dict(dataset_meta=dict(variables['metainfo']))
    torch.save(dict(state_dict=state, meta=meta), checkpoint_path)
    return config_path, checkpoint_path
