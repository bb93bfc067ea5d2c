"shift_report on fastai DataLoaders (collection_dls): a planted darkening is found and named, a model with no linear layer, bad splits"
import shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from fastcore.test import test_fail as t_fail
from fastai.torch_core import set_seed
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
import glamdebug.shift  # Learner.shift_report

torch.set_num_threads(1)
SAMPLES = Path(__file__).parent.parent/'data'/'samples'

@pytest.fixture(scope='module')
def darkened(tmp_path_factory):
    "The sample collection with its `test` images made darker and flatter (× 0.55): a planted shift of one kind"
    root = tmp_path_factory.mktemp('coll')
    shutil.copytree(SAMPLES/'images', root/'images')
    df = pd.read_csv(SAMPLES/'collection.csv')
    df = df[df.split.isin(['train', 'valid', 'test'])]
    for fn in df[df.split == 'test'].fname:
        a = np.asarray(Image.open(root/fn).convert('RGB'), np.float32)*0.55
        Image.fromarray(a.round().astype(np.uint8)).save(root/fn)
    df.to_csv(root/'collection.csv', index=False)
    d = read_collection(root/'collection.csv', check_images=False)
    set_seed(0, reproducible=True)
    learn = defaults_learner(collection_dls(d, size=32, bs=32), lr=3e-3)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4)
    return learn

def test_planted_darkening_found_and_named(darkened):
    rep = darkened.shift_report('test')
    assert rep.shifted, rep.summary
    assert 'brightness' in rep.differs and rep.stats.loc['brightness', 'smd'] < -1, rep.stats
    assert 'contrast' in rep.differs and rep.stats.loc['contrast', 'smd'] < 0
    assert 'file_kb' not in rep.differs and 'width_px' not in rep.differs  # same files otherwise: no false reason
    assert 'augment lighting' in set(rep.remedies().remedy)
    assert 'brightness (lower on test' in rep.summary

def test_no_linear_layer_still_reports(darkened):
    "A model without a linear layer: no feature test (AUC NaN, not mentioned), the rest of the report stands"
    import torch.nn as nn
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    m = nn.Sequential(nn.Conv2d(3, darkened.dls.c, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    l = Learner(darkened.dls, m, loss_func=CrossEntropyLossFlat())
    rep = l.shift_report('test')
    assert rep.auc != rep.auc and 'AUC' not in rep.summary
    assert 'brightness' in rep.differs

def test_bad_split_named(darkened):
    t_fail(lambda: darkened.shift_report('test_nope'), contains='test_nope')
