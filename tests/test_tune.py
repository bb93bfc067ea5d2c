"tune: diverged trials, Bayesian rounds, the fast path and batch sizes on cached DataLoaders, medium after high, the learner left as it was"
import math, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fastcore.test import test_eq as t_eq, test_fail as t_fail
from glamdebug.data import read_collection
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls, FastPath
from glamdebug.tune import tune_search, LogRange, Choice, SENSITIVITY, TuneReport
import glamdebug.tune  # Learner.tune

torch.set_num_threads(1)
SAMPLES = Path(__file__).parent.parent/'data'/'samples'

@pytest.fixture(scope='module')
def dls(tmp_path_factory):
    df = read_collection(SAMPLES/'collection.csv', check_images=False)
    return cached_dls(df, size=24, bs=32, cache_dir=tmp_path_factory.mktemp('cache'), progress=False)

def test_diverged_trials_reported_not_best(dls):
    "A learning rate far too high makes the loss blow up: those trials are marked diverged and never chosen"
    learn = defaults_learner(dls)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rep = learn.tune(['lr'], space={'lr': LogRange(1e-3, 1e6)}, n_trials=6, rounds=1, epochs=1, seed=3, progress=False)
    st = rep.trials.set_index('lr').status
    assert (st == 'diverged').any() and (st == 'ok').any(), rep.trials
    assert st[st == 'diverged'].index.min() > st[st == 'ok'].index.max()  # the ones that blew up are the high rates
    assert rep.table.status.iloc[0] == 'ok' and math.isfinite(rep.table.valid_error.iloc[0])
    assert 'diverged' in rep.summary
    rep.to_json()  # NaN errors of diverged trials serialise
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        allbad = learn.tune(['lr'], space={'lr': LogRange(1e3, 1e6)}, base={'lr': 1e4}, n_trials=2, rounds=2, epochs=1, progress=False)
    assert (allbad.trials.status == 'diverged').all() and allbad.summary.startswith('All 5 trials diverged'), allbad.summary

def test_bayes_steers_clear_of_diverged_region(dls):
    "Bayesian round 2 learns from round 1's diverged trials (counted as a uniform guess): fewer of its trials blow up"
    learn = defaults_learner(dls)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        kw = dict(space={'lr': LogRange(1e-4, 1e4)}, n_trials=6, rounds=2, epochs=1, seed=1, progress=False)
        rep = learn.tune(['lr'], method='bayes', **kw)
        rnd = learn.tune(['lr'], **{**kw, 'n_trials': 12, 'rounds': 1})  # the same budget, all random
    t = rep.trials
    bad1, bad2 = [(t[t['round'] == r].status == 'diverged').mean() for r in (1, 2)]
    assert bad1 > 0 and bad2 < bad1, t
    assert bad2 < (rnd.trials[rnd.trials['round'] == 1].status == 'diverged').mean(), rnd.trials
    assert t.lr.round(12).is_unique  # no setting run twice
    t_eq(rep.to_dict()['method'], 'bayes')

def test_fast_path_and_batch_size_in_trials(dls):
    "Trials of a `fast()` learner train in the fast path too; `bs` trials get cached DataLoaders of that batch size"
    learn = defaults_learner(dls).fast()
    seen = []
    orig = glamdebug.tune._fit
    def spy(l, t, epochs):
        seen.append((l.dls.train.bs, type(l.dls).__name__, any(isinstance(c, FastPath) for c in l.cbs)))
        return orig(l, t, epochs)
    glamdebug.tune._fit = spy
    try: rep = learn.tune(['bs'], space={'bs': Choice(8, 16)}, n_trials=3, rounds=1, epochs=1, progress=False)
    finally: glamdebug.tune._fit = orig
    t_eq({s[0] for s in seen[1:]}, set(rep.trials.bs[1:]))  # each trial trained at its own batch size
    assert all(s[1] == 'CachedDataLoaders' and s[2] for s in seen), seen
    t_eq(learn.dls.train.bs, 32)

def test_medium_after_high(dls):
    "Tune the medium settings from the best high ones: every trial starts from `base`"
    learn = defaults_learner(dls)
    base = dict(lr=3e-3, schedule='one_cycle')
    rep = learn.tune('medium', base=base, n_trials=2, rounds=1, epochs=1, progress=False)
    t_eq(set(rep.space), {'wd', 'drop_rate', 'depth'})
    t_eq(rep.base, base)
    same = learn.tune(['wd'], space={'wd': Choice(0.0)}, base=base, n_trials=1, rounds=1, epochs=1, progress=False)
    plain = learn.tune(['wd'], space={'wd': Choice(0.0)}, n_trials=1, rounds=1, epochs=1, progress=False)
    # the base changes the result (one-cycle at 3e-3 against the default constant 3e-4)
    assert same.trials.valid_loss.iloc[1] != plain.trials.valid_loss.iloc[1]

def test_learner_untouched_and_bad_input(dls):
    learn = defaults_learner(dls)
    w = [p.detach().clone() for p in learn.model.parameters()]
    learn.tune(['lr', 'width'], n_trials=2, rounds=2, epochs=1, progress=False)
    for a, b in zip(w, learn.model.parameters()): assert torch.equal(a, b)
    assert learn.opt is None and learn.lr == 3e-4
    t_fail(lambda: learn.tune(['lr'], space={'lr': (1e-4, 1e-2)}), contains='LogRange, Range or Choice')
    t_fail(lambda: learn.tune(['lr'], keep=0), contains='keep')
    t_fail(lambda: learn.tune(['lr'], base={'learning_rate': 1}), contains='learning_rate')
    r18 = defaults_learner(dls, arch='resnet18')
    t_fail(lambda: r18.tune(['depth']), contains='bigger')
    t_fail(lambda: defaults_learner(dls, arch='mobilenetv3_small_050').tune(['width']), contains='bigger')
    # by level, the settings that do not apply to a learner are left out rather than refused
    t_eq(set(glamdebug.tune._space('high', None, True, 'resnet18')), {'lr', 'schedule', 'loss', 'width'})
    t_eq(set(glamdebug.tune._space('high', None, True, 'resnet18', pretrained=True)), {'lr', 'schedule', 'loss'})
    t_eq(set(glamdebug.tune._space('high', None, True, 'efficientnet_b0')), {'lr', 'schedule', 'loss'})
    t_eq(set(glamdebug.tune._space('high', None, True, 'lenet')), {'lr', 'schedule', 'loss', 'width'})
    t_fail(lambda: glamdebug.tune._space(['width'], None, True, 'resnet18', pretrained=True), contains='pretrained weights')

def test_width_of_a_resnet(dls):
    "`width` scales a timm ResNet's stage channels (a resnet18 at 0.5 has about a quarter of the weights); the trials train"
    learn = defaults_learner(dls, arch='resnet18')
    seen, orig = [], glamdebug.tune._fit
    def spy(l, t, epochs):
        seen.append((t.get('width'), l.model.layer4[-1].conv2.out_channels, sum(p.numel() for p in l.model.parameters())))
        return orig(l, t, epochs)
    glamdebug.tune._fit = spy
    try: rep = learn.tune(['width'], space={'width': Choice(0.25, 0.5)}, n_trials=2, rounds=1, epochs=1, seed=2, progress=False)
    finally: glamdebug.tune._fit = orig
    by_w = {w: (c, n) for w, c, n in seen}
    t_eq(by_w[1.0][0], 512)
    for w in set(rep.trials.width[1:]):
        t_eq(by_w[w][0], round(512*w))
        assert 0.8*w**2 < by_w[w][1]/by_w[1.0][1] < 1.2*w**2, (w, by_w)
    assert rep.trials.valid_error.notna().all()
    t_eq(learn.model.layer4[-1].conv2.out_channels, 512)  # the learner is left as it was

def test_interrupted_keeps_finished_trials(dls):
    "Stopped by hand in the middle (KeyboardInterrupt): the finished trials come back in the report, with a warning"
    learn = defaults_learner(dls)
    orig, calls = glamdebug.tune._fit, []
    def stop_third(l, t, epochs):
        calls.append(t)
        if len(calls) == 3: raise KeyboardInterrupt
        return orig(l, t, epochs)
    glamdebug.tune._fit = stop_third
    try:
        with pytest.warns(UserWarning, match='2 trial'): rep = learn.tune(['lr'], n_trials=4, rounds=1, epochs=1, progress=False)
    finally: glamdebug.tune._fit = orig
    t_eq(len(rep.trials), 2)
    assert learn.dls.train.bs == 32 and learn.opt is None  # the learner is restored all the same
