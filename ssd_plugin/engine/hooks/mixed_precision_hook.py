"""HOOKS ``MixedPrecisionHook``: the network under autocast + channels_last (``--amp``)."""

from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from .. import amp as _amp  # a module, not names: ssd_plugin.engine.amp imports this package

__all__ = ['MixedPrecisionHook']


@HOOKS.register_module()
class MixedPrecisionHook(Hook):
    """Run the detector's network in mixed precision for training, validation and testing.

    At the start of the run the hook decides the precision from the model's device
    (:func:`ssd_plugin.engine.amp.choose_amp`) and logs it with its reason, once. Before the
    first training, validation or test iteration (after the checkpoint is loaded) it wraps the
    model's network (:func:`ssd_plugin.engine.amp.autocast_network`): autocast and channels_last
    around backbone, neck and head convolutions; loss and post-processing in float32. float16
    needs a loss scaler, so training stops at the start with a clear error if the optimizer
    wrapper has none (``tools/train.py --amp`` sets ``LossScaleOptimWrapper``). The wrappers are
    taken off after the run.

    Args:
        dtype (str): ``'auto'``, ``'bfloat16'`` or ``'float16'``. Defaults to ``'auto'``.
        channels_last (bool): Weights and images in channels_last format. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, dtype: str = 'auto', channels_last: bool = True) -> None:
        _amp._parse_dtype(dtype)  # an unknown name fails when the config is built
        self.dtype = dtype
        self.channels_last = channels_last
        self.choice: Optional[_amp.AmpChoice] = None

    def before_run(self, runner) -> None:
        device = next(runner.model.parameters()).device.type
        self.choice = _amp.choose_amp(device, self.dtype, self.channels_last)
        runner.logger.info(self.choice.describe())

    def before_train(self, runner) -> None:
        if self.choice.loss_scale and getattr(runner.optim_wrapper, 'loss_scaler', None) is None:
            raise RuntimeError(
                f'{str(self.choice.dtype)[6:]} autocast needs a loss scaler, and the optimizer '
                f'wrapper ({type(runner.optim_wrapper).__name__}) has none: set '
                f"optim_wrapper.type='LossScaleOptimWrapper' (tools/train.py --amp does)"
            )
        _amp.autocast_network(runner.model, self.choice)

    def before_val(self, runner) -> None:
        _amp.autocast_network(runner.model, self.choice)

    def before_test(self, runner) -> None:
        _amp.autocast_network(runner.model, self.choice)

    def after_run(self, runner) -> None:
        _amp.remove_autocast_network(runner.model)
