"""Mixed precision (``--amp``) for the network only, one design on CPUs and GPUs.

What runs in lower precision is the *network*: the detector's ``extract_feat`` (backbone and
neck) and its head's ``forward`` (the convolutions), under :func:`torch.autocast`, with the
weights and the input images in channels_last memory format. The head's outputs are cast back to
float32 before they leave ``forward``, so matching, the loss and post-processing (decoding, NMS)
always run in float32, and the weights the optimizer updates and the checkpoints hold stay
float32 (master weights): autocast casts a copy of each weight per forward pass.

Which precision (:func:`choose_amp`):

- CPU: bf16 where the CPU computes it natively (x86 ``avx512_bf16`` or ``amx_bf16``, Arm
  ``bf16``) and torch has oneDNN; otherwise float32, saying why (bf16 emulated in software is
  slower than float32). No loss scaler: bf16 has float32's exponent range.
- CUDA: bf16 where the GPU supports it (compute capability >= 8.0), no loss scaler; float16 with a
  dynamic loss scaler (:class:`~ssd_plugin.engine.loss_scale_optim_wrapper.LossScaleOptimWrapper`)
  otherwise.

``dtype`` chooses instead of ``'auto'``: ``'bfloat16'`` (``'bf16'``) or ``'float16'``
(``'fp16'``, GPUs only). The tools take ``--amp`` and ``--amp-dtype``; a config may hold the same
as ``amp = dict(dtype='auto', channels_last=True)``, which the tools then apply without the flag
(:mod:`ssd_plugin_cli.options`: the options; :mod:`ssd_plugin.cli.amp`: the config they write).
:class:`~ssd_plugin.engine.hooks.MixedPrecisionHook` logs the choice and its reason once at the
start of the run (a warning where bf16 is asked for on a CPU that emulates it) and puts the
autocast around the network.

The weights become channels_last before the first iteration, after the runner has wrapped the
model: under DDP, whose gradient buckets were laid out for the contiguous weights, that costs a
gradient copy per step (PyTorch warns that the strides differ), not a wrong result.
"""

import logging
import os
import platform
from dataclasses import dataclass
from typing import Callable, FrozenSet, Iterable, Optional

import torch
from torch import nn

from ..utils import cpu_features
from .method_wrap import is_wrapped, unwrap_method, wrap_method

__all__ = [
    'AMP_DTYPES',
    'AmpChoice',
    'autocast_network',
    'choose_amp',
    'cpu_bf16_flags',
    'onednn_isa_cap',
    'parse_amp_dtype',
    'remove_autocast_network',
]

#: The accepted ``dtype`` names and what they mean (None: decided by the device). The tools'
#: --amp-dtype lists the same names (``ssd_plugin_cli.options.AMP_DTYPE_NAMES``, checked equal).
AMP_DTYPES = {
    'auto': None,
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16,
    'float16': torch.float16,
    'fp16': torch.float16,
}
#: The CPU feature flags (as /proc/cpuinfo names them) that mean native bf16 arithmetic.
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16', 'bf16')
#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) that keep oneDNN below its bf16 kernels: under one,
#: an x86 CPU's bf16 instructions go unused and bf16 runs emulated, as on a CPU without them.
ONEDNN_CAPS_WITHOUT_BF16 = ('SSE41', 'AVX', 'AVX2', 'AVX2_VNNI', 'AVX512_CORE', 'AVX512_CORE_VNNI')
_TAG = 'autocast_network'


@dataclass(frozen=True)
class AmpChoice:
    """The precision a run uses, and why.

    Attributes:
        device (str): ``'cpu'`` or ``'cuda'``.
        dtype (torch.dtype, optional): The autocast dtype; None runs float32 (no autocast).
        loss_scale (bool): Whether the backward pass needs a loss scaler (float16).
        channels_last (bool): Whether weights and images are made channels_last.
        reason (str): Why this precision, for the log.
        warning (bool): Whether the log line is a warning (bf16 asked for where it is emulated,
            likely slower than float32). Defaults to False.
    """

    device: str
    dtype: Optional[torch.dtype]
    loss_scale: bool
    channels_last: bool
    reason: str
    warning: bool = False

    @property
    def log_level(self) -> int:
        """``logging.WARNING`` for a choice the user should reconsider, else ``logging.INFO``."""
        return logging.WARNING if self.warning else logging.INFO

    @property
    def enabled(self) -> bool:
        """Whether anything changes against a float32 run."""
        return self.dtype is not None or self.channels_last

    def describe(self) -> str:
        """One log line: what runs how, and why."""
        precision = 'float32' if self.dtype is None else f'{str(self.dtype)[6:]} autocast'
        parts = [precision, 'channels_last' if self.channels_last else 'contiguous']
        if self.loss_scale:
            parts.append('dynamic loss scaler')
        return (f'Mixed precision on {self.device}: {" + ".join(parts)} for the network; fp32 '
                f'weights, loss and post-processing. {self.reason}')  # fmt: skip


def onednn_isa_cap() -> Optional[str]:
    """oneDNN's ISA cap from the environment (``ONEDNN_MAX_CPU_ISA`` or its older name
    ``DNNL_MAX_CPU_ISA``), upper-cased, or None."""
    for key in ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA'):
        if os.environ.get(key):
            return os.environ[key].strip().upper()
    return None


def cpu_bf16_flags(cpuinfo: str = '/proc/cpuinfo') -> FrozenSet[str]:
    """The native-bf16 feature flags this CPU has and oneDNN may use (see
    :data:`NATIVE_BF16_FLAGS`).

    Reads torch's own CPU checks (cpuinfo, any OS) and, on Linux, the kernel's flag list (less
    what a CPUID mask hides, :func:`~ssd_plugin.utils.cpu_flags`); an x86 CPU's flags are
    dropped under a :data:`ONEDNN_CAPS_WITHOUT_BF16` cap.
    """
    found = set()
    if getattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False)():
        found.add('avx512_bf16')
    if getattr(torch.cpu, '_is_amx_tile_supported', lambda: False)():
        found.add('amx_bf16')  # torch checks the AMX tile unit, which comes with AMX-BF16
    found.update(cpu_features.cpu_flags(cpuinfo) & set(NATIVE_BF16_FLAGS))
    if onednn_isa_cap() in ONEDNN_CAPS_WITHOUT_BF16:
        found -= {'avx512_bf16', 'amx_bf16'}
    return frozenset(found)


def parse_amp_dtype(dtype) -> Optional[torch.dtype]:
    """The torch dtype an ``amp`` dtype name means (None for ``'auto'``).

    Raises:
        ValueError: An unknown name (the message lists the accepted ones).
    """
    if isinstance(dtype, torch.dtype) and dtype in AMP_DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in AMP_DTYPES:
        return AMP_DTYPES[dtype]
    raise ValueError(f'amp dtype must be one of {", ".join(AMP_DTYPES)}, got {dtype!r} '
                     f'(--amp-dtype or the config\'s amp.dtype)')  # fmt: skip


def choose_amp(device: str, dtype='auto', channels_last: bool = True, *,
               cpu_flags: Optional[Iterable[str]] = None, has_mkldnn: Optional[bool] = None,
               cuda_bf16: Optional[bool] = None) -> AmpChoice:  # fmt: skip
    """Decide the precision of a run on ``device`` (see the module docstring).

    Args:
        device (str): ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        dtype (str | torch.dtype): ``'auto'``, ``'bfloat16'``/``'bf16'``,
            ``'float16'``/``'fp16'``. Defaults to ``'auto'``.
        channels_last (bool): Weights and images channels_last. Defaults to True.
        cpu_flags (Iterable[str], optional): The CPU's native-bf16 flags; default
            :func:`cpu_bf16_flags`. Tests pass them to simulate other CPUs.
        has_mkldnn (bool, optional): Whether torch has oneDNN; default
            ``torch.backends.mkldnn.is_available()``.
        cuda_bf16 (bool, optional): Whether the GPU supports bf16; default
            ``torch.cuda.is_bf16_supported()``.

    Raises:
        ValueError: An unknown dtype, float16 on a CPU, or bfloat16 on a GPU without it.
    """
    wanted = parse_amp_dtype(dtype)
    kind = torch.device(device).type
    if kind == 'cuda':
        if cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_bf16_supported()
        if wanted is None:
            if cuda_bf16:
                return AmpChoice('cuda', torch.bfloat16, False, channels_last,
                                 'The GPU supports bf16 (no loss scaler needed).')  # fmt: skip
            reason = 'The GPU has no bf16: float16 with a dynamic loss scaler.'
            return AmpChoice('cuda', torch.float16, True, channels_last, reason)
        if wanted == torch.bfloat16 and not cuda_bf16:
            raise ValueError('amp dtype bfloat16: this GPU does not support bf16 (compute '
                             'capability < 8.0); use float16 or auto')  # fmt: skip
        scaled = wanted == torch.float16
        return AmpChoice('cuda', wanted, scaled, channels_last, f'{str(wanted)[6:]} as asked.')
    if kind != 'cpu':
        raise ValueError(f'--amp supports cpu and cuda devices, not {device}')
    if wanted == torch.float16:
        raise ValueError('amp dtype float16 needs a GPU (CPUs compute it no faster than '
                         'float32); on the CPU use bfloat16 or auto')  # fmt: skip
    if has_mkldnn is None:
        has_mkldnn = torch.backends.mkldnn.is_available()
    flags = sorted(cpu_bf16_flags() if cpu_flags is None else set(cpu_flags))
    native = bool(set(flags) & set(NATIVE_BF16_FLAGS)) and has_mkldnn
    if native:
        return AmpChoice('cpu', torch.bfloat16, False, channels_last,
                         f'The CPU computes bf16 natively ({", ".join(flags)}).')  # fmt: skip
    why = ('torch has no oneDNN (torch.backends.mkldnn)' if not has_mkldnn else
           f'the CPU ({platform.processor() or platform.machine()}) has no native bf16 (none of '
           f'the flags {", ".join(NATIVE_BF16_FLAGS)}{_cap_note()})')  # fmt: skip
    if wanted == torch.bfloat16:  # asked for explicitly: honoured, with a warning
        return AmpChoice('cpu', torch.bfloat16, False, channels_last,
                         f'bfloat16 as asked, but {why}: bf16 is emulated and likely slower '
                         f'than float32.', warning=True)  # fmt: skip
    return AmpChoice(
        'cpu',
        None,
        False,
        False,
        f'Running float32: {why}, and emulated bf16 is slower than float32.',
    )


def _cap_note() -> str:
    cap = onednn_isa_cap()
    return (
        f' that oneDNN may use under ONEDNN_MAX_CPU_ISA={cap}'
        if cap in ONEDNN_CAPS_WITHOUT_BF16
        else ''
    )


def _unwrap_model(model: nn.Module) -> nn.Module:
    return getattr(model, 'module', model)  # DDP and mmengine's model wrappers


def autocast_network(model: nn.Module, choice: AmpChoice) -> bool:
    """Run ``model``'s network under ``choice``: autocast, channels_last, float32 outputs.

    Wraps ``extract_feat`` and ``bbox_head.forward`` on this model instance (not the class);
    the head's outputs (nested tuples/lists of tensors) are cast back to float32. Converts the
    weights to channels_last in place (same Parameter objects, so optimizers keep them) and each
    input batch in ``extract_feat``. A second call is a no-op.

    Args:
        model (nn.Module): A single-stage detector (or a wrapper holding one as ``.module``).
        choice (AmpChoice): From :func:`choose_amp`.

    Returns:
        bool: Whether the model was changed by this call.

    Raises:
        AttributeError: The model has no ``extract_feat`` or ``bbox_head`` (names its type).
    """
    if not choice.enabled:
        return False
    detector = _unwrap_model(model)
    head = getattr(detector, 'bbox_head', None)
    if not callable(getattr(detector, 'extract_feat', None)) or head is None:
        raise AttributeError(f'--amp autocasts a detector\'s extract_feat and bbox_head; '
                             f'{type(detector).__name__} has no such pair')  # fmt: skip
    if is_wrapped(detector.extract_feat, _TAG):
        return False
    fmt = torch.channels_last if choice.channels_last else None
    if fmt is not None:
        detector.to(memory_format=fmt)

    def autocast():
        return torch.autocast(choice.device, dtype=choice.dtype, enabled=choice.dtype is not None)

    def make_extract(extract_feat: Callable) -> Callable:
        def extract(batch_inputs, *args, **kwargs):
            if fmt is not None and batch_inputs.dim() == 4:
                batch_inputs = batch_inputs.contiguous(memory_format=fmt)
            with autocast():
                return extract_feat(batch_inputs, *args, **kwargs)

        return extract

    def make_forward(forward: Callable) -> Callable:
        def forward_fp32_out(*args, **kwargs):
            with autocast():
                outputs = forward(*args, **kwargs)
            return _to_float32(outputs)

        return forward_fp32_out

    wrap_method(detector, 'extract_feat', make_extract, _TAG)
    wrap_method(head, 'forward', make_forward, _TAG)
    detector._amp_choice = choice
    return True


def remove_autocast_network(model: nn.Module) -> None:
    """Undo :func:`autocast_network`'s wrappers (the weights stay in their memory format)."""
    detector = _unwrap_model(model)
    unwrap_method(detector, 'extract_feat', _TAG)
    if getattr(detector, 'bbox_head', None) is not None:
        unwrap_method(detector.bbox_head, 'forward', _TAG)
    vars(detector).pop('_amp_choice', None)


def _to_float32(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(_to_float32(o) for o in outputs)
    return outputs
