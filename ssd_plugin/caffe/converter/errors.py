"""The converter's error: what is wrong, and where (file, layer, field)."""

from typing import Optional

__all__ = ['CaffeFormatError', 'field_error']


class CaffeFormatError(ValueError):
    """A Caffe file that cannot be read, or that the converter cannot express.

    ``str()`` starts with where the problem is: ``'deploy.prototxt': layer 'conv1'
    (Convolution), convolution_param.stride: ...``. Messages written with the file in them
    leave ``file`` None; :func:`~ssd_plugin.caffe.converter.convert.convert` fills it in for
    the others.

    Args:
        problem: What is wrong.
        file: The file (quoted), when known where the error is raised.
        layer: The layer's name.
        layer_type: The layer's type.
        field: The field, as ``param.field`` (``convolution_param.stride``).
    """

    def __init__(
        self,
        problem: str,
        file: Optional[str] = None,
        layer: Optional[str] = None,
        layer_type: Optional[str] = None,
        field: Optional[str] = None,
    ) -> None:
        super().__init__(problem)
        self.problem, self.file = problem, file
        self.layer, self.layer_type, self.field = layer, layer_type, field

    def __str__(self) -> str:
        where = []
        if self.layer is not None:
            kind = f' ({self.layer_type})' if self.layer_type else ''
            where.append(f'layer {self.layer!r}{kind}')
        if self.field:
            where.append(self.field)
        text = f'{", ".join(where)}: {self.problem}' if where else self.problem
        return f'{self.file}: {text}' if self.file else text


def field_error(layer, field: str, problem: str) -> CaffeFormatError:
    """A :class:`CaffeFormatError` about ``field`` of the ``LayerParameter`` ``layer``."""
    return CaffeFormatError(problem, layer=layer.name, layer_type=layer.type, field=field)
