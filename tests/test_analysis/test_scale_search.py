"""Scale search: tiny objects get a smaller s_min, the result never loses coverage, budgets hold."""

import sys
from pathlib import Path

import pytest

from ssd_plugin.analysis import evaluate_coverage, prepare_coverage, search_scale_range

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_coco import tiny_config, write_synthetic_coco  # noqa: E402

SSD300_SIZES = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]


@pytest.fixture(scope='module')
def tiny_objects(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('tiny') / 'tiny.json')
    write_synthetic_coco(path, 60, 400, side_range=(3, 14), image_size=(300, 300), seed=3)
    return prepare_coverage(tiny_config(path), featmap_sizes=SSD300_SIZES)


def test_tiny_objects_get_a_smaller_s_min(tiny_objects):
    before = evaluate_coverage(tiny_objects, with_positives=False)
    assert before['by_size']['small']['num_gts'] == 400
    assert before['by_size']['small']['coverage'] < 0.15  # 21 px boxes for 3-14 px objects

    search = search_scale_range(tiny_objects)
    s_min, s_max = search['overrides']['scale_range']
    assert s_min < 0.15 and 'ratios' not in search['overrides']
    after = evaluate_coverage(tiny_objects, search['overrides'], with_positives=False)
    assert after['by_size']['small']['coverage'] > before['by_size']['small']['coverage'] + 0.15
    assert search['after'][0] == pytest.approx(after['overall']['coverage'])  # all gts searched
    assert search['num_priors'] == before['num_priors'] == 8732


def test_ratio_search_respects_the_budget(tiny_objects):
    with pytest.raises(ValueError, match='max_priors=5000 is below the 8732 default boxes'):
        search_scale_range(tiny_objects, max_priors=5000)
    search = search_scale_range(tiny_objects, search_ratios=True, max_priors=8000, max_gts=200)
    assert search['num_priors'] <= 8000 and len(search['overrides']['ratios']) == 6
    assert search['search_gts'] == 200 and search['evaluations'] > 100
