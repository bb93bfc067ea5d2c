"""CPU benchmark for `learn.tune`: the same trials by hand with plain fastai, and with `tune` on two loaders.

A tuning run is trials × epochs × the collection, so it scales with collection size. Side by side in one run, on the
shipped sample collection (630 small PNGs, 32 px, LeNet-like `defaults_learner`):
  1. plain fastai by hand: for each trial setting, a new `Learner` on `ImageDataLoaders.from_df` + `Resize`, `fit`;
  2. `learn.tune` on `collection_dls` (the same decoding loader): what `tune` itself costs over the hand loop;
  3. `learn.tune` on `cached_dls` + `learn.fast()`: what the fast path saves on a tuning run.
Same settings, epochs and seed in all three. Then, when ../shared/data/oracle-mnist is there, `learn.tune()` on those
3,000 real scans and the tuned settings against the version-zero defaults over 10 epochs.
`python benchmarks/bench_tune.py [n_trials]`; writes benchmarks/results/tune.txt.
"""
import os, sys, time, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from fastai.vision.all import ImageDataLoaders, Resize, ResizeMethod, Learner, CrossEntropyLossFlat, Adam, error_rate, set_seed
from functools import partial
from glamdebug.data import read_collection, collection_dls
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner, lenet_like
from glamdebug.tune import tune_search, LogRange, Choice

N_TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
SIZE, BS, EPOCHS = 32, 32, 2
ROOT = Path(__file__).parent.parent
torch.set_num_threads(2)
space = dict(lr=LogRange(1e-4, 1e-2), schedule=Choice('constant', 'one_cycle'))

df = read_collection(ROOT/'data'/'samples'/'collection.csv', check_images=False)
path = Path(df.attrs['path'])
tv = df[df.split.isin(['train', 'valid'])].assign(is_valid=lambda d: d.split == 'valid')

# 3 first: its trial table gives the settings the other two train with
t = time.perf_counter()
cdls = cached_dls(df, size=SIZE, bs=BS, cache_dir=Path(tempfile.mkdtemp()), progress=False)
build = time.perf_counter() - t
t = time.perf_counter()
rep_fast = defaults_learner(cdls).fast().tune(['lr', 'schedule'], space=space, n_trials=N_TRIALS, rounds=1, epochs=EPOCHS, progress=False)
fast_s = time.perf_counter() - t + build

t = time.perf_counter()
rep_tune = defaults_learner(collection_dls(df, size=SIZE, bs=BS)).tune(['lr', 'schedule'], space=space, n_trials=N_TRIALS, rounds=1,
                                                                      epochs=EPOCHS, progress=False)
tune_s = time.perf_counter() - t

t = time.perf_counter()
errs = []
for _, r in rep_tune.trials.iterrows():
    set_seed(0, reproducible=True)
    dls = ImageDataLoaders.from_df(tv, path, fn_col='fname', label_col='label', valid_col='is_valid',
                                   item_tfms=Resize(SIZE, method=ResizeMethod.Squish), bs=BS, num_workers=0)
    learn = Learner(dls, lenet_like(dls.c), loss_func=CrossEntropyLossFlat(), metrics=error_rate,
                    opt_func=partial(Adam, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0.))
    fit = learn.fit_one_cycle if r.schedule == 'one_cycle' else learn.fit
    with learn.no_bar(), learn.no_logging(): fit(EPOCHS, r.lr, wd=0.)
    errs.append(float(learn.recorder.values[-1][2]))
hand_s = time.perf_counter() - t

n = len(rep_tune.trials)
res = pd.DataFrame([
    dict(what='plain fastai by hand (ImageDataLoaders.from_df + Resize, a Learner per trial)', seconds=hand_s,
         per_trial=hand_s/n, vs_plain=1.0, best_valid_error=min(errs)),
    dict(what='learn.tune on collection_dls (same decoding loader)', seconds=tune_s, per_trial=tune_s/n,
         vs_plain=tune_s/hand_s, best_valid_error=rep_tune.table.valid_error.iloc[0]),
    dict(what='learn.tune on cached_dls + fast() (cache build included)', seconds=fast_s, per_trial=fast_s/n,
         vs_plain=fast_s/hand_s, best_valid_error=rep_fast.table.valid_error.iloc[0]),
])
txt = (f'tune: {n} trials (baseline + {N_TRIALS} random) × {EPOCHS} epochs, sample collection ({len(tv)} train+valid images) '
       f'at {SIZE} px, LeNet-like, 2 threads; load average {os.getloadavg()[0]:.1f}\n'
       + res.to_string(index=False, float_format=lambda v: f'{v:.3g}')
       + '\n(vs_plain: time as a fraction of plain fastai by hand)\n\nvalid error per trial: tune gives the same on both loaders; '
       'the hand loop starts from other initial weights and batch order, so at 2 epochs its errors differ by noise\n'
       + pd.DataFrame(dict(lr=rep_tune.trials.lr, schedule=rep_tune.trials.schedule, hand=errs, tune=rep_tune.trials.valid_error,
                           tune_fast=rep_fast.trials.valid_error)).to_string(index=False, float_format=lambda v: f'{v:.3g}'))
print(txt)
out = ROOT/'benchmarks'/'results'/'tune.txt'
out.write_text(txt + '\n')

# ---- real scans, when ../shared/data/oracle-mnist is there: does tuning pay on them?
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection
if ORACLE.exists():
    from fastai.torch_core import set_seed as _seed
    odf = oracle_collection(Path(tempfile.mkdtemp(prefix='oracle')), n_train=200)
    odls = cached_dls(odf, size=28, bs=64, cache_dir=Path(tempfile.mkdtemp()), progress=False)
    v0 = defaults_learner(odls).fast()
    t = time.perf_counter()
    orep = v0.tune(n_trials=12, rounds=2, epochs=3, progress=False)
    tune_o = time.perf_counter() - t
    LONG = 10
    _seed(0, reproducible=True); odls.train.rng.seed(0)  # weights and batch order fixed, as report.train(seed=0) fixes them
    ref = defaults_learner(odls).fast()
    with ref.no_bar(), ref.no_logging(): ref.fit(LONG)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        best = orep.train(LONG, seed=0)
    e_ref, e_best = float(ref.recorder.values[-1][2]), float(best.recorder.values[-1][2])
    otxt = (f'\n\noracle-mnist ({len(odf[odf.split == "train"])} train, {len(odf[odf.split == "valid"])} valid scans, 28 px, '
            f'10 classes): learn.tune() from the version-zero defaults, {len(orep.trials)} trials x 3 epochs in {tune_o:.0f} s\n'
            + orep.summary + '\n' + orep.sensitivity.to_string(float_format=lambda v: f'{v:.3g}')
            + f'\n{LONG} epochs, version-zero defaults: valid error {e_ref:.2%}; {LONG} epochs, best tuned settings '
              f'(report.train): {e_best:.2%}')
    print(otxt)
    out.write_text(txt + otxt + '\n')
else: print(f'{ORACLE} is absent: the real-scan part is skipped')
