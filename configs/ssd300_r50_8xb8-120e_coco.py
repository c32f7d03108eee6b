# SSD300 with a ResNet-50 base network (He et al. 2016) instead of the reduced VGG16, on COCO.
# ResNet-50's stage-2 (C3, 512 ch, stride 8) and stage-3 (C4, 1024 ch, stride 16) outputs are
# 38x38 and 19x19 at 300 px: the sizes and strides of VGG16's conv4_3 and fc7, so the six SSD300
# levels (38, 19, 10, 5, 3, 1), their default boxes and the extra layers are unchanged. The
# features come out of BatchNorm, so no L2Norm on the first level; the extra layers get BN too
# (they are trained from scratch on top of BN features). ImageNet weights from torchvision
# (RGB, normalised by mean and std); stage 1 and all BN statistics frozen, as mmdet's ResNet
# detectors at 8 images per GPU. Otherwise the SSD300-COCO recipe (120 effective epochs).
_base_ = './ssd300_vgg16_8xb8-120e_coco.py'

model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=3,  # C5 is not used: stop after the 1024-channel stage
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(1, 2),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
    ),
    neck=dict(
        in_channels=(512, 1024),
        l2_norm_scale=None,
        norm_cfg=dict(type='BN'),
    ),
)
# The lr is tuned for 8 GPUs x 8 images = 64 images per step; tools/train.py scales it by
# (processes x batch_size) / 64 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=64)
