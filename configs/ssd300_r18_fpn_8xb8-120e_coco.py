# SSD300 on a feature pyramid (FPN, Lin et al. 2017) over ResNet-18's C3-C5, on COCO: six
# 256-channel levels in place of the reduced VGG16 and SSD's extra layers. At 300 px FPN's levels
# are 38, 19, 10, 5, 3 and 2 cells (its extra levels are stride-2 3x3 convs from the 10x10 map),
# so the default boxes take their strides from it: input / cells, 150 on the last level, where
# SSD300's extra layers end in 1x1 (stride 300). SSD300's box sizes and ratios otherwise. ImageNet
# weights from torchvision (RGB, mean and std); stage 1 and the BN statistics frozen.
_base_ = './ssd300_vgg16_8xb8-120e_coco.py'

model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        out_indices=(1, 2, 3),  # C3, C4, C5: 128, 256, 512 channels, 38, 19, 10 cells
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18'),
    ),
    neck=dict(
        _delete_=True,
        type='FPN',
        in_channels=[128, 256, 512],
        out_channels=256,
        num_outs=6,
        add_extra_convs='on_output',
    ),
    bbox_head=dict(
        in_channels=(256, 256, 256, 256, 256, 256),
        prior_generator=dict(strides=(8, 16, 32, 64, 100, 150)),
    ),
)
# The lr is tuned for 8 GPUs x 8 images = 64 images per step; tools/train.py scales it by
# (processes x batch_size) / 64 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=64)
