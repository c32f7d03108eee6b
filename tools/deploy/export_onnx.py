"""Export an SSD detector (MultiBoxHead) to ONNX: raw outputs, decoded boxes, or final detections.

Outputs (see :mod:`ssd_plugin.deploy.onnx_export`; ``P`` default boxes, ``C`` classes):

- default: ``cls_logits (B, P, C+1)`` and ``bbox_deltas (B, P, 4)``; with ``--dynamic-size``
  also dynamic height and width (fully convolutional);
- ``--decode``: ``scores (B, P, C)`` and ``boxes (B, P, 4)`` (``xyxy`` input pixels);
- ``--with-nms``: ``dets (B, K, 5)`` ``[x1, y1, x2, y2, score]`` and ``labels (B, K)`` (padding:
  score 0, label -1), ``K = test_cfg.max_per_img``, post-processed as ``model.predict`` with the
  config's ``test_cfg``, NMS through ONNX's ``NonMaxSuppression``.

Decoding bakes in the default boxes of ``--input-size`` (default: the test pipeline's Resize), so
those graphs take that size only. The batch is dynamic unless ``--no-dynamic-batch``. The input
is float32 ``(B, 3, H, W)``: by default 0-255 pixels in the loader's channel order (BGR, as
OpenCV decodes), resized to the input size, with the data preprocessor's channel flip, mean and
std in the graph; ``--no-normalize`` leaves them out (input: the preprocessed tensor). Boxes are
in input pixels (divide x by W_in / W_orig and y by H_in / H_orig for the original image).
Uses torch's TorchScript-based exporter (``dynamo=False``; the dynamo one needs ``onnxscript``).
Examples::

    python tools/deploy/export_onnx.py configs/ssd300_vgg16_8xb8-120e_coco.py ssd300.pth \\
        ssd300.onnx --with-nms
    python tools/deploy/export_onnx.py CONFIG CHECKPOINT raw.onnx --dynamic-size --opset 17
"""

import argparse
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config  # no torch: mmengine's config module

from ssd_plugin_cli.errors import add_debug_arg, run_tool

# onnx, mmdet and ssd_plugin (torch) are imported where they are used, after the arguments are
# parsed: --help and a wrong option answer without loading the detection stack


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export an SSD detector to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('out', help='output .onnx file')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: the test pipeline's Resize scale)")  # fmt: skip
    outputs = parser.add_mutually_exclusive_group()
    outputs.add_argument('--decode', action='store_true', help='output decoded scores and boxes')
    outputs.add_argument('--with-nms', action='store_true', help='output final detections')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--dynamic-batch', action=argparse.BooleanOptionalAction, default=True,
                        help='dynamic batch dimension (default: yes)')  # fmt: skip
    parser.add_argument('--dynamic-size', action='store_true',
                        help='dynamic height and width (raw outputs only)')  # fmt: skip
    parser.add_argument('--normalize', action=argparse.BooleanOptionalAction, default=True,
                        help='include the channel flip, mean and std (default: yes)')  # fmt: skip
    parser.add_argument('--device', default='cpu', help='device to trace on (default cpu)')
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    for key in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, key)):
            parser.error(f'{key} file not found: {getattr(args, key)}')
    if args.dynamic_size and (args.decode or args.with_nms):
        parser.error('--dynamic-size needs raw outputs: --decode/--with-nms bake the default '
                     'boxes of one input size')  # fmt: skip
    return args


def pipeline_input_size(cfg: Config) -> Optional[Tuple[int, int]]:
    """``(H, W)`` of the test pipeline's fixed-size Resize, if it has one."""
    for transform in cfg.test_dataloader.dataset.pipeline:
        if transform['type'].split('.')[-1] == 'Resize' and not transform.get('keep_ratio'):
            w, h = (transform['scale'],) * 2 if isinstance(transform['scale'], int) else (
                transform['scale'])  # fmt: skip
            return int(h), int(w)
    return None


def main(argv=None) -> None:
    args = parse_args(argv)
    import onnx
    from mmdet.apis import init_detector

    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.cli.data_root import load_config_with_data_root
    from ssd_plugin.deploy import export_onnx
    from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading

    cfg = load_config_with_data_root(args.config)  # mmdet:: bases without pkg_resources' warning
    input_size = tuple(args.input_size) if args.input_size else pipeline_input_size(cfg)
    if input_size is None:
        raise ValueError(
            f'{args.config}: the test pipeline has no fixed-size Resize (keep_ratio=False); '
            'give --input-size H W'
        )
    with weights_only_checkpoint_loading():  # loads mmengine's checkpoints with torch >= 2.6
        model = init_detector(cfg, args.checkpoint, device=args.device)
    wrapper = export_onnx(
        model, args.out, input_size, normalize=args.normalize, decode=args.decode,
        with_nms=args.with_nms, dynamic_batch=args.dynamic_batch,
        dynamic_size=args.dynamic_size, opset=args.opset,
        classes=model.dataset_meta.get('classes'))  # fmt: skip
    # as the file declares it (batch, channels, height, width); a named axis prints as B/H/W
    (graph_input,) = onnx.load(args.out, load_external_data=False).graph.input
    names = dict(batch='B', height='H', width='W')
    dims = [names.get(d.dim_param, d.dim_param) or d.dim_value
            for d in graph_input.type.tensor_type.shape.dim]  # fmt: skip
    print(f'wrote {args.out}: input (float32, {", ".join(map(str, dims))}) -> '
          f'{", ".join(wrapper.output_names)}, opset {args.opset}')  # fmt: skip


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
