"""CPU benchmark for how far the confidence can be trusted: `learn.confidence_report(goal)` against what a user writes
by hand with plain fastai, side by side in one run.

1. Does the threshold hold on new items? Real training (version-zero LeNet, Adam 3e-4, 8 epochs, 3 seeds):
   scikit-learn's digits at 16 px (valid and test pooled: 719 held-out items) and, when ../shared/data/oracle-mnist is
   there, its real scans at 28 px (200 training scans per class, 1,000 held out). The held-out items are split at random
   into two halves, 300 times per model: one half picks the threshold, the other checks it.
   - plain: the lowest confidence whose items on the first half err on at most the goal (fastai has no selective
     prediction: `probs.max(1)` and a comparison, what a user writes);
   - glamdebug: `certify` (fixed-sequence exact binomial tests, 95 %), the threshold `confidence_report` gives.
   Counted: the share of draws in which the sorted items of the checking half err above the goal, and the share sorted.
   The checking half is itself a sample, so some misses on it are noise: the notebook measures the guarantee against a
   known population.
2. Cost: the first `learn.confidence_report()` (one inference pass per split, cached afterwards) beside one fastai
   `get_preds` over the same splits, and again after the cache.
3. Scale: made-up predictions of 10,000 to 1,000,000 items, 10 and 1,000 classes, a second split of the same size:
   seconds for `confidence_report` (every distinct threshold, the targets, per class, temperature, ECE of both splits)
   beside the plain hand-written version (101 thresholds on a grid, each a mask over every item, and
   `sklearn.calibration.calibration_curve`).
`python benchmarks/bench_confidence.py`; writes benchmarks/results/confidence.txt.
"""
import time, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from glamdebug.data import read_collection, split_dl
from glamdebug.samples import digits_collection
from glamdebug.preds import Preds
from glamdebug.confidence import confidence_report, risk_coverage, certify

from common import say, header, save, train
from oracle_merge import ORACLE, oracle_collection


def plain_threshold(conf, correct, goal):
    "The lowest confidence whose items err on at most `goal` on these very items (None when none does)"
    cur = risk_coverage(conf, correct)
    ok = np.nonzero(cur.error.to_numpy() <= goal)[0]
    return None if not len(ok) else cur.threshold.iloc[ok[-1]]


def held_out(learn, splits):
    ps = [learn.get_split_preds(s) for s in splits]
    conf = np.concatenate([p.probs.max(1).values.numpy() for p in ps])
    ok = np.concatenate([p.correct.numpy() for p in ps])
    return conf, ok


def halves(conf, ok, goals, n_draws=300, seed=0):
    rng = np.random.default_rng(seed)
    res = {(g, m): dict(miss=0, cov=[], none=0) for g in goals for m in ('plain', 'glamdebug')}
    n = len(conf)
    for _ in range(n_draws):
        o = rng.permutation(n); a, b = o[:n//2], o[n//2:]
        cur = risk_coverage(conf[a], ok[a])
        for g in goals:
            i = certify(cur, g)
            for m, t in (('plain', plain_threshold(conf[a], ok[a], g)), ('glamdebug', cur.threshold.iloc[i] if i is not None else None)):
                r = res[(g, m)]
                if t is None: r['none'] += 1; r['cov'].append(0.); continue
                s = conf[b] >= t
                r['cov'].append(s.mean())
                if s.any() and (~ok[b][s]).mean() > g: r['miss'] += 1
    return res


def part1(tmp):
    say('## 1. Does the threshold hold on new items? (300 random halves per model: one picks, the other checks)')
    sets = []
    d = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
    sets.append(('digits 16 px', d, 16, None, ['valid', 'test'], (0.01, 0.02)))
    if ORACLE.exists():
        (tmp/'oracle').mkdir()
        o = oracle_collection(tmp/'oracle', n_train=200)
        sets.append(('oracle-mnist 28 px', o, 28, tmp/'oracle', ['valid'], (0.1, 0.2)))
    else: say('(oracle-mnist absent: digits only)')
    rows, costs = [], []
    for name, df, size, path, splits, goals in sets:
        for seed in range(3):
            learn = train(df, size, seed, path=path)
            learn.clear_split_preds()
            # plain fastai: one get_preds per split
            t0 = time.perf_counter()
            with learn.no_bar():
                for s in splits: learn.get_preds(dl=learn.dls.valid if s == 'valid' else split_dl(learn.dls, s))
            t_plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            with learn.no_bar(): rep = learn.confidence_report(goal=goals[0], others=splits[1:], progress=False)
            t_first = time.perf_counter() - t0
            t0 = time.perf_counter()
            with learn.no_bar(): learn.confidence_report(goal=goals[0], others=splits[1:], progress=False)
            t_again = time.perf_counter() - t0
            costs.append(dict(set=name, seed=seed, items=sum(learn.get_split_preds(s).n for s in splits), get_preds=t_plain, first=t_first, again=t_again))
            conf, ok = held_out(learn, splits)
            err = (~ok).mean()
            res = halves(conf, ok, goals, seed=seed)
            for (g, m), r in res.items():
                rows.append(dict(set=name, seed=seed, error=err, goal=g, method=m, miss=r['miss']/300, coverage=np.mean(r['cov']), none=r['none']/300))
            say(f'{name} seed {seed}: held-out error {err:.1%} on {len(conf)} items; ' +
                '; '.join(f'goal {g:.0%}: plain misses {res[(g, "plain")]["miss"]/300:.0%} (sorts {np.mean(res[(g, "plain")]["cov"]):.0%}), '
                          f'glamdebug {res[(g, "glamdebug")]["miss"]/300:.0%} (sorts {np.mean(res[(g, "glamdebug")]["cov"]):.0%})' for g in goals))
    t = pd.DataFrame(rows)
    s = t.groupby(['set', 'goal', 'method'], sort=False).agg(error=('error', 'mean'), miss=('miss', 'mean'), coverage=('coverage', 'mean'), none=('none', 'mean'))
    w = s.unstack('method')
    out = pd.DataFrame({'held-out error': w[('error', 'plain')].map('{:.1%}'.format),
                        'checking half above goal, plain': w[('miss', 'plain')].map('{:.1%}'.format),
                        'glamdebug': w[('miss', 'glamdebug')].map('{:.1%}'.format),
                        'share sorted, plain': w[('coverage', 'plain')].map('{:.1%}'.format),
                        'glamdebug ': w[('coverage', 'glamdebug')].map('{:.1%}'.format),
                        'nothing certified (glamdebug)': w[('none', 'glamdebug')].map('{:.0%}'.format)})
    say(''); say(out.to_string()); say('')
    c = pd.DataFrame(costs).groupby('set', sort=False)[['items', 'get_preds', 'first', 'again']].median()
    c['first / get_preds'] = c['first']/c['get_preds']; c['again / get_preds'] = c['again']/c['get_preds']
    say('## 2. Cost on a trained learner (median of 3; seconds)'); say(c.round(3).to_string()); say('')


def made_up(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g)
    logits[torch.arange(n), y] += 3*torch.rand(n, generator=g)   # some sure, some not
    return Preds(torch.softmax(logits*1.5, 1), y, [f'c{i}' for i in range(k)], split='valid')


def plain_scale(p, goal):
    from sklearn.calibration import calibration_curve
    conf = p.probs.max(1).values.numpy(); ok = p.correct.numpy()
    best = None
    for t in np.linspace(0, 1, 101):
        s = conf >= t
        if s.any() and (~ok[s]).mean() <= goal: best = t; break
    calibration_curve(ok, conf, n_bins=15)
    return best


def part3():
    say('## 3. Scale: made-up predictions, a second split of the same size (seconds; best of 3)')
    rows = []
    for n, k in [(10_000, 10), (100_000, 10), (1_000_000, 10), (10_000, 1000), (100_000, 1000)]:
        p, q = made_up(n, k, 0), made_up(n, k, 1); q.split = 'test'
        tp, tg = [], []
        for _ in range(3):
            t0 = time.perf_counter(); plain_scale(p, 0.05); plain_scale(q, 0.05); tp.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); r = confidence_report(p, goal=0.05, others=[q]); tg.append(time.perf_counter() - t0)
        rows.append(dict(items=n, classes=k, plain=min(tp), glamdebug=min(tg), ratio=min(tg)/min(tp), thresholds_tested=len(r.curve), share_sorted=r.coverage))
        say(f'{n:>9,} items, {k:>4} classes: plain {min(tp):.3f} s (101 thresholds), glamdebug {min(tg):.3f} s ({len(r.curve):,} thresholds), {min(tg)/min(tp):.2f}×')
    say(''); say(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == '__main__':
    header('bench_confidence')
    with tempfile.TemporaryDirectory() as d:
        part1(Path(d))
    part3()
    save('confidence')
