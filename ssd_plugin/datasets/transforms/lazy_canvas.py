"""Deferred zoom-out canvas: record where the image lies on the canvas, paint pixels once.

SSD's zoom-out (paper Sec. 3.6) places the image on a canvas up to 4x its side (16x its area)
filled with the mean; the patch sampler then keeps a window of that canvas. Painting the whole
canvas only to keep a window wastes most of the time of the pipeline (mmdet's ``Expand`` fills it
with ``np.full``). Here ``ZoomOut`` stores a :class:`ZoomOutCanvas` (geometry only) as the
results' ``img`` inside a :class:`PendingCanvasResults`; ``MinIoUCrop`` takes it with
:func:`take_pending_canvas` and paints only its window. Any other reader of ``results['img']``
(another transform, ``PackDetInputs``, a visualiser, ``copy.deepcopy``) gets the fully painted
canvas, so a pipeline without a crop after the zoom-out stays correct.
"""

from typing import Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['ZoomOutCanvas', 'PendingCanvasResults', 'fill_value', 'take_pending_canvas']


def fill_value(fill: Union[float, Sequence[float]], num_channels: int, dtype) -> np.ndarray:
    """The fill as a ``(num_channels,)`` array of ``dtype`` (rounded and clipped if integer).

    Raises:
        ValueError: ``fill`` has neither one value nor one per channel.
    """
    values = np.atleast_1d(np.asarray(fill, dtype=np.float64))
    if values.size not in (1, num_channels):
        raise ValueError(
            f'fill has {values.size} values but the image has {num_channels} channel(s); give '
            'one value per channel (in the image channel order) or a single value'
        )
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.broadcast_to(values, (num_channels,)).astype(dtype)


class ZoomOutCanvas:
    """A ``height x width`` canvas of ``fill`` with ``src`` at ``(left, top)``, not yet painted.

    Args:
        src: The image, ``(h, w)`` or ``(h, w, c)``.
        canvas_hw: Canvas ``(height, width)``, at least the image size.
        left_top: The image's top-left corner on the canvas; the image must fit inside.
        fill: Canvas colour, one value or one per channel (image channel order).
    """

    __slots__ = ('src', 'height', 'width', 'left', 'top', 'fill')

    def __init__(
        self,
        src: np.ndarray,
        canvas_hw: Tuple[int, int],
        left_top: Tuple[int, int],
        fill: Union[float, Sequence[float]],
    ) -> None:
        self.src = src
        self.height, self.width = int(canvas_hw[0]), int(canvas_hw[1])
        self.left, self.top = int(left_top[0]), int(left_top[1])
        h, w = src.shape[:2]
        if not (0 <= self.left <= self.width - w and 0 <= self.top <= self.height - h):
            raise ValueError(
                f'image {w}x{h} at ({self.left}, {self.top}) does not fit in the canvas '
                f'{self.width}x{self.height}'
            )
        self.fill = fill_value(fill, 1 if src.ndim == 2 else src.shape[2], src.dtype)

    @property
    def shape(self) -> Tuple[int, ...]:
        return (self.height, self.width) + self.src.shape[2:]

    @property
    def dtype(self) -> np.dtype:
        return self.src.dtype

    def paint(self, window: Optional[Sequence[int]] = None) -> np.ndarray:
        """Pixels of the canvas inside ``window`` (``x1, y1, x2, y2``; default: the whole canvas).

        Writes each output pixel once: the fill is replicated row by row (a contiguous copy, not
        numpy's slow per-pixel broadcast) and the image part is copied over it.
        """
        x1, y1, x2, y2 = (0, 0, self.width, self.height) if window is None else map(int, window)
        if not (0 <= x1 < x2 <= self.width and 0 <= y1 < y2 <= self.height):
            raise ValueError(f'window {(x1, y1, x2, y2)} is not inside the canvas {self.shape}')
        out = np.empty((y2 - y1, x2 - x1) + self.src.shape[2:], dtype=self.src.dtype)
        row = np.empty(out.shape[1:], dtype=out.dtype)
        row[...] = self.fill if out.ndim == 3 else self.fill[0]
        h, w = self.src.shape[:2]
        ix1, iy1 = max(x1, self.left), max(y1, self.top)
        ix2, iy2 = min(x2, self.left + w), min(y2, self.top + h)
        if ix1 >= ix2 or iy1 >= iy2:
            out[...] = row
            return out
        # Fill only the bands around the image part, then copy the image part.
        out[: iy1 - y1] = row
        out[iy2 - y1 :] = row
        out[iy1 - y1 : iy2 - y1, : ix1 - x1] = row[: ix1 - x1]
        out[iy1 - y1 : iy2 - y1, ix2 - x1 :] = row[ix2 - x1 :]
        out[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1] = self.src[
            iy1 - self.top : iy2 - self.top, ix1 - self.left : ix2 - self.left
        ]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.paint()
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(canvas={self.width}x{self.height}, '
            f'image={self.src.shape[1]}x{self.src.shape[0]} at ({self.left}, {self.top}))'
        )


class PendingCanvasResults(dict):
    """A results dict whose ``img`` may be a :class:`ZoomOutCanvas`, painted on first read.

    Every way of reading a value (``[]``, ``get``, ``pop``, ``items``, ``values``, ``copy``,
    iteration-based copies such as ``dict(results)`` and ``{**results}``, ``copy.deepcopy``,
    pickling) paints the canvas first; afterwards the dict behaves as a plain dict. Only
    :func:`take_pending_canvas` reads the canvas without painting it.
    """

    def _paint(self) -> None:
        canvas = dict.get(self, 'img')
        if isinstance(canvas, ZoomOutCanvas):
            dict.__setitem__(self, 'img', canvas.paint())

    def __getitem__(self, key):
        if key == 'img':
            self._paint()
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        if key == 'img':
            self._paint()
        return dict.get(self, key, default)

    def pop(self, key, *default):
        if key == 'img':
            self._paint()
        return dict.pop(self, key, *default)

    def setdefault(self, key, default=None):
        if key == 'img':
            self._paint()
        return dict.setdefault(self, key, default)

    def popitem(self):
        self._paint()
        return dict.popitem(self)

    def items(self):
        self._paint()
        return dict.items(self)

    def values(self):
        self._paint()
        return dict.values(self)

    def copy(self) -> dict:
        self._paint()
        return dict(dict.items(self))

    def __iter__(self):
        # Overriding __iter__ makes CPython's dict(results), {**results} and dict.update(results)
        # read values through __getitem__ instead of copying the raw canvas object.
        return dict.__iter__(self)

    def __eq__(self, other) -> bool:
        self._paint()
        return dict.__eq__(self, other)

    __hash__ = None

    def __reduce_ex__(self, protocol):
        self._paint()
        return dict, (dict(dict.items(self)),)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({dict.__repr__(self)})'


def take_pending_canvas(results: dict) -> Optional[ZoomOutCanvas]:
    """The results' unpainted zoom-out canvas, or ``None`` if ``img`` is already pixels."""
    canvas = dict.get(results, 'img')
    return canvas if isinstance(canvas, ZoomOutCanvas) else None
