# The class channels of torchvision's COCO detectors, shared by the *_torchvision_coco.py configs.
# torchvision's 91 outputs are the background and COCO category ids 1..90, ten of which ("N/A")
# are unused. Converted by tools/model_converters/torchvision_ssd_to_plugin.py, channel c - 1 is
# category id c and the background is last; the configs keep all 90 foreground channels (so the
# softmax is torchvision's) and report mmdet's 80 COCO classes, class i from channel
# coco_class_channels[i] = (its category id) - 1.
coco_class_channels = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26, 27,
    30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54,
    55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 66, 69, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 83,
    84, 85, 86, 87, 88, 89,
]  # fmt: skip
