"""Deployment: SSD detectors as plain tensor-to-tensor graphs (ONNX export)."""

from .onnx_export import ONNXDetector, export_onnx

__all__ = ['ONNXDetector', 'export_onnx']
