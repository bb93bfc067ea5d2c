"""CPU benchmark for "did the change help?": `learn.compare(other, control=…)` against what a user does by hand with
plain fastai (compare the two valid errors), side by side in one run.

1. Verdicts on real training (version-zero LeNet, Adam 3e-4, 3 seeds): scikit-learn's digits at 16 px (valid and test)
   and, when ../shared/data/oracle-mnist is there, its real scans at 28 px (200 training scans per class, valid 1,000).
   Three kinds of change, each `after` trained with another seed than `before`:
   - none: 8 epochs against 8 epochs (only the seed differs);
   - better: 2 epochs against 8 epochs;
   - worse: 8 epochs against 8 epochs on training labels of which 30 % are shuffled.
   The control is a third run of `before`'s settings with a third seed.
   - plain: `after` is better when its error is lower, worse when higher;
   - glamdebug without a control: McNemar on the items fixed and broken (5 %);
   - glamdebug with the control: the same, and `after` must also beat the control run beyond chance (every run of the
     old settings), else `within seed noise`.
   Counted per split: changes called better or worse when there is none (false alarms), and real ones found.
2. Scale: made-up predictions of 10,000 to 1,000,000 items (10 classes) and 100,000 items of 1,000 classes, two
   splits: seconds for `compare_preds` beside the plain difference of two error rates.
`python benchmarks/bench_compare.py`; writes benchmarks/results/compare.txt.
"""
import time, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from glamdebug.data import read_collection
from glamdebug.samples import digits_collection
from glamdebug.preds import Preds
from glamdebug.compare import compare_preds

import common
from common import say, header, save
from oracle_merge import ORACLE, oracle_collection


def train(df, size, seed, epochs, path=None, noise=0.):
    "`common.train`, with a share `noise` of the training labels shuffled first"
    d = df.copy()
    if noise:
        rng = np.random.default_rng(seed)
        tr = np.nonzero((d.split == 'train').to_numpy())[0]
        pick = rng.choice(tr, int(noise*len(tr)), replace=False)
        d.iloc[pick, d.columns.get_loc('label')] = rng.permutation(d.label.to_numpy()[pick])
    return common.train(d, size, seed, epochs, path)


def part1(tmp):
    say('## 1. Verdicts on real training')
    sets = [('digits 16 px', read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False), 16, None, ['valid', 'test'])]
    if ORACLE.exists():
        (tmp/'oracle').mkdir()
        sets.append(('oracle-mnist 28 px', oracle_collection(tmp/'oracle', n_train=200), 28, tmp/'oracle', ['valid']))
    else: say('(oracle-mnist absent: digits only)')
    rows = []
    for name, df, size, path, splits in sets:
        for seed in range(3):
            t0 = time.perf_counter()
            m8, m8b, m8c = (train(df, size, seed + o, 8, path) for o in (0, 100, 200))
            m2, m2c = train(df, size, seed, 2, path), train(df, size, seed + 200, 2, path)
            noisy = train(df, size, seed + 100, 8, path, noise=0.3)
            t_train = time.perf_counter() - t0
            for kind, before, after, control in (('none', m8, m8b, m8c), ('better', m2, m8b, m2c), ('worse', m8, noisy, m8c)):
                with before.no_bar(), after.no_bar(), control.no_bar():
                    t0 = time.perf_counter(); plain = {s: (before.get_split_preds(s).error, after.get_split_preds(s).error) for s in splits}
                    alone = before.compare(after, splits=splits, progress=False)
                    withc = before.compare(after, splits=splits, control=control, progress=False)
                for s in splits:
                    e0, e1 = plain[s]
                    rows.append(dict(set=name, seed=seed, change=kind, split=s, error_before=e0, error_after=e1,
                                     plain='better' if e1 < e0 else 'worse' if e1 > e0 else 'no difference shown',
                                     mcnemar=alone.table.at[s, 'verdict'], control=withc.table.at[s, 'verdict'],
                                     fixed=int(alone.table.at[s, 'fixed']), broken=int(alone.table.at[s, 'broken']), noise=int(withc.table.at[s, 'seed noise'])))
                    r = rows[-1]
                    say(f'{name} seed {seed} {kind:>6} {s:>5}: {e0:.1%} → {e1:.1%}, fixed {r["fixed"]}, broken {r["broken"]}, seed noise {r["noise"]} | '
                        f'plain {r["plain"]}, McNemar {r["mcnemar"]}, with control {r["control"]}')
            say(f'   ({t_train:.0f} s training)')
    t = pd.DataFrame(rows)
    def called(col, want):
        g = t.groupby(['set', 'change'], sort=False)[col]
        return g.apply(lambda v: (v.isin(want)).sum()).astype(str) + '/' + g.size().astype(str)
    out = pd.DataFrame({
        'plain': pd.concat([called('plain', ['better', 'worse'])]),
        'glamdebug, McNemar': called('mcnemar', ['better', 'worse']),
        'glamdebug, with control': called('control', ['better', 'worse'])})
    say(''); say('Called better or worse (for none: false alarms; for better / worse: the right direction only below)')
    say(out.to_string())
    real = t[t.change != 'none']
    right = pd.DataFrame({c: (real[c] == real.change).groupby([real.set, real.change], sort=False).sum().astype(str) + '/'
                             + real.groupby(['set', 'change'], sort=False).size().astype(str) for c in ('plain', 'mcnemar', 'control')})
    say(''); say('Found in the right direction'); say(right.to_string()); say('')


def made_up(n, k, seed, flip=0.):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g); logits[torch.arange(n), y] += 2
    return Preds(torch.softmax(logits, 1), y, [f'c{i}' for i in range(k)], split='valid')


def part2():
    say('## 2. Scale: made-up predictions, two splits (seconds; best of 3)')
    for n, k in [(10_000, 10), (100_000, 10), (1_000_000, 10), (100_000, 1000)]:
        b = {'valid': made_up(n, k, 0), 'test': made_up(n, k, 1)}
        a = {'valid': made_up(n, k, 0), 'test': made_up(n, k, 1)}
        a['valid'].probs = a['valid'].probs.roll(1, 0)   # other answers, same targets
        tp, tg = [], []
        for _ in range(3):
            t0 = time.perf_counter(); [(a[s].error - b[s].error) for s in b]; tp.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); compare_preds(b, a); tg.append(time.perf_counter() - t0)
        say(f'{n:>9,} items, {k:>4} classes: plain {min(tp):.3f} s, glamdebug {min(tg):.3f} s ({min(tg)/min(tp):.1f}×)')


if __name__ == '__main__':
    header('bench_compare')
    with tempfile.TemporaryDirectory() as d: part1(Path(d))
    part2()
    save('compare')
