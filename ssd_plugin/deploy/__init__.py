"""Deployment: SSD detectors as plain tensor-to-tensor graphs (ONNX export, int8 quantisation)."""

from .onnx_export import ONNXDetector, export_head_postprocess_onnx, export_onnx
from .onnx_postprocess import PostProcess, attach_postprocess, postprocess_onnx

__all__ = [
    'ONNXDetector',
    'PostProcess',
    'attach_postprocess',
    'export_head_postprocess_onnx',
    'export_onnx',
    'postprocess_onnx',
]
