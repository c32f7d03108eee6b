# COCO test-dev submission for SSD300 (paper: 25.1 AP on test-dev; mmdet's model 25.5 on val2017).
# test-dev has no public annotations: tools/test.py only writes the detections in COCO's results
# format (xywh boxes, original category ids, the image ids of image_info_test-dev2017.json) to
# <outfile_prefix>.bbox.json. Rename it detections_test-dev2017_ssd300_results.json, zip it and
# upload it to the COCO detection evaluation server, which reports the 12 leaderboard numbers:
#   python tools/test.py configs/ssd300_vgg16_8xb8-120e_coco_test-dev.py CHECKPOINT
_base_ = './ssd300_vgg16_8xb8-120e_coco.py'

test_dataloader = dict(
    dataset=dict(
        ann_file='annotations/image_info_test-dev2017.json',
        data_prefix=dict(img='test2017/'),
        allow_empty=True,  # image information only: no annotations, by design
    )
)
test_evaluator = dict(
    type='CocoMetric',
    metric='bbox',
    format_only=True,
    ann_file='data/coco/annotations/image_info_test-dev2017.json',
    outfile_prefix='./work_dirs/ssd300_coco_test-dev/detections_test-dev2017_ssd300_results',
)
# The lr is tuned for 8 GPUs x 8 images = 64 images per step; tools/train.py scales it by
# (processes x batch_size) / 64 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=64)
