"Tests of glamdebug.evaluate: the worked example, every diagnosis branch, the noise rule, a real learner, the CLI"
import json, math
from pathlib import Path
import numpy as np, pandas as pd, pytest
from fastcore.test import test_eq as t_eq, test_close as t_close, test_fail as t_fail
from glamdebug.core import GlamError, error_ci
from glamdebug.evaluate import *

def gaps(r): return {k: v['verdict'] for k, v in r.to_dict()['gaps'].items()}

# --- numbers alone -------------------------------------------------------------------------------

def test_worked_example():
    r = bias_variance(goal=0.01, train=0.20, valid=0.27, test=0.28)
    t_eq(r.diagnosis, 'both under- and overfitting: address underfitting first')
    t_eq(r.table.index.tolist(), ['irreducible error (goal)', 'avoidable bias', 'variance',
                                  'distribution shift / validation overfitting', '= test error'])
    t_eq(r.table['value'].tolist(), [0.01, 0.19, 0.07, 0.01, 0.28])     # exact, no 0.19000000000000003
    t_eq(gaps(r), dict(avoidable_bias='problem', variance='problem', valid_test='fine'))
    t_eq(r.problems, ['underfitting', 'overfitting'])
    rem = r.remedies
    t_eq(rem.step.tolist(), [1]*6 + [2]*10)
    t_eq(rem.remedy.tolist()[:6], ['make the model bigger', 'reduce regularisation', 'error analysis',
                                   'a different architecture', 'tune hyperparameters', 'add features'])
    t_eq(rem.remedy.tolist()[6:], ['more training data', 'normalisation', 'data augmentation', 'regularisation',
                                   'error analysis', 'a better architecture', 'tune hyperparameters', 'early stopping',
                                   'remove features', 'reduce model size'])
    assert 'train 20 %, valid 27 %, test 28 %' in r.summary

def test_pure_underfitting():
    r = bias_variance(0.01, 0.15, 0.16, 0.165)
    t_eq(r.problems, ['underfitting'])
    t_eq(r.diagnosis, 'underfitting: train error is 14 points above the goal')
    t_eq(r.remedies.step.unique().tolist(), [1])

def test_pure_overfitting():
    r = bias_variance(0.01, 0.015, 0.12, 0.125)
    t_eq(r.problems, ['overfitting'])
    t_eq(r.diagnosis, 'overfitting: valid error is 10.5 points above train error')
    t_eq(r.remedies.step.unique().tolist(), [2])

def test_shift_without_and_with_train_valid():
    r = bias_variance(0.01, 0.02, 0.03, test=0.20)
    t_eq(r.problems, ['distribution shift'])
    t_eq(r.remedies.step.unique().tolist(), [3, 4])      # can't tell shift from validation overfitting: both listed
    assert any('train-valid' in n for n in r.notes)
    r = bias_variance(0.01, 0.02, train_valid=0.025, valid=0.15, test=0.155)
    t_eq(r.table.index.tolist(), ['irreducible error (goal)', 'avoidable bias', 'variance', 'distribution shift',
                                  'validation overfitting', '= test error'])
    t_eq(r.problems, ['distribution shift']); t_eq(r.remedies.step.unique().tolist(), [3])
    r = bias_variance(0.01, 0.02, train_valid=0.025, valid=0.03, test=0.15)
    t_eq(r.problems, ['validation overfitting']); t_eq(r.remedies.step.unique().tolist(), [4])
    t_eq(r.remedies.remedy.tolist(), ['rebalance the splits'])

def test_all_fine():
    r = bias_variance(0.02, 0.025, 0.03, 0.035)
    t_eq(r.problems, []); assert r.diagnosis.startswith('all fine'); t_eq(len(r.remedies), 0)

def test_goal_above_train_error():
    r = bias_variance(0.05, 0.02, 0.10, 0.11, n=1000)
    t_eq(gaps(r)['avoidable_bias'], 'below goal'); t_eq(r.table.loc['avoidable bias', 'value'], -0.03)
    t_eq(r.problems, ['overfitting'])
    assert any('below the goal' in n for n in r.notes)

def test_zero_errors():
    r = bias_variance(0, 0, 0, 0, n=500)
    t_eq(r.problems, []); assert r.diagnosis.startswith('all fine')
    assert all(np.isfinite(r.table['noise'].iloc[1:4]))
    t_eq(r.errors.loc['test', 'ci_lo'], 0.)

def test_split_of_size_0_and_1():
    r = bias_variance(0.01, 0.02, 0.03, float('nan'), n=dict(train=1000, valid=300, test=0))
    t_eq(gaps(r)['valid_test'], 'no data'); assert 'test has no items: its error is unknown' in r.notes
    assert '= valid error' in r.table.index           # the total is the last error measured
    r = bias_variance(0.01, 0.30, 0.32, 1.0, n=dict(train=1000, valid=300, test=1))
    t_eq(gaps(r)['valid_test'], 'not significant'); assert any('1 item' in n for n in r.notes)
    t_eq(gaps(bias_variance(0.01, 0.02, 0.03, 1.0, n=dict(train=1000, valid=300, test=1)))['valid_test'], 'problem')  # 1 of 1 wrong vs 3 %: p < 0.05
    r = bias_variance(0.3, 1.0, 0.0, n=dict(train=1, valid=1))
    t_eq(gaps(r), dict(avoidable_bias='not significant', variance='fine'))
    assert r.diagnosis.startswith('no gap is larger than its noise')

def test_noise_rule():
    "1 point between valid and test is noise on 100 items, real on 100,000"
    small, big = bias_variance(0.01, 0.20, 0.27, 0.28, n=100), bias_variance(0.01, 0.20, 0.27, 0.28, n=100_000)
    t_eq(gaps(small)['valid_test'], 'not significant'); t_eq(gaps(big)['valid_test'], 'problem')
    # the noise is Newcombe's: the facing halves of the two Wilson intervals in quadrature
    lo_t = error_ci(28, 100)[0]; hi_v = error_ci(27, 100)[1]
    t_close(small.table.loc['distribution shift / validation overfitting', 'noise'], math.hypot(0.28-lo_t, hi_v-0.27))
    # a noisy goal (double-annotated sample) adds its own noise
    g = HumanLevel(2, 100)
    t_eq(gaps(bias_variance(0.02, 0.05, 0.05, n=dict(train=10_000, valid=10_000)))['avoidable_bias'], 'problem')
    t_eq(gaps(bias_variance(g, 0.05, 0.05, n=dict(train=10_000, valid=10_000)))['avoidable_bias'], 'not significant')

def test_bad_input():
    t_fail(lambda: bias_variance(1, 20, 27, 28), contains='20 % is 0.2')
    t_fail(lambda: bias_variance(0.01, -0.1, 0.2), contains='outside [0, 1]')
    t_fail(lambda: bias_variance(0.01, '0.2', 0.2), contains='must be a number')
    t_fail(lambda: bias_variance(None, 0.2, 0.2), contains='required')
    t_fail(lambda: bias_variance(0.01, 0.2, 0.3, n=dict(tset=5)), contains="unknown split(s) tset")
    t_fail(lambda: bias_variance(0.01, 0.2, 0.3, n=2.5), contains='dict of item counts')
    t_fail(lambda: bias_variance(0.01, 0.2, 0.3, n=dict(train=-1)), contains='whole number of items')
    t_fail(lambda: bias_variance(0.01, 0.25, 0.3, n=dict(train=10)), contains='not a whole number of errors')
    with pytest.raises(GlamError): bias_variance(0.01, 0.2, 0.3, test=2)

def test_human_level_error():
    df = pd.DataFrame(dict(a=['map']*90 + ['text']*10, b=['map']*85 + ['photo']*5 + ['text']*8 + [None, '']))
    h = human_level_error(df, 'a', 'b')
    t_eq((h.k, h.n), (5, 98)); t_close(float(h), 5/98); t_eq(h.ci, error_ci(5, 98))
    r = bias_variance(h, 0.2, 0.25)
    t_eq(r.errors.loc['goal', 'n'], 98)
    t_fail(lambda: human_level_error(df, 'a', 'nope'), contains="'nope' not found")
    t_fail(lambda: human_level_error(pd.DataFrame(dict(a=[None], b=['x'])), 'a', 'b'), contains='both')

def test_renderings():
    r = bias_variance(0.01, 0.20, 0.27, 0.28, n=dict(train=800, valid=200, test=200))
    md, html, txt = r._repr_markdown_(), r._repr_html_(), r.to_text()
    for s in (md, html, txt): assert 'avoidable bias' in s and 'make the model bigger' in s
    d = json.loads(r.to_json())
    t_eq(d['diagnosis'], r.diagnosis); t_eq(d['problems'], ['underfitting', 'overfitting'])
    t_eq(d['gaps']['avoidable_bias']['value'], 0.19)
    import matplotlib; matplotlib.use('Agg')
    ax = r.plot()
    t_eq(len(ax.patches), 5)      # goal, 3 gaps, test error
    t_close(ax.patches[-1].get_height(), 28)

def test_many_classes_show_the_worst_first():
    "120 classes: text, markdown and HTML show the 20 with the highest valid error, say so, and keep all 120 in the data"
    rng = np.random.default_rng(0)
    names = [f'class {i:03d}' for i in range(120)]
    valid = rng.permutation(120)/120
    pc = pd.DataFrame(dict(n_train=10, train=valid/2, n_valid=2, valid=valid), index=pd.Index(names, name='label'))
    r = bias_variance(0.02, 0.3, 0.5, n=dict(train=1200, valid=240), per_class=pc)
    worst = pc.valid.sort_values(ascending=False).index[:20]
    best = pc.valid.sort_values().index[:100]
    for s in (r.to_text(), r._repr_markdown_(), r._repr_html_()):
        assert all(c in s for c in worst) and not any(c in s for c in best)
        assert '20 of 120 rows, highest valid error first' in s
    assert all(c in r.to_text(max_rows=0) for c in names)
    t_eq(len(json.loads(r.to_json())['Error per class']), 120)
    t_eq(r.per_class.index.tolist(), names)       # the attribute keeps its order
    small = bias_variance(0.02, 0.3, 0.5, per_class=pc.head(6))
    assert 'rows, highest' not in small.to_text() and small.to_text().index('class 000') < small.to_text().index('class 005')

# --- a real trained learner on the sample collection -----------------------------------------------

from fastai.callback.core import Callback

class CountPasses(Callback):
    "Counts inference passes (one `before_validate` per `get_preds`)"
    def __init__(self): self.n = 0
    def before_validate(self): self.n += 1

@pytest.fixture(scope='module')
def trained():
    import torch
    from fastai.torch_core import set_seed
    from glamdebug.data import read_collection, collection_dls
    from glamdebug.samples import sample_collection
    from glamdebug.models import defaults_learner
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    df = read_collection(sample_collection()/'collection.csv', check_images=False)
    set_seed(0, reproducible=True)
    dls = collection_dls(df, size=64)
    learn = defaults_learner(dls)
    curves = ErrorCurves(n_train=10_000)        # every training item: comparable with the report's train error
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(5, 3e-3, cbs=curves)
    return learn, curves

def test_learner_test_shifted_is_distribution_shift(trained):
    learn, curves = trained
    with learn.no_bar(): r = learn.error_report(goal=0.02, test='test_shifted')
    assert 'distribution shift' in r.problems, r
    t_eq(gaps(r)['valid_test'], 'problem')
    t_eq(r.extra['splits']['test'], 'test_shifted')
    counts = learn.dls.collection.df.split.value_counts()
    t_eq(r.errors.n.tolist()[1:], [counts['train'], counts['valid'], counts['test_shifted']])
    t_eq(set(r.per_class.columns), {'n_train', 'train', 'n_valid', 'valid', 'n_test', 'test'})
    t_eq(r.per_class.n_train.sum(), counts['train'])
    # no false alarm: the same learner on the test split drawn like the training data
    with learn.no_bar(): same = learn.error_report(goal=0.02, test='test')
    assert gaps(same)['valid_test'] != 'problem', same
    assert 'distribution shift' not in same.problems

def test_learner_concrete_remedies(trained):
    learn, _ = trained
    with learn.no_bar(): r = learn.error_report(goal=0.0, test='test_shifted')   # goal 0: underfitting surely listed
    how = dict(zip(r.remedies.remedy, r.remedies.how))
    t_eq(how['make the model bigger'], 'lenet → resnet18 (`bigger(learn)`)')
    assert how['reduce regularisation'].startswith('wd is 0, no dropout'), how
    df = learn.dls.collection.df
    smallest = df[df.split == 'train'].label.value_counts().min()
    assert f'has {smallest} training items' in r.hints['more training data']
    assert r.hints['analyse test-valid errors'].startswith('classes that lose most from valid to test')

def test_error_curves_match_the_report(trained):
    learn, curves = trained
    d = curves.df
    t_eq(d.epoch.tolist(), [0, 1, 2, 3, 4])
    from glamdebug.evaluate import _subset_dl   # the items its train error was measured on (its loader is dropped after fit)
    t_eq(len(_subset_dl(learn.dls, curves.n_train, curves.seed).dataset), (learn.dls.collection.df.split == 'train').sum())   # n_train covers all of train here
    # valid error read from fastai's own validation pass = fastai's error_rate metric, epoch by epoch
    i = learn.recorder.metric_names.index('error_rate') - 1
    rec = [v[i] for v in learn.recorder.values] if len(learn.recorder.values) == 5 else None
    if rec is not None: t_close(d.valid_error.values, np.array(rec), eps=1e-6)
    # train error at the last epoch = the report's train error (all items, validation transforms, eval mode)
    with learn.no_bar(): r = learn.error_report(goal=0.02, curves=curves)
    t_close(d.train_error.iloc[-1], r.errors.loc['train', 'error'], eps=1e-9)
    t_close(d.valid_error.iloc[-1], r.errors.loc['valid', 'error'], eps=1e-9)
    assert 'epoch' in r.hints['early stopping']
    import matplotlib; matplotlib.use('Agg')
    ax = curves.plot(goal=0.02)
    t_eq(len(ax.lines) >= 2, True); t_eq(len(ax.collections), 1)       # two curves, one shaded gap

def test_inference_once(trained):
    learn, _ = trained
    learn.clear_split_preds()
    cb = CountPasses()
    learn.add_cb(cb)
    try:
        with learn.no_bar():
            learn.error_report(goal=0.02, test='test_shifted'); t_eq(cb.n, 3)     # train, valid, test_shifted
            learn.error_report(goal=0.05, test='test_shifted'); t_eq(cb.n, 3)     # all cached
            learn.error_report(goal=0.02, test='test'); t_eq(cb.n, 4)             # only the new split
    finally: learn.remove_cb(cb)

def test_learner_bad_split(trained):
    learn, _ = trained
    with pytest.raises(GlamError, match='nope'): learn.error_report(goal=0.02, test='nope')
    with pytest.raises(GlamError, match='outside'): learn.error_report(goal=2, test='test')

# --- the command ----------------------------------------------------------------------------------

def test_cli_bad_input(tmp_path, cli):
    "Each bad input exits 2 with one line naming it"
    def run(*a):
        r = cli('report', *a); err = r.stderr.strip().splitlines()
        return r.returncode, err[-1] if err else ''
    t_eq(run(str(tmp_path/'nope.csv')), (2, f'glamdebug report: error: collection not found: {tmp_path/"nope.csv"}'))
    t_eq(run(str(tmp_path)), (2, f'glamdebug report: error: collection not found: {tmp_path/"collection.csv"}'))
    from glamdebug.samples import sample_collection
    rc, err = run(str(sample_collection()), '--goal', '5'); t_eq(rc, 2); assert 'errors are fractions' in err
    rc, err = run(str(sample_collection()), '--test', 'test_nope'); t_eq(rc, 2); assert "no split 'test_nope'" in err
    rc, err = run(str(sample_collection()), '--epochs', '0'); t_eq(rc, 2); assert '--epochs' in err

def test_cli_report(tmp_path, cli):
    from glamdebug.samples import make_sample_collection
    p = make_sample_collection(tmp_path/'s', n_per_class=6, n_valid=3, n_test=3, n_shifted=3, size=32, progress=False)
    r = cli('report', str(p), '--epochs', '1', '--size', '32', '--goal', '0.05', '--test', 'test_shifted', '--plot', str(tmp_path/'wf.png'))
    assert r.returncode == 0, r.stderr
    assert 'Error report (bias-variance)' in r.stdout and 'Diagnosis:' in r.stdout and 'avoidable bias' in r.stdout
    assert (tmp_path/'wf.png').stat().st_size > 1000
    import json
    r = cli('report', str(p), '--epochs', '1', '--size', '32', '--json')
    assert r.returncode == 0, r.stderr
    t_eq(json.loads(r.stdout)['title'], 'Error report (bias-variance)')  # piped: no progress bar in the JSON
