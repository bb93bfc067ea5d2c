"""CPU benchmark for `learn.data_curve`: the same learning curve by hand with plain fastai, and with `data_curve` on two loaders.

A learning curve is one training run per training-set size, so it scales with the collection. Side by side in one
run, for each collection (scikit-learn's digits at 16 px; the shipped sample collection at 32 px; oracle-mnist's real
scans at 28 px when ../shared/data/oracle-mnist is there), LeNet-like model, Adam 3e-4, the same steps for every size:
  1. plain fastai by hand, as a user would write it: for each share, a stratified `groupby().sample()` of the training
     rows, `ImageDataLoaders.from_df` + `Resize`, a new `Learner`, `fit` for epochs/share epochs (the same steps), then
     `get_preds` on the valid set and on the subset;
  2. `learn.data_curve` on `collection_dls` (the same decoding loader): what `data_curve` itself costs;
  3. `learn.data_curve` on `cached_dls` + `learn.fast()` (cache build included): what the fast path saves.
`python benchmarks/bench_curve.py`; writes benchmarks/results/curve.txt.
"""
import os, sys, time, math, tempfile, warnings
from pathlib import Path
from functools import partial
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from fastai.vision.all import ImageDataLoaders, Resize, ResizeMethod, Learner, CrossEntropyLossFlat, Adam, set_seed
from glamdebug.data import read_collection, collection_dls
from glamdebug.samples import digits_collection
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner, lenet_like
import glamdebug.curve  # noqa: F401  (patches Learner.data_curve)

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection
torch.set_num_threads(2)
FRACTIONS, BS = (1/16, 1/8, 1/4, 1/2, 1), 32


def by_hand(df, size, epochs, seed=0):
    "The curve as a plain fastai user writes it; valid errors per share and seconds"
    path = Path(df.attrs['path'])
    tr, va = df[df.split == 'train'], df[df.split == 'valid']
    errs, t = [], time.perf_counter()
    for f in FRACTIONS:
        sub = tr.groupby('label', group_keys=False).sample(frac=f, random_state=seed) if f < 1 else tr
        tv = pd.concat([sub.assign(is_valid=False), va.assign(is_valid=True)])
        set_seed(seed, reproducible=True)
        dls = ImageDataLoaders.from_df(tv, path, fn_col='fname', label_col='label', valid_col='is_valid',
                                       item_tfms=Resize(size, method=ResizeMethod.Squish), bs=min(BS, len(sub)), num_workers=0)
        learn = Learner(dls, lenet_like(dls.c), loss_func=CrossEntropyLossFlat(), lr=3e-4,
                        opt_func=partial(Adam, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0.))
        with learn.no_bar(), learn.no_logging():
            learn.fit(math.ceil(epochs/f))
            p, y = learn.get_preds(dl=dls.valid)
            errs.append(float((p.argmax(1) != y).float().mean()))
            learn.get_preds(dl=dls.test_dl(sub, with_labels=True))  # the train error, as data_curve measures it
    return errs, time.perf_counter() - t


def compare(name, df, size, epochs):
    errs_hand, hand_s = by_hand(df, size, epochs)
    t = time.perf_counter()
    rep_c = defaults_learner(collection_dls(df, size=size, bs=BS)).data_curve(FRACTIONS, epochs=epochs, progress=False)
    curve_s = time.perf_counter() - t
    t = time.perf_counter()
    cdls = cached_dls(df, size=size, bs=BS, cache_dir=Path(tempfile.mkdtemp()), progress=False)
    rep_f = defaults_learner(cdls).fast().data_curve(FRACTIONS, epochs=epochs, progress=False)
    fast_s = time.perf_counter() - t
    n_tr, n_va = int((df.split == 'train').sum()), int((df.split == 'valid').sum())
    res = pd.DataFrame([
        dict(what='plain fastai by hand (a Learner per share, epochs/share epochs)', seconds=hand_s, vs_plain=1.0,
             valid_error_smallest=errs_hand[0], valid_error_all=errs_hand[-1]),
        dict(what='learn.data_curve on collection_dls (same decoding loader)', seconds=curve_s, vs_plain=curve_s/hand_s,
             valid_error_smallest=rep_c.runs.valid_error.iloc[0], valid_error_all=rep_c.runs.valid_error.iloc[-1]),
        dict(what='learn.data_curve on cached_dls + fast() (cache build included)', seconds=fast_s, vs_plain=fast_s/hand_s,
             valid_error_smallest=rep_f.runs.valid_error.iloc[0], valid_error_all=rep_f.runs.valid_error.iloc[-1]),
    ])
    return (f'\n== {name}: {n_tr} train, {n_va} valid images at {size} px; {len(FRACTIONS)} sizes (1/16 … all), '
            f'{epochs} epochs of steps each\n' + res.to_string(index=False, float_format=lambda v: f'{v:.3g}')
            + f'\ndata_curve (cached) valid error by size: '
            + ', '.join(f'{int(n)}: {e:.1%}' for n, e in zip(rep_f.runs.n_train, rep_f.runs.valid_error))
            + f'\nhand loop valid error by size:          ' + ', '.join(f'{e:.1%}' for e in errs_hand)
            + f'\nverdict (cached run): {rep_f.summary}\n')


tmp = Path(tempfile.mkdtemp())
parts = [f'learn.data_curve vs the same curve by hand with plain fastai; LeNet-like, Adam 3e-4, batch {BS}, 2 threads; '
         f'load average {os.getloadavg()[0]:.1f}. vs_plain: time as a fraction of the hand loop (below 1: faster). '
         'The hand loop draws other subsets, weights and batch order, so its errors differ by noise.']
ddf = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
parts.append(compare("scikit-learn's digits", ddf, 16, 8))
sdf = read_collection(ROOT/'data'/'samples'/'collection.csv', check_images=False, progress=False)
parts.append(compare('sample collection', sdf, 32, 8))
if ORACLE.exists():
    odf = oracle_collection(tmp/'oracle', n_train=200)
    parts.append(compare('oracle-mnist scans', odf, 28, 6))
else: parts.append(f'\n{ORACLE} is absent: the real-scan part is skipped')
txt = '\n'.join(parts)
print(txt)
(ROOT/'benchmarks'/'results'/'curve.txt').write_text(txt + '\n')
