"""CPU benchmark for rare classes: `learn.rebalance_report()` and `balanced_dls` against plain fastai, side by side in one run.

Collections with planted rare classes (valid left as it is, so every class's error is measured on as many items):
scikit-learn's digits at 16 px (digits 0, 1, 2 keep 10 % of their training items: 11 against ~108), oracle-mnist's
real scans at 28 px when ../shared/data/oracle-mnist is there (3 characters keep 10 %: 20 against 200), and the shipped
sample collection at 32 px (map and photo keep 10 of 60). One control without rare classes: digits with every class
thinned at random to 50-100 % of its items (at most 2:1). LeNet-like model, Adam 3e-4, the same epochs everywhere, 3 seeds.

For each: plain fastai as a user writes it (`ImageDataLoaders.from_df` + `Resize`, a `Learner`, `fit`), plain fastai's
own oversampling (`DataBlock.weighted_dataloaders` with weights 1/class count: `WeightedDL`), and `rebalance_report`
(as is twice, logit adjustment, oversampling, square-root oversampling, weighted loss). Figures: balanced error (mean
of the per-class errors on valid), valid error, the method the report picks, seconds; ratios against plain fastai.

Scaling: class codes and one pass's weighted draw for 10,000 to 1,000,000 training rows (50 classes), glamdebug
(`balanced_dls`) against plain fastai's `WeightedDL` draw given precomputed weights.
`python benchmarks/bench_rebalance.py`; writes benchmarks/results/rebalance.txt.
"""
import sys, time, math, tempfile, warnings, platform
from pathlib import Path
from functools import partial
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from fastai.vision.all import (ImageDataLoaders, DataBlock, ImageBlock, CategoryBlock, ColReader, ColSplitter, Resize, ResizeMethod,
                               Learner, CrossEntropyLossFlat, Adam, set_seed, WeightedDL)
from glamdebug.data import read_collection, collection_dls
from glamdebug.samples import digits_collection
from glamdebug.models import defaults_learner, lenet_like
from glamdebug.curve import _train_codes
from glamdebug.balance import balanced_dls

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection
torch.set_num_threads(2)
BS, SEEDS = 32, (0, 1, 2)
OUT = []


def say(*a):
    s = ' '.join(str(o) for o in a); print(s, flush=True); OUT.append(s)


def thin(df, keep, seed):
    "`df` with `keep[c]` of class c's training items (valid and the others as they are)"
    rng, drop = np.random.default_rng(seed), []
    for c, k in keep.items():
        ix = rng.permutation(df.index[(df.split == 'train') & (df.label == c)])
        drop += list(ix[max(1, round(k*len(ix))):])
    out = df.drop(index=drop).reset_index(drop=True); out.attrs = dict(df.attrs)
    return out


def balanced_error(p, y):
    pred, y = p.argmax(1).numpy(), y.numpy()
    return float(np.mean([(pred[y == c] != c).mean() for c in np.unique(y)])), float((pred != y).mean())


def plain(df, size, epochs, seed, weighted=False):
    "Plain fastai: `ImageDataLoaders.from_df` (or `weighted_dataloaders` with weights 1/count), a LeNet, `fit`"
    path = Path(df.attrs['path'])
    tv = pd.concat([df[df.split == 'train'].assign(is_valid=False), df[df.split == 'valid'].assign(is_valid=True)]).reset_index(drop=True)
    set_seed(seed, reproducible=True)
    t = time.perf_counter()
    if weighted:
        tr = tv[~tv.is_valid]
        wgts = (1/tr.label.map(tr.label.value_counts())).to_numpy()
        dls = DataBlock((ImageBlock, CategoryBlock), get_x=ColReader('fname', pref=f'{path}/'), get_y=ColReader('label'),
                        splitter=ColSplitter('is_valid'), item_tfms=Resize(size, method=ResizeMethod.Squish)
                        ).weighted_dataloaders(tv, wgts=wgts, bs=BS, num_workers=0)
    else:
        dls = ImageDataLoaders.from_df(tv, path, fn_col='fname', label_col='label', valid_col='is_valid',
                                       item_tfms=Resize(size, method=ResizeMethod.Squish), bs=BS, num_workers=0)
    learn = Learner(dls, lenet_like(dls.c), loss_func=CrossEntropyLossFlat(), lr=3e-4,
                    opt_func=partial(Adam, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0.))
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs)
        p, y = learn.get_preds(dl=dls.valid)
    return (*balanced_error(p, y), time.perf_counter() - t)


def compare(name, df, size, epochs):
    n = df[df.split == 'train'].label.value_counts()
    say(f'\n## {name}: {len(n)} classes, {n.sum()} training items (largest {n.max()}, smallest {n.min()}), '
        f'{(df.split == "valid").sum()} valid, {size} px, {epochs} epochs, seeds {SEEDS}')
    rows = []
    for seed in SEEDS:
        a_bal, a_err, a_s = plain(df, size, epochs, seed)
        w_bal, w_err, w_s = plain(df, size, epochs, seed, weighted=True)
        set_seed(seed, reproducible=True)
        t = time.perf_counter()
        rep = defaults_learner(collection_dls(df, size=size, bs=BS)).rebalance_report(epochs=epochs, seed=seed, progress=False)
        rep_s = time.perf_counter() - t
        r = rep.runs.set_index('method')
        row = dict(seed=seed, fastai_as_is=a_bal, fastai_weighted_dl=w_bal, **{m: r.balanced_error.get(m, np.nan) for m in
                   ('as_is', 'as_is_again', 'logit_adjust', 'oversample', 'sqrt_oversample', 'weighted_loss')},
                   best=rep.best, best_error=r.loc[rep.best].balanced_error, fastai_s=a_s, report_s=rep_s,
                   fastai_valid=a_err, best_valid=r.loc[rep.best].valid_error)
        rows.append(row)
        say(f'  seed {seed}: report picks {rep.best} ({row["best_error"]:.1%} balanced, {row["best_valid"]:.1%} valid); '
            f'plain fastai as is {a_bal:.1%} balanced ({a_err:.1%} valid), WeightedDL {w_bal:.1%}; '
            f'report {rep_s:.1f} s, one plain fastai training {a_s:.1f} s')
    t = pd.DataFrame(rows)
    cols = ['fastai_as_is', 'fastai_weighted_dl', 'as_is', 'as_is_again', 'logit_adjust', 'oversample', 'sqrt_oversample', 'weighted_loss', 'best_error']
    with pd.option_context('display.width', 200, 'display.max_columns', 20):
        say('  balanced error (mean of per-class valid errors), mean over seeds:')
        say('  ' + '  '.join(f'{c} {t[c].mean():.1%}' for c in cols))
    say(f'  ratios: picked / plain fastai as is {t.best_error.mean()/t.fastai_as_is.mean():.2f}; '
        f'glamdebug oversample / fastai WeightedDL {t.oversample.mean()/t.fastai_weighted_dl.mean():.2f}; '
        f'valid error picked / plain fastai {t.best_valid.mean()/t.fastai_valid.mean():.2f}; '
        f'report time / one plain fastai training {t.report_s.mean()/t.fastai_s.mean():.1f}x')
    say(f'  picked: {", ".join(t.best)}')
    return t


def scaling():
    say('\n## Scaling: class codes and one weighted pass, 50 classes (the sample images repeated: nothing is decoded)')
    base = pd.read_csv(ROOT/'data/samples/collection.csv')
    rng = np.random.default_rng(0)
    for N in (10_000, 100_000, 1_000_000):
        big = base[base.split == 'train'].sample(N, replace=True, random_state=0).reset_index(drop=True)
        big['label'] = [f'c{i:02d}' for i in np.minimum(rng.geometric(0.08, N) - 1, 49)]  # long-tailed
        big = pd.concat([big, base[base.split == 'valid']]).reset_index(drop=True); big.attrs['path'] = (ROOT/'data/samples').resolve()
        dls = collection_dls(big, size=32, bs=64)
        t = time.perf_counter(); b = balanced_dls(dls); t1 = time.perf_counter(); b.train.get_idxs(); t2 = time.perf_counter()
        # plain fastai: weights from the table (vectorised, as a user writes it), then WeightedDL's draw
        tr = big[big.split == 'train']
        t3 = time.perf_counter(); w = (1/tr.label.map(tr.label.value_counts())).to_numpy()
        wdl = WeightedDL(dls.train.dataset, bs=64, wgts=w, shuffle=True); t4 = time.perf_counter(); wdl.get_idxs(); t5 = time.perf_counter()
        loop = ''
        if N <= 100_000:  # the label pipeline item by item, as `_train_codes` did before it read the table
            ds = dls.train.dataset; t6 = time.perf_counter(); [int(ds.tls[1][i]) for i in range(len(ds))]; loop = f'; codes item by item {time.perf_counter() - t6:.2f} s'
        say(f'  {N:>9,} rows: balanced_dls {t1 - t:.3f} s + a pass\'s draw {t2 - t1:.3f} s; plain fastai weights {t4 - t3:.3f} s '
            f'+ WeightedDL draw {t5 - t4:.3f} s; ratio {(t2 - t)/(t5 - t3):.2f}{loop}')


if __name__ == '__main__':
    say(f'# rebalance benchmark, {time.strftime("%Y-%m-%d")}, {platform.machine()} CPU, torch {torch.__version__}, 2 threads')
    tmp = Path(tempfile.mkdtemp())
    dg = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
    compare('digits, 0/1/2 rare', thin(dg, {c: 0.1 for c in '012'}, 0), 16, 8)
    compare('digits, no rare class (every class 50-100 %, at most 2:1)',
            thin(dg, {c: k for c, k in zip('0123456789', np.linspace(0.5, 1, 10))}, 0), 16, 8)
    if ORACLE.exists():
        oc = oracle_collection(tmp/'oracle', n_train=200)
        names = sorted(oc.label.unique())[:3]
        compare(f'oracle-mnist, {"/".join(names)} rare', thin(oc, {c: 0.1 for c in names}, 0), 28, 8)
    else: say('\n(oracle-mnist not found: skipped)')
    sm = read_collection(ROOT/'data/samples/collection.csv', progress=False)
    compare('sample collection, map/photo rare', thin(sm, {'map': 10/60, 'photo': 10/60}, 0), 32, 8)
    scaling()
    (ROOT/'benchmarks/results').mkdir(exist_ok=True)
    (ROOT/'benchmarks/results/rebalance.txt').write_text('\n'.join(OUT) + '\n')
