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


def test_other_class_shares_are_not_a_shift():
    """A split of untouched test pages holding other shares of the classes (every blank and photo page, two of the
    others): its pages are less sharp on average (-0.6 SD) only because it has more blank pages. That is a class mix,
    not a change in the images: no 'augment focus' remedy, a feature AUC near 0.5 (it was 0.64, sharpness 'differs').
    The planted darkening of the other test, on the same classes, is still found within classes."""
    df = read_collection(SAMPLES/'collection.csv', check_images=False)
    t = df[df.split == 'test']
    mix = pd.concat([t[t.label.isin(['blank', 'photo'])], t[~t.label.isin(['blank', 'photo'])].groupby('label').head(2)])
    d2 = pd.concat([df, mix.assign(split='test_mix')], ignore_index=True); d2.attrs = df.attrs
    set_seed(0, reproducible=True)
    learn = defaults_learner(collection_dls(d2, size=32, bs=32), lr=3e-3)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(10)
    rep = learn.shift_report('test_mix')
    assert rep.label_shift()['true_labels'] > 0.3
    assert not rep.shifted and rep.differs == [] and abs(rep.auc - 0.5) < 0.1, rep.summary
    s = rep.stats.loc['sharpness']
    assert s.verdict == 'class mix' and s.smd < -0.4 and abs(s.smd_within_class) < 0.2, rep.stats
    assert 'Explained by the mix of classes' in rep.summary and 'no distribution shift detected' in rep.summary
    assert (rep.stats_per_class().changed == '').all(), rep.stats_per_class()  # and no class changed within itself


def test_darkening_shows_within_classes(darkened):
    rep = darkened.shift_report('test')
    st = rep.stats
    assert st.loc['brightness', 'verdict'] == 'differs' and st.loc['brightness', 'smd_within_class'] < -1, st
    pcs = rep.stats_per_class()   # every test page was darkened: every class is darker
    assert set(pcs.index) == set(darkened.dls.vocab) and (pcs.brightness < -0.5).all(), pcs
    assert pcs.changed.str.contains('brightness −').all(), pcs.changed  # each class on its own, over 48 tests
    sec = [k for k in rep.to_dict() if k.startswith('Within each class')]
    assert 'Within each class' in rep.to_text() and len(sec) == 1 and len(rep.to_dict()[sec[0]]) == 6
