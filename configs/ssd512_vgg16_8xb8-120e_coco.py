# SSD512 on COCO: the SSD300 recipe with a seventh level (4x4 last extra conv), strides up to 512
# and the Caffe SSD512-COCO default boxes (scale_range (0.1, 0.9), first level 4 % / 10 %).
_base_ = './ssd300_vgg16_8xb8-120e_coco.py'

input_size = 512
model = dict(
    neck=dict(
        out_channels=(512, 1024, 512, 256, 256, 256, 256),
        strides=(2, 2, 2, 2, 1),
        paddings=(1, 1, 1, 1, 1),
        kernel_sizes=(3, 3, 3, 3, 4),
    ),
    bbox_head=dict(
        in_channels=(512, 1024, 512, 256, 256, 256, 256),
        prior_generator=dict(
            input_size=input_size,
            strides=(8, 16, 32, 64, 128, 256, 512),
            ratios=([2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]),
            scale_range=(0.1, 0.9),
        ),
    ),
)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=(103.53, 116.28, 123.675)),
    dict(type='MinIoUCrop'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotometricDistort'),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# The lr is tuned for 8 GPUs x 8 images = 64 images per step; tools/train.py scales it by
# (processes x batch_size) / 64 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=64)
