"""Did the change help? On real training: more epochs is found better and training on partly shuffled labels worse, on
every held-out split; the same settings with another seed is not called better or worse once a control run measures
training noise; learners on other items are refused with the item named; `show` draws the flipped images."""
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fastai.torch_core import set_seed
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
import glamdebug.compare  # noqa: F401 (Learner.compare)

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


def trained(df, epochs, seed, noise=0.):
    d = df.copy()
    if noise:   # a share of the training labels shuffled among themselves: a planted harm
        rng = np.random.default_rng(seed)
        tr = np.nonzero((d.split == 'train').to_numpy())[0]
        pick = rng.choice(tr, int(noise*len(tr)), replace=False)
        d.iloc[pick, d.columns.get_loc('label')] = rng.permutation(d.label.to_numpy()[pick])
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(d, size=SIZE, bs=64))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn


@pytest.fixture(scope='module')
def runs(digits):
    tmp, df = digits
    return df, dict(e2=trained(df, 2, 0), e8=trained(df, 8, 1), e8b=trained(df, 8, 2), noisy=trained(df, 8, 1, noise=0.6))


def test_better_and_worse_are_found(runs):
    df, r = runs
    up = r['e2'].compare(r['e8'], progress=False)
    assert list(up.table.index) == ['valid', 'test']
    assert (up.table.verdict == 'better').all() and (up.table.fixed > 3*up.table.broken).all(), up.summary
    assert 'after is better' in up.summary
    down = r['e8'].compare(r['noisy'], progress=False, control=r['e8b'])
    assert (down.table.verdict == 'worse').all(), down.summary
    assert (down.table.broken - down.table.fixed > down.table['seed noise']).all()
    # the flipped items are the ones whose right/wrong differs, with their files
    pv0, pv1 = r['e8'].get_split_preds('valid'), r['noisy'].get_split_preds('valid')
    flips = int((pv0.correct != pv1.correct).sum())
    assert (down.items.split == 'valid').sum() == flips
    assert down.items.file.map(lambda f: Path(f).exists()).all()
    fig = down.show('broken', n=4)
    assert len([ax for ax in fig.axes if ax.images]) == 4


def test_seed_noise_is_not_called_a_change(runs):
    df, r = runs
    same = r['e8'].compare(r['e8b'], control=trained(df, 8, 3), progress=False)
    assert not same.table.verdict.isin(['better', 'worse']).any(), same.summary
    # the per-class table adds up to the split's
    pc = same.per_class['valid']
    assert pc[['fixed', 'broken']].sum().tolist() == same.table.loc['valid', ['fixed', 'broken']].tolist()


def test_other_items_are_refused(runs, digits):
    df, r = runs
    sub = df[~((df.split == 'valid') & (df.label == '3'))]   # valid without its threes
    set_seed(0, reproducible=True)
    other = defaults_learner(collection_dls(sub, size=SIZE, bs=64))
    n0, n1 = (df.split == 'valid').sum(), (sub.split == 'valid').sum()
    with pytest.raises(GlamError, match=f'valid: before has {n0} items and after {n1}'):
        r['e8'].compare(other, splits='valid', progress=False)
    with pytest.raises(GlamError, match="'train'"): r['e8'].compare(r['e2'], splits=['valid', 'train'])
    with pytest.raises(GlamError, match='Learner'): r['e8'].compare(r['e2'].model)
