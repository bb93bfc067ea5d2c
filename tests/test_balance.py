"""Rare classes: `balanced_dls` draws every class about as often in real training (any loader), `LogitAdjust` changes
inference and not training, `rebalance_report` finds a planted imbalance and does not raise one on balanced classes;
bad arguments are named; the `rebalance` command works."""
import json
import numpy as np, pandas as pd, pytest, torch
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from glamdebug.core import GlamError
from glamdebug.data import collection_dls
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
import glamdebug.evaluate  # noqa: F401 (patches Learner.error_report)
from glamdebug.balance import (balanced_dls, class_counts, class_weights, weighted_loss, LogitAdjust, adjusted_probs,
                               WeightedDraw, RebalanceReport)

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images
RARE = ['0', '1', '2']


def make_rare(df, rare=RARE, keep=0.1, seed=0):
    "`df` with `keep` of the training items of each class in `rare`; the rest and valid as they are"
    rng = np.random.default_rng(seed)
    drop = []
    for c in rare:
        ix = rng.permutation(df.index[(df.split == 'train') & (df.label == c)])
        drop += list(ix[round(keep*len(ix)):])
    out = df.drop(index=drop).reset_index(drop=True); out.attrs = dict(df.attrs)
    return out


def cached(df, tmp, **kw): return cached_dls(df, size=SIZE, bs=32, cache_dir=tmp/'cache', progress=False, **kw)


class Drawn(Callback):
    "Records the class of every item a training pass feeds the model"
    def before_fit(self): self.ys = []
    def before_batch(self):
        if self.training: self.ys.append(self.yb[0].cpu())


@pytest.mark.parametrize('kind', ['cached', 'files'])
def test_training_sees_every_class_about_as_often(digits, kind):
    tmp, df = digits
    imb = make_rare(df)
    dls = cached(imb, tmp) if kind == 'cached' else collection_dls(imb, size=SIZE, bs=32)
    n = class_counts(dls).to_numpy()
    assert n[:3].max() * 5 < n[3:].min()
    for power, expect in ((1., np.ones(10)), (0.5, np.sqrt(n))):
        set_seed(0)
        cb = Drawn()
        learn = defaults_learner(balanced_dls(dls, power), normalize=True, cbs=cb)  # normalisation: the loaders are `.new`ed
        assert isinstance(learn.dls.train.shuffle_fn, WeightedDraw)
        with learn.no_bar(), learn.no_logging(): learn.fit(3)
        got = np.bincount(torch.cat(cb.ys).numpy(), minlength=10)
        share, want = got/got.sum(), expect/expect.sum()
        assert np.abs(share - want).max() < 0.03, (power, share.round(3), want.round(3))
    # as it is: the rare digits a tenth as often; valid untouched (each item once, in order)
    set_seed(0); cb = Drawn()
    plain = defaults_learner(dls, cbs=cb)
    with plain.no_bar(), plain.no_logging(): plain.fit(1)
    got = np.bincount(torch.cat(cb.ys).numpy(), minlength=10)
    assert got[:3].max() * 5 < got[3:].min()
    v = lambda d: torch.cat([y for _, y in d.valid])
    assert torch.equal(v(dls), v(balanced_dls(dls)))


def test_bad_arguments_are_named(digits):
    tmp, df = digits
    dls = cached(make_rare(df), tmp)
    with pytest.raises(GlamError, match=r'power is in \[0, 1\]'): balanced_dls(dls, 2)
    with pytest.raises(GlamError, match='power is a number'): class_weights([3, 4], 'all')
    with pytest.raises(GlamError, match='not all zero'): WeightedDraw([0, 0])
    with pytest.raises(GlamError, match='build the balanced loader again'): WeightedDraw([1, 2, 3])([0, 1])
    with pytest.raises(GlamError, match='not MSELoss'): weighted_loss(dls, loss_func=torch.nn.MSELoss())
    learn = defaults_learner(dls)
    with pytest.raises(GlamError, match='unknown method.*undersample'): learn.rebalance_report(['undersample'])
    with pytest.raises(GlamError, match='epochs must be'): learn.rebalance_report(epochs=0)
    with pytest.raises(GlamError, match='counts are for 3 classes'):
        with learn.added_cbs(LogitAdjust([5, 5, 5])), learn.no_bar(): learn.get_preds()


def test_multi_label_is_refused(digits):
    tmp, df = digits
    from fastai.vision.all import DataBlock, ImageBlock, MultiCategoryBlock, ColReader, ColSplitter, Resize
    m = df.assign(labels=df.label + ' odd', is_valid=df.split == 'valid')
    m = m[m.split != 'test']
    dls = DataBlock((ImageBlock, MultiCategoryBlock), get_x=ColReader('fname', pref=f'{tmp}/digits/'),
                    get_y=ColReader('labels', label_delim=' '), splitter=ColSplitter('is_valid'),
                    item_tfms=Resize(SIZE)).dataloaders(m, bs=32)
    with pytest.raises(GlamError, match='single-label'): balanced_dls(dls)


def test_logit_adjust_changes_inference_not_training(digits):
    tmp, df = digits
    dls = cached(make_rare(df), tmp)
    counts = class_counts(dls).to_numpy()
    weights = []
    for cbs in ([], [LogitAdjust(counts)]):
        set_seed(0, reproducible=True); dls.train.rng.seed(0)  # the loader keeps its own random state for its order
        learn = defaults_learner(dls, cbs=cbs)
        with learn.no_bar(), learn.no_logging(): learn.fit(2)
        weights.append([p.detach().clone() for p in learn.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))  # the same training, step for step
    with learn.no_bar(): p1, y = learn.get_preds()
    learn.remove_cb(LogitAdjust)
    with learn.no_bar(): p0, _ = learn.get_preds()
    assert torch.allclose(p1, adjusted_probs(p0, counts), atol=1e-5)
    rare = y < 3
    # the prior taken out: the rare digits are predicted more often, and more of them right
    assert (p1.argmax(1) < 3).sum() > (p0.argmax(1) < 3).sum()
    assert (p1.argmax(1) == y)[rare].float().mean() >= (p0.argmax(1) == y)[rare].float().mean()


def test_report_finds_a_planted_imbalance(digits):
    tmp, df = digits
    learn = defaults_learner(cached(make_rare(df), tmp))
    before = [p.detach().clone() for p in learn.model.parameters()]
    rep = learn.rebalance_report(epochs=6, progress=False)
    assert isinstance(rep, RebalanceReport)
    r = rep.runs.set_index('method')
    assert list(r.index) == ['as_is', 'as_is_again', 'logit_adjust', 'oversample', 'sqrt_oversample', 'weighted_loss']
    assert rep.best not in ('as_is', 'as_is_again'), rep.summary
    b = r.loc[rep.best]
    assert b.change_hi < 0 and b.beats_again and b.balanced_error < r.loc['as_is'].balanced_error
    pc = rep.per_class
    assert pc.index[:3].tolist() == RARE and (pc.n_train.iloc[:3] < 15).all()
    # the gain is in the rare digits: as is, they fail far more than the others
    assert pc.as_is.iloc[:3].mean() > 3*pc.as_is.iloc[3:].mean(), pc
    assert pc[rep.best].iloc[:3].mean() < pc.as_is.iloc[:3].mean()
    assert 'To use it' in rep.summary and rep.to_dict()['best'] == rep.best
    json.dumps(rep.to_dict())
    assert all(torch.equal(a, p) for a, p in zip(before, learn.model.parameters()))  # the learner left as it was


def test_no_alarm_on_balanced_classes(digits):
    tmp, df = digits
    rep = defaults_learner(cached(df, tmp)).rebalance_report(epochs=2, progress=False)
    assert rep.best == 'as_is' and list(rep.runs.method) == ['as_is']
    assert 'nothing to rebalance' in rep.summary and 'To use it' not in rep.summary


def test_rebalance_command(digits, tmp_path, cli):
    tmp, df = digits
    make_rare(df)[['fname', 'label', 'split']].to_csv(tmp/'digits'/'rare.csv', index=False)
    png = tmp_path/'rebalance.png'
    out = cli('rebalance', str(tmp/'digits'/'rare.csv'), '--epochs', '1', '--methods', 'logit_adjust,oversample', '--size', str(SIZE), '--json', '--plot', str(png))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert [r['method'] for r in d['table']] == ['as_is', 'as_is_again', 'logit_adjust', 'oversample'] and png.stat().st_size > 1000
    bad = cli('rebalance', str(tmp/'digits'/'rare.csv'), '--methods', 'smote')
    assert bad.returncode == 2 and 'unknown method(s) smote' in bad.stderr


def test_error_report_names_failing_rare_classes(digits):
    "The bias-variance report says when the rare classes are the ones that fail, and points to the comparison; not on balanced classes"
    tmp, df = digits
    notes = {}
    r = make_rare(df)
    few = r.drop(index=[i for c in RARE for i in r.index[(r.split == 'valid') & (r.label == c)][2:]]).reset_index(drop=True)
    few.attrs = dict(r.attrs)  # the rare digits rare in valid too: 2 items each, too few to say anything
    for name, d in (('rare', r), ('balanced', df), ('few in valid', few)):
        set_seed(0, reproducible=True)
        learn = defaults_learner(cached(d, tmp))
        with learn.no_bar(), learn.no_logging(): learn.fit(6)
        notes[name] = [n for n in learn.error_report(goal=0.02).notes if 'rare classes fail' in n]
    assert len(notes['rare']) == 1 and 'rebalance_report()' in notes['rare'][0] and '`1` 11 items' in notes['rare'][0], notes
    assert notes['balanced'] == [] and notes['few in valid'] == [], notes


def test_balanced_loader_in_a_learning_curve(digits):
    "`data_curve` trains on subsets of the training loader: the weighted draw follows the items kept (it used to not fit)"
    tmp, df = digits
    dls = balanced_dls(cached(make_rare(df), tmp))
    rep = defaults_learner(dls).data_curve([0.5, 1], epochs=1, progress=False)
    assert len(rep.runs) == 2 and rep.runs.n_train.iloc[0] < rep.runs.n_train.iloc[1]
