"""Deployment: SSD detectors as plain tensor-to-tensor graphs (ONNX export, int8 quantisation)."""

from .onnx_export import ONNXDetector, export_onnx
from .onnx_postprocess import PostProcess, postprocess_onnx

__all__ = ['ONNXDetector', 'PostProcess', 'export_onnx', 'postprocess_onnx']
