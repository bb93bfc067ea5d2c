"""CPU benchmark for choosing what to label next: `learn.label_next(pool, n, strategy)` against a random sample (what
one does with plain fastai, which has no way to choose), side by side in one run.

1. Labels saved. Simulated labelling rounds with real training: a small labelled start, then each round the model
   picks `step` items of the unlabelled pool (their labels are known here and revealed once picked), a fresh
   version-zero LeNet (Adam 3e-4, a fixed 400 steps of 32 whatever the set's size, so that no strategy gets more
   training) is trained on all labelled items, and its error is measured on the held-out `test` split. Strategies:
   `random` (plain), `margin` (least sure first) and `badge` (uncertain and diverse, the default). 3 seeds each.
   Collections: scikit-learn's digits at 16 px (pool: the 1,078 training items; 50 to start, +50 a round); the digits
   again with every pool image present four times (the original and three copies with faint noise, as a run of
   near-identical pages or a photograph scanned twice gives); oracle-mnist's scans at 28 px when ../shared/data is
   there (pool: 2,000; 100 to start, +100 a round; its 1,000 held-out scans split into valid and test).
2. Cost: `label_next` on a pool of 10,000 image files (64 px), LeNet at 32 px, beside plain fastai `get_preds` over a
   `test_dl` of the same files.
`python benchmarks/bench_active.py`; writes benchmarks/results/active.txt.
"""
import math, time, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
warnings.filterwarnings('ignore')
from fastai.vision.all import set_seed
from glamdebug.data import read_collection
from glamdebug.samples import digits_collection
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls
import glamdebug.active  # noqa: F401  (Learner.label_next)

from common import say, header, save, cost_pool, plain_preds_seconds
from oracle_merge import ORACLE, oracle_collection

STRATEGIES, STEPS, BS = ('random', 'margin', 'badge'), 400, 32


def fit(df, path, size, seed, cache):
    "The version-zero model on the labelled rows of `df`, a fixed number of steps"
    set_seed(seed, reproducible=True)
    learn = defaults_learner(cached_dls(df, path=path, size=size, bs=BS, cache_dir=cache, progress=False))
    n = int((df.split == 'train').sum())
    with learn.no_bar(), learn.no_logging(): learn.fit(max(1, math.ceil(STEPS*BS/n)))
    return learn


def test_error(learn):
    with learn.no_bar(): return learn.get_split_preds('test').error


def simulate(df, path, size, start, step, rounds, seed, strategy, cache):
    "Test error after each round: [(labelled, error)]"
    pool = df.index[df.split == 'train'].to_numpy()
    rng = np.random.default_rng(seed)
    lab = list(rng.choice(pool, start, replace=False))
    file_row = {str(Path(path)/df.fname[i]): i for i in pool}
    out = []
    for r in range(rounds + 1):
        sub = df[(df.split != 'train') | df.index.isin(lab)]
        learn = fit(sub, path, size, seed, cache)
        out.append((len(lab), test_error(learn)))
        if r == rounds: break
        left = [str(Path(path)/df.fname[i]) for i in pool if i not in set(lab)]
        rep = learn.label_next(left, n=step, strategy=strategy, seed=seed*100 + r, progress=False)
        lab += [file_row[f] for f in rep.picked.file]
    return out


def run_set(name, df, path, size, start, step, rounds, seeds, cache):
    say(f'## {name}: {(df.split == "train").sum()} in the pool, {start} labelled to start, +{step} a round, test error (%) on '
        f'{(df.split == "test").sum()} held-out items; mean over seeds {", ".join(map(str, seeds))} (min–max)')
    res = {}
    for s in STRATEGIES:
        t0 = time.perf_counter()
        runs = [simulate(df, path, size, start, step, rounds, seed, s, cache) for seed in seeds]
        res[s] = np.array([[e for _, e in run] for run in runs])
        say(f'  {s} done in {time.perf_counter() - t0:.0f} s')
    ns = [n for n, _ in runs[0]]
    t = pd.DataFrame({s: [f'{100*m:.1f} ({100*lo:.1f}–{100*hi:.1f})' for m, lo, hi in zip(a.mean(0), a.min(0), a.max(0))]
                      for s, a in res.items()}, index=pd.Index(ns, name='labelled'))
    say(t.to_string())
    rnd = res['random'][:, -1]
    target = rnd.mean()
    for s in STRATEGIES[1:]:
        m, last = res[s].mean(0), res[s][:, -1]
        hit = next((n for n, e in zip(ns, m) if e <= target), None)
        apart = last.max() < rnd.min() or last.min() > rnd.max()
        say(f'  {s}: at {ns[-1]} labels {100*m[-1]:.1f} % against random\'s {100*target:.1f} % ({m[-1]/target:.2f}×; '
            + ('no seed overlaps random\'s' if apart else 'the seeds\' ranges overlap: no difference shown') + '); '
            + (f'its mean reaches random\'s {ns[-1]}-label error at {hit} labels' if hit else f'its mean does not reach random\'s {ns[-1]}-label error'))
    say('')
    return res


def with_copies(df, path, dst, k=4, noise=4):
    "`df` with each training image present `k` times under `dst` (the original and k-1 copies with faint Gaussian noise)"
    rng, rows = np.random.default_rng(0), []
    for i, r in df.iterrows():
        if r.split != 'train': rows.append(dict(fname=str(Path(path)/r.fname), label=r.label, split=r.split)); continue
        a = np.asarray(Image.open(Path(path)/r.fname).convert('L')).astype(float)
        for j in range(k):
            fn = dst/f'{i:05d}_{j}.png'
            b = a if j == 0 else (a + rng.normal(0, noise, a.shape)).clip(0, 255)
            Image.fromarray(b.round().astype(np.uint8)).save(fn)
            rows.append(dict(fname=str(fn), label=r.label, split='train'))
    return pd.DataFrame(rows)


def part1(tmp, seeds):
    cache = tmp/'cache'
    d = digits_collection(tmp/'digits', size=16)
    dg = read_collection(d/'collection.csv', progress=False)
    run_set('digits 16 px', dg, d, 16, 50, 50, 5, seeds, cache)
    (tmp/'copies').mkdir()
    cp = with_copies(dg, d, tmp/'copies')
    run_set('digits 16 px, every pool image four times (faint noise)', cp, '/', 16, 50, 50, 5, seeds, cache)
    if ORACLE.exists():
        (tmp/'oracle').mkdir()
        o = oracle_collection(tmp/'oracle', n_train=200)
        v = o.index[o.split == 'valid']
        o.loc[np.random.default_rng(0).permutation(v)[:len(v)//2], 'split'] = 'test'
        run_set('oracle-mnist 28 px', o, tmp/'oracle', 28, 100, 100, 5, seeds, cache)
    else: say('(oracle-mnist absent: digits only)')


def part2(tmp):
    say('## 2. Cost: a pool of 10,000 image files (64 px), LeNet at 32 px (seconds; best of 2)')
    learn, fs = cost_pool(tmp/'many', noise=3)   # distinct files: each a test image with its own faint noise
    tp, tg = [], {}
    for _ in range(2):
        tp.append(plain_preds_seconds(learn, fs))
        for s, n in (('random', 100), ('margin', 100), ('badge', 100), ('badge', 1000)):
            t0 = time.perf_counter()
            learn.label_next(tmp/'many', n=n, strategy=s, progress=False)
            tg.setdefault((s, n), []).append(time.perf_counter() - t0)
    say(f'plain get_preds (test_dl) {min(tp):.2f} s')
    for (s, n), t in tg.items():
        say(f'label_next {s}, n={n}: {min(t):.2f} s, {min(t)/min(tp):.2f}× (it also reads every file once to check it)')


if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser(); ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--skip-cost', action='store_true')
    a = ap.parse_args()
    header('bench_active')
    with tempfile.TemporaryDirectory() as d:
        part1(Path(d), a.seeds)
        if not a.skip_cost: part2(Path(d))
    save('active')
