"""Compare to a known result: on real training, planted bugs (a learning rate far too small, a preprocessing step that
only training batches get) make the model lose to a thumbnail baseline and the report says so; the healthy model raises
no such alarm; the baselines are kept between calls; plain fastai loaders and the cache work; bad input is named; the
`baselines` command works."""
import json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fasttransform import Transform
from fastai.torch_core import set_seed
from fastai.vision.core import TensorImage
from fastai.vision.data import ImageDataLoaders
from fastai.vision.augment import Resize
from glamdebug.core import GlamError
from glamdebug.data import collection_dls
from glamdebug.models import defaults_learner
from glamdebug.baselines import thumbnail_features, fit_baselines, compare_baselines

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


class InvertTrain(Transform):
    "A preprocessing step only training batches get (the valid pipeline lacks it): the model learns white-on-black digits"
    split_idx, order = 0, 99
    def encodes(self, x: TensorImage): return 1 - x


def trained(df, epochs=6, seed=0, lr=None, **kw):
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(df, size=SIZE, bs=32, **kw), **({} if lr is None else dict(lr=lr)))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn


def test_planted_bugs_lose_to_a_baseline_and_the_healthy_model_does_not(digits):
    tmp, df = digits
    ok = trained(df)
    rep = ok.baseline_report(progress=False)
    assert rep.verdict in ('better', 'no better'), rep.summary   # a healthy model never loses to a thumbnail
    assert rep.model_error < 0.1 and not rep.worse_classes, rep.summary
    t = rep.table.set_index('baseline')
    prior = [b for b in t.index if b.startswith('always')]
    assert len(prior) == 1 and t.at[prior[0], 'verdict'] == 'model better' and t.at[prior[0], 'error'] > 0.8   # ten classes
    assert (t.verdict.iloc[1:] != 'model worse').all()
    slow = trained(df, lr=3e-7)   # 1,000 times too small: runs without error, the loss falls slowly
    rs = slow.baseline_report(progress=False)
    assert rs.verdict == 'worse' and 'worse than a simple baseline' in rs.summary, rs.summary
    assert rs.model_error > 0.5 and len(rs.worse_classes) >= 5
    inv = trained(df, batch_tfms=[InvertTrain()])   # train/inference mismatch: valid images are not inverted
    ri = inv.baseline_report(progress=False, goal=0.02)
    assert ri.verdict == 'worse', ri.summary
    best = ri.table.set_index('baseline').loc[ri.best]
    assert best.error < 0.15 and best.verdict == 'model worse' and best.baseline_only > 5*best.model_only
    fig = ri.show(n=4)   # what the model misses: images the thumbnail gets right, the model not
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert ri.items.file.map(lambda f: Path(f).exists()).all() and len(ri.items) == (df.split == 'valid').sum()


def test_baselines_are_kept_and_the_sample_is_bounded(digits):
    tmp, df = digits
    learn = trained(df, epochs=1)
    rep = learn.baseline_report(n_train=200, progress=False)
    assert rep.extra['n_train'] == 200 and rep.extra['n_train_total'] == (df.split == 'train').sum()
    assert 'a seeded sample of' in rep.summary
    store = learn._glam_baselines
    (key, first), = store.items()
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    rep2 = learn.baseline_report(n_train=200, progress=False)   # the same baselines, a new model
    assert list(store) == [key] and store[key] is first
    assert rep2.table.iloc[1:].error.tolist() == rep.table.iloc[1:].error.tolist()
    assert rep2.model_error != rep.model_error
    rep3 = learn.baseline_report('test', n_train=200, progress=False)
    assert len(store) == 2 and rep3.title == 'Simple baselines on test' and rep3.table.errors.iloc[0] == learn.get_split_preds('test').n_err


def test_thumbnails_of_the_cache_and_of_plain_fastai_loaders(digits, tmp_path):
    "The fast-path cache gives the same thumbnails as the decoding loader; `ImageDataLoaders.from_df` / `from_folder` work"
    from glamdebug.fastpath import cached_dls
    tmp, df = digits
    a = collection_dls(df, size=SIZE, bs=64, draft=False)
    b = cached_dls(df, size=SIZE, bs=64, cache_dir=tmp_path, progress=False)
    Xa, ya = thumbnail_features(a.valid, progress=False)
    Xb, yb = thumbnail_features(b.valid, progress=False)
    assert np.array_equal(ya, yb) and all(np.abs(Xa[s] - Xb[s]).max() < 1e-5 for s in Xa)
    t = df[df.split != 'test'].reset_index(drop=True).assign(is_valid=lambda d: d.split == 'valid')
    set_seed(0, reproducible=True)
    dls = ImageDataLoaders.from_df(t, tmp/'digits', fn_col='fname', label_col='label', valid_col='is_valid', item_tfms=Resize(SIZE), bs=32)
    learn = defaults_learner(dls)
    with learn.no_bar(), learn.no_logging(): learn.fit(6)
    rep = learn.baseline_report(progress=False)
    assert rep.verdict != 'worse' and len(rep.table) == 8
    dls = ImageDataLoaders.from_folder(tmp/'digits'/'images', train='train', valid='valid', item_tfms=Resize(SIZE), bs=64)
    learn = defaults_learner(dls)
    rep = learn.baseline_report(progress=False)   # untrained: the baselines win
    assert rep.verdict == 'worse' and rep.table.errors.iloc[0] == learn.get_split_preds().n_err
    assert rep.items.file.str.endswith('.png').all() and Path(rep.items.file.iloc[0]).exists()   # `from_folder`: absolute paths


def test_bad_input_is_named(digits):
    tmp, df = digits
    learn = trained(df, epochs=1)
    with pytest.raises(GlamError, match='fit on training items'): learn.baseline_report('train')
    with pytest.raises(GlamError, match="tset"): learn.baseline_report('tset')
    with pytest.raises(GlamError, match='knn_k must be a whole number'): learn.baseline_report(knn_k=0)
    with pytest.raises(GlamError, match='positive whole numbers'): learn.baseline_report(sizes=(8, -1))
    with pytest.raises(GlamError, match=r'goal is an error rate in \[0, 1\], got 5 \(5 % is 0.05\)'): learn.baseline_report(goal=5)
    X = {8: np.zeros((4, 3))}
    with pytest.raises(GlamError, match=r'training thumbnails are \[8\] px, the items to predict \[4\] px'):
        fit_baselines(X, np.zeros(4, int), {4: np.zeros((2, 3))}, ['a'], progress=False)
    p = learn.get_split_preds()
    with pytest.raises(GlamError, match=f"baseline 'x' has 3 predictions for {p.n} items"): compare_baselines(p, {'x': np.zeros(3, int)})


def test_baselines_command(digits, tmp_path, cli):
    tmp, df = digits
    png = tmp_path/'baselines.png'
    csv = tmp/'digits'/'collection.csv'
    out = cli('baselines', str(csv), '--epochs', '1', '--size', str(SIZE), '--n-train', '300', '--goal', '0.02', '--json', '--plot', str(png))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d['n_train'] == 300 and d['goal'] == 0.02 and d['table'][0]['baseline'] == 'model' and len(d['table']) == 8
    assert d['verdict'] in ('better', 'no better', 'worse') and png.stat().st_size > 1000
    bad = cli('baselines', str(csv), '--split', 'tset', '--size', str(SIZE))
    assert bad.returncode == 2 and "no split 'tset' in the collection (before training)" in bad.stderr
    bad = cli('baselines', str(csv), '--split', 'train')
    assert bad.returncode == 2 and 'fit on training items' in bad.stderr
