"""`learn.label_issues()`: planted mislabels are found, a clean collection raises almost nothing, every kind of learner
is left as it was, nothing in the table is changed, and the `label-issues` command writes its table safely."""
import json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn
from fastai.vision.all import Learner, CrossEntropyLossFlat, set_seed
from glamdebug.core import GlamError
from glamdebug.data import collection_dls
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
from glamdebug.labels import LabelIssues, confident_suspects, fold_codes

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


def plant(df, share=0.05, seed=2):
    rng = np.random.default_rng(seed)
    out = df.copy(); out.attrs = dict(df.attrs)
    rows = rng.choice(len(out), size=round(share*len(out)), replace=False)   # every split
    labels = out.label.astype(str).to_numpy().copy()
    for i in rows: labels[i] = str((int(labels[i]) + rng.integers(1, 10)) % 10)
    out['label'] = labels
    return out, set(out.fname.iloc[rows])


def test_planted_mislabels_found_and_clean_collection_quiet(digits):
    tmp, df = digits
    noisy, planted = plant(df)
    rep = defaults_learner(cached_dls(noisy, size=SIZE, cache_dir=tmp/'cache', progress=False)).label_issues(epochs=8, progress=False)
    found = set(rep.table.item)
    assert len(found & planted) >= 0.6*len(planted) and len(found & planted) >= 0.8*len(found), (len(found), len(found & planted))
    for split in ('train', 'valid', 'test'):  # every split is judged
        assert found & {f for f in planted if f'/{split}/' in f}, split
    quiet = defaults_learner(cached_dls(df, size=SIZE, cache_dir=tmp/'cache', progress=False)).label_issues(epochs=8, progress=False)
    assert len(quiet.table) <= 0.01*len(quiet.all), quiet.table  # clean digits: a handful of truly ambiguous ones at most
    assert 'look mislabelled' in quiet.summary and not quiet.weak and 'Too weak' not in quiet.summary


def test_out_of_fold_beats_in_sample_losses_when_the_model_memorises(digits):
    """A recipe that memorises its training labels, wrong ones included (lr 3e-3, 30 epochs: training loss near 0).
    fastai's usual move, the largest losses of that model on its own training items, then misses most planted
    mislabels; models that never saw an item still see it for what it is. Same recipe and number of items to review"""
    tmp, df = digits
    noisy, planted = plant(df, seed=3)
    dls = cached_dls(noisy, size=SIZE, cache_dir=tmp/'cache', progress=False)
    E = 30
    rep = defaults_learner(dls, lr=3e-3).label_issues(epochs=E, splits=(), progress=False)
    train_planted = {f for f in planted if '/train/' in f}
    oof_hits = len(set(rep.table.item) & train_planted)
    set_seed(0, reproducible=True)
    learn = defaults_learner(dls, lr=3e-3)
    with learn.no_bar(), learn.no_logging(): learn.fit(E)
    dl = dls.train.new(shuffle=False, drop_last=False)
    with learn.no_bar(): _, _, losses = learn.get_preds(dl=dl, with_loss=True)
    assert losses.mean() < 0.02  # memorised (ln 10 = 2.3 at chance)
    names = list(dls.train.dataset.items.fname)
    top = {names[i] for i in losses.argsort(descending=True)[:len(rep.table)].tolist()}
    assert oof_hits >= 0.8*len(train_planted) and oof_hits > 1.3*len(top & train_planted), (oof_hits, len(top & train_planted), len(train_planted))


def test_weak_models_are_called_weak(digits):
    "Models that have barely trained flag a large share of the items: the report must say they cannot judge labels"
    tmp, df = digits
    rep = defaults_learner(cached_dls(df, size=SIZE, cache_dir=tmp/'cache', progress=False), lr=1e-5).label_issues(epochs=1, progress=False)
    assert rep.weak and rep.oof_error > 0.5 and 'Too weak to judge labels' in rep.summary and rep.to_dict()['weak']


def test_plain_learner_left_as_it_was_and_table_unchanged(digits):
    tmp, df = digits
    dls = collection_dls(df, size=SIZE, bs=32)
    m = nn.Sequential(nn.Flatten(), nn.Linear(3*SIZE*SIZE, 64), nn.ReLU(), nn.Linear(64, dls.c))
    learn = Learner(dls, m, loss_func=CrossEntropyLossFlat(), lr=1e-3)
    w0 = {k: v.clone() for k, v in m.state_dict().items()}
    before = df.copy()
    rep = learn.label_issues(folds=3, epochs=2, progress=False)
    for k, v in m.state_dict().items(): assert torch.equal(v, w0[k]), k
    assert learn.dls is dls and learn.opt is None
    pd.testing.assert_frame_equal(df, before)
    ann = rep.annotate(df)
    assert list(ann.columns[:len(df.columns)]) == list(df.columns) and len(ann) == len(df)
    assert ann.label_suspect.notna().all()       # train out of fold, valid and test by every model
    only = learn.label_issues(folds=3, epochs=1, splits=(), progress=False).annotate(df)
    assert only.label_suspect[df.split == 'train'].notna().all() and only.label_suspect[df.split != 'train'].isna().all()
    for bad, word in ((['nope'], "no split 'nope'"), (['train'], 'always judged')):
        with pytest.raises(GlamError, match=word): learn.label_issues(folds=3, epochs=1, splits=bad, progress=False)


def test_fold_codes_and_rule():
    codes = np.repeat(np.arange(3), [40, 21, 5])
    f = fold_codes(codes, 4)
    for c in range(3):  # stratified: each class spread evenly over the folds
        n = np.bincount(f[codes == c], minlength=4)
        assert n.max() - n.min() <= 1
    # a class with no item labelled with it suggests nothing, whatever its probability
    p = np.array([[0.1, 0.0, 0.9], [0.9, 0.0, 0.1]])
    s, g, m, t = confident_suspects(p, np.array([0, 0]))
    assert not s.any() and np.isinf(t[1]) and np.isinf(t[2])


def test_label_issues_command(digits, tmp_path, cli):
    tmp, df = digits
    noisy, planted = plant(df, seed=4)
    root = tmp/'digits'
    csv = root/'noisy.csv'
    noisy.to_csv(csv, index=False)
    out = tmp_path/'review.csv'
    run = lambda *a: cli('label-issues', str(csv), '--size', str(SIZE), '--epochs', '4', *a)
    r = run('-o', str(out), '--json')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['n_suspects'] == len(d['table']) > 0
    rev = pd.read_csv(out)
    assert len(rev) == len(noisy) and (rev.label.astype(str) == noisy.label.astype(str)).all()
    assert set(rev.fname[rev.label_suspect == True]) == {t['item'] for t in d['table']}
    bad = run('-o', str(csv))
    assert bad.returncode == 2 and 'refusing to overwrite' in bad.stderr
    assert (pd.read_csv(csv).label.astype(str) == noisy.label.astype(str)).all()


def test_test_splits_judged_against_train_and_valid_thresholds(digits):
    """A test split is judged by the thresholds of train and valid: made-up probabilities where the test items (a
    different scanner, say) lean to the next class would lower the thresholds, and flag themselves, if they counted;
    labels with no training item are not judged"""
    rng = np.random.default_rng(0)
    n, c = 300, 3
    codes = rng.integers(0, c, n)
    split = np.array(['train']*150 + ['valid']*50 + ['test']*100)
    p = np.full((n, c), 0.05); p[np.arange(n), codes] = 0.9
    t = np.flatnonzero(split == 'test')
    p[t] = 0.05; p[t, codes[t]] = 0.2; p[t, (codes[t] + 1) % c] = 0.75   # the test items lean to the next class
    items = pd.DataFrame(dict(item=[f'f{i}' for i in range(n)], split=split, code=codes))
    items['given'] = np.array(['a', 'b', 'c'])[codes]
    rep = LabelIssues(items, p, ['a', 'b', 'c'], 4, 1, 0.0)
    np.testing.assert_allclose(rep.thresholds, 0.9)                  # from train and valid only
    assert not rep.all.suspect.any()                                 # 0.75 does not reach 0.9
    assert confident_suspects(p, codes)[0][t].all()                  # counting the test items: the bar falls to ~0.67, all flagged
    assert rep.oof_error == 0                                        # the error of train and valid
    # a test label with no training item (the vocab has it: it comes from the whole table): those items are left out,
    # with a warning naming the label; judged, every one would look mislabelled
    tmp, df = digits
    odd = df.copy(); odd.attrs = dict(df.attrs)
    t = np.flatnonzero((odd.split == 'test').to_numpy())[:5]
    v = np.flatnonzero((odd.split == 'valid').to_numpy())[:3]
    odd.loc[t, 'label'] = 'eleven'; odd.loc[v, 'label'] = 'twelve'
    learn = defaults_learner(cached_dls(odd, size=SIZE, cache_dir=tmp/'cache', progress=False))
    assert {'eleven', 'twelve'} <= set(learn.dls.vocab)
    with pytest.warns(UserWarning) as w:
        r = learn.label_issues(folds=2, epochs=1, progress=False)
    msgs = ' '.join(str(m.message) for m in w)
    assert '5 test item(s) have labels with no training item (eleven)' in msgs and '3 valid item(s) have labels with no training item (twelve)' in msgs
    for split, idx in (('test', t), ('valid', v)):
        assert (r.all.split == split).sum() == (odd.split == split).sum() - len(idx)
    assert not set(odd.fname[np.r_[t, v]]) & set(r.all.item)


def test_validation_split_under_another_name(digits):
    "A collection that validates on 'dev' (`cached_dls(valid='dev')`): every item judged once, 'dev' among the splits that set the thresholds"
    tmp, df = digits
    dev = df.assign(split=df.split.replace({'valid': 'dev'})); dev.attrs = dict(df.attrs)
    learn = defaults_learner(cached_dls(dev, size=SIZE, valid='dev', cache_dir=tmp/'cache', progress=False))
    r = learn.label_issues(folds=2, epochs=1, progress=False)
    assert r.all.item.is_unique and len(r.all) == len(dev), (len(r.all), len(dev))
    assert set(r.all.split) == {'train', 'dev', 'test'} and r.reference == ('train', 'dev')
    with pytest.raises(GlamError, match='always judged'): learn.label_issues(folds=2, epochs=1, splits=['train'], progress=False)
