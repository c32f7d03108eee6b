from .border_safe_visualizer import BorderSafeDetLocalVisualizer, border_safe

__all__ = ['BorderSafeDetLocalVisualizer', 'border_safe']
