"""The subset of Caffe's ``caffe.proto`` (weiliu89's SSD branch) the converter reads, as data.

Caffe files are protobuf messages; the wire format only needs each field's number and type, so
this module declares those facts (Caffe's message and field names, numbers, types and defaults)
for the messages an SSD deploy net uses, and :mod:`ssd_plugin.caffe.proto` builds message classes
from them with protobuf's descriptor API (no ``protoc`` step). Parameters of layers the converter
does not map are declared only where deploy files commonly carry them (fillers, learning-rate
multipliers, phase rules, data transforms, ``save_output_param``), so they parse.

Each message is a list of ``(name, number, label, type, default_or_message)`` rows; ``label`` is
``'opt'`` or ``'rep'`` (``'rep+'`` for Caffe's packed repeated scalars); ``type`` is a scalar
type name, ``'msg'`` (the last item names the message) or ``'enum'`` (the last item is
``(enum_name, default)``; ``'Message.Enum'`` for an enum nested in a message).
"""

from typing import Dict, List, Tuple

__all__ = ['ENUMS', 'MESSAGES', 'READ_MESSAGES']

Row = Tuple[str, int, str, str, object]

ENUMS: Dict[str, Dict[str, int]] = {
    'Phase': {'TRAIN': 0, 'TEST': 1},
    'Engine': {'DEFAULT': 0, 'CAFFE': 1, 'CUDNN': 2},
    # Nested as in Caffe (enum values share their parent's scope: MAX is in two of them).
    'PoolingParameter.PoolMethod': {'MAX': 0, 'AVE': 1, 'STOCHASTIC': 2},
    'EltwiseParameter.EltwiseOp': {'PROD': 0, 'SUM': 1, 'MAX': 2},
    'PriorBoxParameter.CodeType': {'CORNER': 1, 'CENTER_SIZE': 2, 'CORNER_SIZE': 3},
    'FillerParameter.VarianceNorm': {'FAN_IN': 0, 'FAN_OUT': 1, 'AVERAGE': 2},
}

_ENGINE = ('Engine', 'DEFAULT')

MESSAGES: Dict[str, List[Row]] = {
    'BlobShape': [('dim', 1, 'rep+', 'int64', None)],
    'BlobProto': [
        ('num', 1, 'opt', 'int32', 0),
        ('channels', 2, 'opt', 'int32', 0),
        ('height', 3, 'opt', 'int32', 0),
        ('width', 4, 'opt', 'int32', 0),
        ('data', 5, 'rep+', 'float', None),
        ('diff', 6, 'rep+', 'float', None),
        ('shape', 7, 'opt', 'msg', 'BlobShape'),
        ('double_data', 8, 'rep+', 'double', None),
        ('double_diff', 9, 'rep+', 'double', None),
    ],
    'FillerParameter': [
        ('type', 1, 'opt', 'string', 'constant'),
        ('value', 2, 'opt', 'float', 0.0),
        ('min', 3, 'opt', 'float', 0.0),
        ('max', 4, 'opt', 'float', 1.0),
        ('mean', 5, 'opt', 'float', 0.0),
        ('std', 6, 'opt', 'float', 1.0),
        ('sparse', 7, 'opt', 'int32', -1),
        ('variance_norm', 8, 'opt', 'enum', ('FillerParameter.VarianceNorm', 'FAN_IN')),
    ],
    'NetState': [
        ('phase', 1, 'opt', 'enum', ('Phase', 'TEST')),
        ('level', 2, 'opt', 'int32', 0),
        ('stage', 3, 'rep', 'string', None),
    ],
    'NetStateRule': [
        ('phase', 1, 'opt', 'enum', ('Phase', 'TRAIN')),
        ('min_level', 2, 'opt', 'int32', None),
        ('max_level', 3, 'opt', 'int32', None),
        ('stage', 4, 'rep', 'string', None),
        ('not_stage', 5, 'rep', 'string', None),
    ],
    'ParamSpec': [
        ('name', 1, 'opt', 'string', None),
        ('share_mode', 2, 'opt', 'int32', None),
        ('lr_mult', 3, 'opt', 'float', 1.0),
        ('decay_mult', 4, 'opt', 'float', 1.0),
    ],
    'NetParameter': [
        ('name', 1, 'opt', 'string', None),
        ('layers', 2, 'rep', 'msg', 'V1LayerParameter'),
        ('input', 3, 'rep', 'string', None),
        ('input_dim', 4, 'rep', 'int32', None),
        ('force_backward', 5, 'opt', 'bool', False),
        ('state', 6, 'opt', 'msg', 'NetState'),
        ('debug_info', 7, 'opt', 'bool', False),
        ('input_shape', 8, 'rep', 'msg', 'BlobShape'),
        ('layer', 100, 'rep', 'msg', 'LayerParameter'),
    ],
    # Old-format layers: only recognised (and refused), so only the name is declared.
    'V1LayerParameter': [('name', 4, 'opt', 'string', None)],
    'LayerParameter': [
        ('name', 1, 'opt', 'string', None),
        ('type', 2, 'opt', 'string', None),
        ('bottom', 3, 'rep', 'string', None),
        ('top', 4, 'rep', 'string', None),
        ('loss_weight', 5, 'rep', 'float', None),
        ('param', 6, 'rep', 'msg', 'ParamSpec'),
        ('blobs', 7, 'rep', 'msg', 'BlobProto'),
        ('include', 8, 'rep', 'msg', 'NetStateRule'),
        ('exclude', 9, 'rep', 'msg', 'NetStateRule'),
        ('phase', 10, 'opt', 'enum', ('Phase', 'TRAIN')),
        ('propagate_down', 11, 'rep', 'bool', None),
        ('transform_param', 100, 'opt', 'msg', 'TransformationParameter'),
        ('concat_param', 104, 'opt', 'msg', 'ConcatParameter'),
        ('convolution_param', 106, 'opt', 'msg', 'ConvolutionParameter'),
        ('dropout_param', 108, 'opt', 'msg', 'DropoutParameter'),
        ('eltwise_param', 110, 'opt', 'msg', 'EltwiseParameter'),
        ('pooling_param', 121, 'opt', 'msg', 'PoolingParameter'),
        ('relu_param', 123, 'opt', 'msg', 'ReLUParameter'),
        ('softmax_param', 125, 'opt', 'msg', 'SoftmaxParameter'),
        ('reshape_param', 133, 'opt', 'msg', 'ReshapeParameter'),
        ('flatten_param', 135, 'opt', 'msg', 'FlattenParameter'),
        ('batch_norm_param', 139, 'opt', 'msg', 'BatchNormParameter'),
        ('scale_param', 142, 'opt', 'msg', 'ScaleParameter'),
        ('input_param', 143, 'opt', 'msg', 'InputParameter'),
        ('permute_param', 202, 'opt', 'msg', 'PermuteParameter'),
        ('prior_box_param', 203, 'opt', 'msg', 'PriorBoxParameter'),
        ('detection_output_param', 204, 'opt', 'msg', 'DetectionOutputParameter'),
        ('norm_param', 206, 'opt', 'msg', 'NormalizeParameter'),
    ],
    'TransformationParameter': [
        ('scale', 1, 'opt', 'float', 1.0),
        ('mirror', 2, 'opt', 'bool', False),
        ('crop_size', 3, 'opt', 'uint32', 0),
        ('mean_file', 4, 'opt', 'string', None),
        ('mean_value', 5, 'rep', 'float', None),
        ('force_color', 6, 'opt', 'bool', False),
        ('force_gray', 7, 'opt', 'bool', False),
    ],
    'ConcatParameter': [
        ('concat_dim', 1, 'opt', 'uint32', 1),
        ('axis', 2, 'opt', 'int32', 1),
    ],
    'ConvolutionParameter': [
        ('num_output', 1, 'opt', 'uint32', None),
        ('bias_term', 2, 'opt', 'bool', True),
        ('pad', 3, 'rep', 'uint32', None),
        ('kernel_size', 4, 'rep', 'uint32', None),
        ('group', 5, 'opt', 'uint32', 1),
        ('stride', 6, 'rep', 'uint32', None),
        ('weight_filler', 7, 'opt', 'msg', 'FillerParameter'),
        ('bias_filler', 8, 'opt', 'msg', 'FillerParameter'),
        ('pad_h', 9, 'opt', 'uint32', 0),
        ('pad_w', 10, 'opt', 'uint32', 0),
        ('kernel_h', 11, 'opt', 'uint32', None),
        ('kernel_w', 12, 'opt', 'uint32', None),
        ('stride_h', 13, 'opt', 'uint32', None),
        ('stride_w', 14, 'opt', 'uint32', None),
        ('engine', 15, 'opt', 'enum', _ENGINE),
        ('axis', 16, 'opt', 'int32', 1),
        ('force_nd_im2col', 17, 'opt', 'bool', False),
        ('dilation', 18, 'rep', 'uint32', None),
    ],
    'DropoutParameter': [('dropout_ratio', 1, 'opt', 'float', 0.5)],
    'EltwiseParameter': [
        ('operation', 1, 'opt', 'enum', ('EltwiseParameter.EltwiseOp', 'SUM')),
        ('coeff', 2, 'rep', 'float', None),
        ('stable_prod_grad', 3, 'opt', 'bool', True),
    ],
    'PoolingParameter': [
        ('pool', 1, 'opt', 'enum', ('PoolingParameter.PoolMethod', 'MAX')),
        ('kernel_size', 2, 'opt', 'uint32', None),
        ('stride', 3, 'opt', 'uint32', 1),
        ('pad', 4, 'opt', 'uint32', 0),
        ('kernel_h', 5, 'opt', 'uint32', None),
        ('kernel_w', 6, 'opt', 'uint32', None),
        ('stride_h', 7, 'opt', 'uint32', None),
        ('stride_w', 8, 'opt', 'uint32', None),
        ('pad_h', 9, 'opt', 'uint32', 0),
        ('pad_w', 10, 'opt', 'uint32', 0),
        ('engine', 11, 'opt', 'enum', _ENGINE),
        ('global_pooling', 12, 'opt', 'bool', False),
    ],
    'ReLUParameter': [
        ('negative_slope', 1, 'opt', 'float', 0.0),
        ('engine', 2, 'opt', 'enum', _ENGINE),
    ],
    'SoftmaxParameter': [
        ('engine', 1, 'opt', 'enum', _ENGINE),
        ('axis', 2, 'opt', 'int32', 1),
    ],
    'ReshapeParameter': [
        ('shape', 1, 'opt', 'msg', 'BlobShape'),
        ('axis', 2, 'opt', 'int32', 0),
        ('num_axes', 3, 'opt', 'int32', -1),
    ],
    'FlattenParameter': [
        ('axis', 1, 'opt', 'int32', 1),
        ('end_axis', 2, 'opt', 'int32', -1),
    ],
    'BatchNormParameter': [
        ('use_global_stats', 1, 'opt', 'bool', None),
        ('moving_average_fraction', 2, 'opt', 'float', 0.999),
        ('eps', 3, 'opt', 'float', 1e-5),
    ],
    'ScaleParameter': [
        ('axis', 1, 'opt', 'int32', 1),
        ('num_axes', 2, 'opt', 'int32', 1),
        ('filler', 3, 'opt', 'msg', 'FillerParameter'),
        ('bias_term', 4, 'opt', 'bool', False),
        ('bias_filler', 5, 'opt', 'msg', 'FillerParameter'),
    ],
    'InputParameter': [('shape', 1, 'rep', 'msg', 'BlobShape')],
    'PermuteParameter': [('order', 1, 'rep', 'uint32', None)],
    'PriorBoxParameter': [
        ('min_size', 1, 'rep', 'float', None),
        ('max_size', 2, 'rep', 'float', None),
        ('aspect_ratio', 3, 'rep', 'float', None),
        ('flip', 4, 'opt', 'bool', True),
        ('clip', 5, 'opt', 'bool', False),
        ('variance', 6, 'rep', 'float', None),
        ('img_size', 7, 'opt', 'uint32', None),
        ('img_h', 8, 'opt', 'uint32', None),
        ('img_w', 9, 'opt', 'uint32', None),
        ('step', 10, 'opt', 'float', None),
        ('step_h', 11, 'opt', 'float', None),
        ('step_w', 12, 'opt', 'float', None),
        ('offset', 13, 'opt', 'float', 0.5),
    ],
    'NonMaximumSuppressionParameter': [
        ('nms_threshold', 1, 'opt', 'float', 0.3),
        ('top_k', 2, 'opt', 'int32', None),
        ('eta', 3, 'opt', 'float', 1.0),
    ],
    'SaveOutputParameter': [
        ('output_directory', 1, 'opt', 'string', None),
        ('output_name_prefix', 2, 'opt', 'string', None),
        ('output_format', 3, 'opt', 'string', None),
        ('label_map_file', 4, 'opt', 'string', None),
        ('name_size_file', 5, 'opt', 'string', None),
        ('num_test_image', 6, 'opt', 'uint32', None),
    ],
    'DetectionOutputParameter': [
        ('num_classes', 1, 'opt', 'uint32', None),
        ('share_location', 2, 'opt', 'bool', True),
        ('background_label_id', 3, 'opt', 'int32', 0),
        ('nms_param', 4, 'opt', 'msg', 'NonMaximumSuppressionParameter'),
        ('save_output_param', 5, 'opt', 'msg', 'SaveOutputParameter'),
        ('code_type', 6, 'opt', 'enum', ('PriorBoxParameter.CodeType', 'CORNER')),
        ('keep_top_k', 7, 'opt', 'int32', -1),
        ('variance_encoded_in_target', 8, 'opt', 'bool', False),
        ('confidence_threshold', 9, 'opt', 'float', None),
        # Not Caffe's: OpenCV's edited deploy files add ``clip`` (clip decoded boxes to the
        # image); text only, so its number only has to stay clear of Caffe's.
        ('clip', 1000, 'opt', 'bool', False),
    ],
    'NormalizeParameter': [
        ('across_spatial', 1, 'opt', 'bool', True),
        ('scale_filler', 2, 'opt', 'msg', 'FillerParameter'),
        ('channel_shared', 3, 'opt', 'bool', True),
        ('eps', 4, 'opt', 'float', 1e-10),
    ],
    # SSD's label map (labelmap_voc.prototxt): item { name label display_name }.
    'LabelMapItem': [
        ('name', 1, 'opt', 'string', None),
        ('label', 2, 'opt', 'int32', None),
        ('display_name', 3, 'opt', 'string', None),
    ],
    'LabelMap': [('item', 1, 'rep', 'msg', 'LabelMapItem')],
}

# Parameters whose every option changes the converted model: a field of these that the schema
# does not know (another Caffe fork's option) is an error, never skipped.
READ_MESSAGES = frozenset(
    {
        'BlobShape',
        'BlobProto',
        'InputParameter',
        'ConcatParameter',
        'ConvolutionParameter',
        'EltwiseParameter',
        'PoolingParameter',
        'ReLUParameter',
        'SoftmaxParameter',
        'ReshapeParameter',
        'FlattenParameter',
        'BatchNormParameter',
        'ScaleParameter',
        'PermuteParameter',
        'PriorBoxParameter',
        'NonMaximumSuppressionParameter',
        'DetectionOutputParameter',
        'NormalizeParameter',
        'LabelMapItem',
        'LabelMap',
    }
)
