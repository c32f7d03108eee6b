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
as ``amp = dict(dtype='auto', channels_last=True)`` (:func:`apply_amp_cfg`), which the tools then
apply without the flag. :class:`~ssd_plugin.engine.hooks.MixedPrecisionHook` logs the choice and
its reason once at the start of the run and puts the autocast around the network.

The weights become channels_last before the first iteration, after the runner has wrapped the
model: under DDP, whose gradient buckets were laid out for the contiguous weights, that costs a
gradient copy per step (PyTorch warns that the strides differ), not a wrong result.
"""

import argparse
import os.path as osp
import platform
from dataclasses import dataclass
from typing import Callable, FrozenSet, Iterable, Optional

import torch
from mmengine.config import Config
from torch import nn

from .hooks.method_wrap import is_wrapped, unwrap_method, wrap_method

__all__ = [
    'AMP_DTYPES',
    'AmpChoice',
    'add_amp_args',
    'apply_amp_cfg',
    'autocast_network',
    'choose_amp',
    'cpu_bf16_flags',
    'remove_autocast_network',
]

#: The accepted ``dtype`` names and what they mean (None: decided by the device).
AMP_DTYPES = {
    'auto': None,
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16,
    'float16': torch.float16,
    'fp16': torch.float16,
}
#: The CPU feature flags (as /proc/cpuinfo names them) that mean native bf16 arithmetic.
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16', 'bf16')
_AMP_KEYS = ('dtype', 'channels_last', 'loss_scale')
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
    """

    device: str
    dtype: Optional[torch.dtype]
    loss_scale: bool
    channels_last: bool
    reason: str

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


def cpu_bf16_flags(cpuinfo: str = '/proc/cpuinfo') -> FrozenSet[str]:
    """The native-bf16 feature flags this CPU has (see :data:`NATIVE_BF16_FLAGS`).

    Reads torch's own CPU checks (cpuinfo, any OS) and, on Linux, the kernel's flag list.
    """
    found = set()
    if getattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False)():
        found.add('avx512_bf16')
    if getattr(torch.cpu, '_is_amx_tile_supported', lambda: False)():
        found.add('amx_bf16')  # torch checks the AMX tile unit, which comes with AMX-BF16
    if osp.isfile(cpuinfo):
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(('flags', 'Features')):  # x86, Arm
                    found.update(set(line.split(':', 1)[1].split()) & set(NATIVE_BF16_FLAGS))
                    break
    return frozenset(found)


def _parse_dtype(dtype) -> Optional[torch.dtype]:
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
    wanted = _parse_dtype(dtype)
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
           f'the flags {", ".join(NATIVE_BF16_FLAGS)})')  # fmt: skip
    if wanted == torch.bfloat16:  # asked for explicitly: honoured, with the warning
        return AmpChoice('cpu', torch.bfloat16, False, channels_last,
                         f'bfloat16 as asked, but {why}: bf16 is emulated and likely slower '
                         f'than float32.')  # fmt: skip
    return AmpChoice(
        'cpu',
        None,
        False,
        False,
        f'Running float32: {why}, and emulated bf16 is slower than float32.',
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


def add_amp_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--amp`` and ``--amp-dtype`` (tools/train.py, tools/test.py, image_demo.py)."""
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision for the network: bf16 autocast + channels_last on CPUs with '
        'native bf16 (else float32) and bf16-capable GPUs, float16 with a loss scaler on other '
        'GPUs; fp32 weights, loss and post-processing')  # fmt: skip
    parser.add_argument(
        '--amp-dtype', choices=list(AMP_DTYPES),
        help='the --amp precision instead of auto (float16: GPUs only)')  # fmt: skip


def apply_amp_cfg(cfg: Config, amp: bool = False, dtype: Optional[str] = None,
                  device: Optional[str] = None) -> Optional[AmpChoice]:  # fmt: skip
    """Apply ``--amp`` / ``--amp-dtype`` or the config's ``amp`` dict to a tool's config.

    Adds ``MixedPrecisionHook`` to ``cfg.custom_hooks`` and, where the choice needs a loss
    scaler (float16), sets ``optim_wrapper.type = 'LossScaleOptimWrapper'``. A config's
    ``AmpOptimWrapper`` (which would autocast the loss too, and asserts a GPU) becomes the
    plain or loss-scaling wrapper. Nothing changes without ``--amp`` and without ``cfg.amp``.

    Args:
        cfg (Config): Modified in place; ``cfg.amp`` is set to what was applied.
        amp (bool): ``--amp``.
        dtype (str, optional): ``--amp-dtype``; overrides ``cfg.amp.dtype``.
        device (str, optional): Default: ``'cuda'`` if available, else ``'cpu'`` (as the runner).

    Returns:
        AmpChoice | None: The choice, or None when mixed precision is off.

    Raises:
        ValueError: ``--amp-dtype`` without ``--amp`` and without ``cfg.amp``, or an unknown key
            in ``cfg.amp`` (named).
    """
    amp_cfg = cfg.get('amp')
    if amp_cfg is not None and not isinstance(amp_cfg, dict):
        raise ValueError(f'the config key amp must be a dict such as dict(dtype=\'auto\'), '
                         f'got {amp_cfg!r}')  # fmt: skip
    if not amp and amp_cfg is None:
        if dtype is not None:
            raise ValueError('--amp-dtype needs --amp (or an amp dict in the config)')
        return None
    amp_cfg = dict(amp_cfg or {})
    unknown = sorted(set(amp_cfg) - set(_AMP_KEYS))
    if unknown:
        raise ValueError(f'unknown key(s) amp.{", amp.".join(unknown)} in the config; '
                         f'amp takes {", ".join(_AMP_KEYS)}')  # fmt: skip
    if dtype is not None:
        amp_cfg['dtype'] = dtype
    amp_cfg.setdefault('dtype', 'auto')
    amp_cfg.setdefault('channels_last', True)
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    choice = choose_amp(device, amp_cfg['dtype'], amp_cfg['channels_last'])
    cfg.amp = amp_cfg

    hooks = [h for h in (cfg.get('custom_hooks') or []) if h.get('type') != 'MixedPrecisionHook']
    hooks.append(dict(type='MixedPrecisionHook', dtype=amp_cfg['dtype'],
                      channels_last=amp_cfg['channels_last']))  # fmt: skip
    cfg.custom_hooks = hooks
    wrapper = cfg.get('optim_wrapper')
    if wrapper is not None:
        if choice.loss_scale:
            wrapper['type'] = 'LossScaleOptimWrapper'
            wrapper['loss_scale'] = amp_cfg.get('loss_scale', wrapper.get('loss_scale', 'dynamic'))
            wrapper.pop('dtype', None)  # AmpOptimWrapper's: the hook autocasts, not the wrapper
        elif wrapper.get('type') in ('AmpOptimWrapper', 'LossScaleOptimWrapper'):
            wrapper['type'] = 'OptimWrapper'
            for key in ('loss_scale', 'dtype', 'use_fsdp'):
                wrapper.pop(key, None)
    return choice
