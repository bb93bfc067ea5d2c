"""`learn.data_curve()`: a curve that learns falls, one whose training labels say nothing stays flat; every kind of
learner is left as it was; the evaluation sees what training saw (normalisation); the `curve` command works."""
import json, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn
from fastai.vision.all import Learner, CrossEntropyLossFlat, error_rate
from glamdebug.core import GlamError
from glamdebug.data import collection_dls
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
from glamdebug.curve import DataCurveReport, nested_subsets

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


def cached(df, tmp, **kw): return cached_dls(df, size=SIZE, bs=32, cache_dir=tmp/'cache', progress=False, **kw)


def test_labels_that_say_nothing_give_a_curve_at_chance(digits):
    "Training labels shuffled: more items cannot help; the report must not promise that they will, nor call for a bigger model"
    tmp, df = digits
    bad = df.copy(); bad.attrs = dict(df.attrs)
    tr = bad.split == 'train'
    bad.loc[tr, 'label'] = np.random.default_rng(0).permutation(bad.loc[tr, 'label'].to_numpy())
    rep = defaults_learner(cached(bad, tmp)).data_curve(epochs=4, goal=0.02, progress=False)
    assert (rep.runs.valid_error > 0.75).all(), rep.runs  # chance is 90 %
    assert rep.verdict == 'at chance' and rep.at_chance and rep.evidence is None, rep.summary
    assert np.isnan(rep.n_for_goal) and np.isnan(rep.next_doubling)
    assert 'troubleshoot' in rep.summary and 'should help' not in rep.summary and 'bigger model' not in rep.summary
    # not falling, so the largest run was trained again twice as long: on labels that say nothing that cannot help
    assert rep.longer['epochs'] == 8 and rep.undertrained is False and rep.longer_error > 0.75, rep.summary
    assert 'Not for want of training' in rep.summary and 'short of training' not in rep.summary


def test_barely_trained_is_at_chance_and_short_of_training(digits):
    "A learning rate of 3e-5 for one epoch's steps: no better than always one digit, and the check says training is why"
    tmp, df = digits
    rep = defaults_learner(cached(df, tmp)).data_curve(epochs=1, settings={'lr': 3e-5}, progress=False)
    assert rep.verdict == 'at chance' and rep.undertrained is True, rep.summary
    assert rep.longer_error < rep.runs.valid_error.iloc[-1] - 0.05 and 'It is short of training' in rep.summary
    assert 'data_curve(epochs=2)' in rep.summary and 'Look for the bug' not in rep.summary


def test_same_seed_same_curve_and_epochs_budget(digits):
    tmp, df = digits
    dls = cached(df, tmp)
    a = defaults_learner(dls).data_curve([0.25, 1], epochs=2, progress=False)
    b = defaults_learner(dls).data_curve([0.25, 1], epochs=2, progress=False)
    pd.testing.assert_frame_equal(a.runs.drop(columns='seconds'), b.runs.drop(columns='seconds'))
    assert a.to_dict()['longer_error'] == b.to_dict()['longer_error']   # the check of a curve not falling too (None when falling)
    e = defaults_learner(dls).data_curve([0.25, 1], epochs=2, budget='epochs', check_longer=False, progress=False)
    # each run passes over its own items `epochs` times (up to the last, dropped, partial batch)
    assert np.allclose(e.runs.epochs, 2, atol=0.5), e.runs
    assert a.runs.epochs.iloc[0] > 3.5*a.runs.epochs.iloc[1]
    tiny = defaults_learner(dls).data_curve([0.005, 1], epochs=1, budget='epochs', check_longer=False, progress=False)  # 1 item per class < bs
    assert tiny.runs.n_train.iloc[0] == 10 and tiny.runs.epochs.iloc[0] >= 1


def test_settings_are_checked(digits):
    tmp, df = digits
    dls = collection_dls(df, size=SIZE, bs=32)
    plain = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(3*SIZE*SIZE, dls.c)), loss_func=CrossEntropyLossFlat())
    with pytest.raises(GlamError, match='defaults_learner'): plain.data_curve(settings={'width': 2.0})
    rep = defaults_learner(dls).data_curve([0.5, 1], epochs=1, settings={'lr': 1e-7}, check_longer=False, progress=False)
    assert (rep.runs.valid_error > 0.7).all()  # the settings are used: at lr 1e-7 nothing is learned


def test_plain_fastai_learner_left_as_it_was(digits):
    "A fastai `Learner` that `defaults_learner` did not build: each run starts from its current weights, which it keeps"
    tmp, df = digits
    dls = collection_dls(df, size=SIZE, bs=32)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(3*SIZE*SIZE, 64), nn.ReLU(), nn.Linear(64, dls.c))
    learn = Learner(dls, m, loss_func=CrossEntropyLossFlat(), lr=1e-3, metrics=[])
    w0 = {k: v.clone() for k, v in m.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # an untrained learner: no warning
        # 5 % of the items against all: 16-19 % error against 6-8 % over 5 seeds (from 25 %, the gap was 1-2 points and
        # once, unseeded, went the other way: 8.6 against 8.9 %)
        rep = learn.data_curve([0.05, 0.5, 1], epochs=3, progress=False)
    assert rep.runs.valid_error.iloc[-1] < 0.5 and rep.runs.valid_error.iloc[-1] < rep.runs.valid_error.iloc[0]
    for k, v in m.state_dict().items(): assert torch.equal(v, w0[k]), k
    assert learn.dls is dls and learn.metrics == [] and learn.opt is None and learn.lr == 1e-3
    learn.fit(1)
    with pytest.warns(UserWarning, match='has been trained'): learn.data_curve([0.5, 1], epochs=1, check_longer=False, progress=False)


def test_evaluation_sees_the_normalisation_training_saw(digits):
    """`defaults_learner(normalize=True)` adds `Normalize` to its own DataLoaders; runs are built from the caller's.
    Evaluating on loaders without it would score the model on inputs it never saw (error near chance)"""
    tmp, df = digits
    learn = defaults_learner(cached(df, tmp), normalize=True)
    rep = learn.data_curve([0.5, 1], epochs=3, progress=False)
    plain = defaults_learner(cached(df, tmp)).data_curve([0.5, 1], epochs=3, progress=False)
    assert rep.runs.valid_error.iloc[-1] < 0.2, rep.runs
    assert abs(rep.runs.valid_error.iloc[-1] - plain.runs.valid_error.iloc[-1]) < 0.1


def test_small_classes_keep_one_item_and_the_curve_names_classes(digits):
    tmp, df = digits
    codes = np.repeat(np.arange(4), [200, 100, 10, 1])
    subs = nested_subsets(codes, [1/16, 1/4, 1])
    assert [np.bincount(codes[s], minlength=4).tolist() for s in subs] == [[12, 6, 1, 1], [50, 25, 2, 1], [200, 100, 10, 1]]
    rep = defaults_learner(cached(df, tmp)).data_curve([0.5, 1], epochs=2, progress=False)
    assert list(rep.per_class.index) == [str(i) for i in range(10)] and rep.per_class.shape[1] == 3
    assert rep.per_class.n_train.sum() == rep.runs.n_train.iloc[-1]


def test_curve_command(digits, tmp_path, cli):
    tmp, df = digits
    png = tmp_path/'curve.png'
    out = cli('curve', str(tmp/'digits'), '--fractions', '0.25,1', '--epochs', '1', '--size', str(SIZE), '--json', '--plot', str(png))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d['verdict'] in ('still falling', 'flat', 'rising') and len(d['table']) == 2 and png.stat().st_size > 1000
    bad = cli('curve', str(tmp/'digits'), '--fractions', '1,0.5')
    assert bad.returncode == 2 and 'must increase' in bad.stderr


def test_curve_command_checks_training_length(digits, cli, tmp_path, monkeypatch):
    "One epoch's steps is short for the digits: the half and the whole look alike, and training the whole twice as long says why"
    tmp, df = digits
    monkeypatch.setenv('GLAMDEBUG_CACHE', str(tmp_path/'cache'))
    args = ('curve', str(tmp/'digits'), '--fractions', '0.5,1', '--epochs', '1', '--size', str(SIZE), '--cache')
    d = json.loads(cli(*args, '--json').stdout)
    assert d['verdict'] == 'flat' and d['undertrained'] is True and d['longer_epochs'] == 2, d
    assert d['longer_error'] < d['table'][-1]['valid_error'] and d['longer_fixed'] > d['longer_broken']
    text = cli(*args).stdout
    assert 'short of training' in text and 'data_curve(epochs=2)' in text and 'no sign that more' not in text, text
    off = json.loads(cli(*args, '--json', '--no-check-longer').stdout)
    assert off['verdict'] == 'flat' and off['longer_epochs'] is None and off['undertrained'] is None
    assert [r['valid_error'] for r in off['table']] == [r['valid_error'] for r in d['table']]   # the check adds a run, changes none


def test_curve_by_volume_command(tmp_path, cli):
    "Pages bound in volumes: `--group volume` draws whole volumes and says how many; without it, the report names the column"
    from glamdebug.samples import volume_collection
    folder = volume_collection(tmp_path/'vols', n_volumes=24, pages=4, new_volumes=0, size=16)
    assert cli('split', folder, '--group', 'volume', '-o', folder/'split.csv').returncode == 0
    train_volumes = pd.read_csv(folder/'split.csv').query("split == 'train'").volume.nunique()
    args = ('curve', folder/'split.csv', '--fractions', '0.5,1', '--epochs', '1', '--size', str(SIZE))
    out = cli(*args, '--group', 'volume', '--json')
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout)
    assert d['group'] == 'volume' and d['group_like'] is None
    n = [r['n_groups'] for r in d['table']]
    assert n[-1] == train_volumes and 0 < n[0] < n[-1], n
    assert (d['longer_epochs'] == 2) == (d['verdict'] != 'still falling'), d   # a curve not falling is checked for training length
    out = cli(*args)
    assert out.returncode == 0 and "column 'volume' looks like groups" in out.stdout and '--group volume' in out.stdout, out.stdout[-2000:]
    bad = cli(*args, '--group', 'box')
    assert bad.returncode == 2 and "no column 'box'" in bad.stderr, bad.stderr[-2000:]
