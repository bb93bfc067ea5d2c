"""Does Bayesian tuning pay? `learn.tune` with its three search methods, same trials budget, several seeds.

Tuning cost scales with trials × epochs × collection size; the search method decides what those trials buy. On
oracle-mnist (../shared/data/oracle-mnist: 2,000 train, 500 valid and 500 test scans of 10 classes, 28 px;
scikit-learn's digits when it is absent), from the version-zero LeNet-like defaults, the high-sensitivity settings
(lr, schedule, loss, width), 1 + 24 trials of 3 epochs each:
  - random: 24 random trials over the full ranges (plain random search: rounds=1);
  - coarse to fine: 12 random, then 12 random inside the region of the best (`method='random'`, rounds=2);
  - Bayesian: the same 12 random, then 12 each proposed by expected improvement (`method='bayes'`, rounds=2).
Reported per seed: the best valid error (what the search optimises, biased low by the pick), the test error of that
best trial's settings (trained again from the same start: unbiased), and the seconds. No plain-fastai column: fastai
has no tuner (bench_tune.py compares `tune` with trials written by hand).
Then `width` on a timm resnet18: what each layer size costs per trial and reaches (`width` alone runs only that part).
`python benchmarks/bench_tune_methods.py [n_seeds | width]`; writes benchmarks/results/tune_methods.txt.
"""
import os, sys, time, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from glamdebug.data import split_dl
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
import glamdebug.tune  # Learner.tune

WIDTH_ONLY = sys.argv[1:2] == ['width']
N_SEEDS = 0 if WIDTH_ONLY else int(sys.argv[1]) if len(sys.argv) > 1 else 3
N_TRIALS, EPOCHS = 12, 3
ROOT = Path(__file__).parent.parent
torch.set_num_threads(2)
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection

tmp = Path(tempfile.mkdtemp(prefix='tune_methods'))
if ORACLE.exists():
    df, what = oracle_collection(tmp, n_train=200), 'oracle-mnist'
else:
    from glamdebug.samples import digits_collection
    df, what = digits_collection(tmp), "scikit-learn's digits"
# half of each class's valid rows become the test split: the search never sees them
rng = np.random.default_rng(0)
for c, g in df[df.split == 'valid'].groupby('label'):
    df.loc[rng.permutation(g.index)[:len(g)//2], 'split'] = 'test'
dls = cached_dls(df, size=28, bs=64, cache_dir=tmp/'cache', progress=False)
test = split_dl(dls, 'test', df=df)
counts = df.split.value_counts()

OUT = ROOT/'benchmarks'/'results'/'tune_methods.txt'
arms = {'random': dict(n_trials=2*N_TRIALS, rounds=1), 'coarse to fine': dict(n_trials=N_TRIALS, rounds=2, method='random'),
        'bayesian': dict(n_trials=N_TRIALS, rounds=2, method='bayes')}
rows = []
for seed in range(N_SEEDS):
    for name, kw in arms.items():
        t = time.perf_counter()
        rep = defaults_learner(dls).fast().tune(epochs=EPOCHS, seed=seed, progress=False, **kw)
        secs = time.perf_counter() - t
        best = rep.train(EPOCHS, seed=seed, progress=False)  # the best trial again, from the same start
        with best.no_bar(): test_err = float(best.validate(dl=test)[1])
        best_s = ', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in rep.best.items())
        rows.append(dict(seed=seed, method=name, trials=len(rep.trials), best_valid_error=rep.table.valid_error.iloc[0],
                         test_error=test_err, seconds=secs, search_s=secs - rep.trials.seconds.sum(), best=best_s))
        print(rows[-1], flush=True)
def methods_text(res):
    summ = res.groupby('method', sort=False)[['best_valid_error', 'test_error', 'seconds', 'search_s']].mean()
    summ['test_error_vs_random'] = summ.test_error/summ.loc['random', 'test_error']
    summ['seconds_vs_random'] = summ.seconds/summ.loc['random', 'seconds']
    diff = res[res.method == 'bayesian'].test_error.to_numpy() - res[res.method == 'coarse to fine'].test_error.to_numpy()
    return (f'tune methods: {what} ({counts.get("train", 0)} train, {counts.get("valid", 0)} valid, {counts.get("test", 0)} test, '
            f'28 px), LeNet-like version-zero defaults + fast(), high-sensitivity settings, 1 + {2*N_TRIALS} trials x {EPOCHS} '
            f'epochs, {N_SEEDS} seeds; 2 threads; load average {os.getloadavg()[0]:.1f}\n\nper seed\n'
            + res.to_string(index=False, float_format=lambda v: f'{v:.3g}')
            + "\n\nmean over seeds (test_error: the best trial's settings trained again from the same start, on the held-out "
              "test split; search_s: the seconds outside the trials' training, the proposals included)\n"
            + summ.to_string(float_format=lambda v: f'{v:.3g}')
            + '\n\ntest error per seed, Bayesian minus coarse to fine: ' + ', '.join(f'{d:+.1%}' for d in diff))

# the methods part of the last full run when only the width part runs
txt = OUT.read_text().split('\n\nresnet18')[0].rstrip('\n') if WIDTH_ONLY else methods_text(pd.DataFrame(rows))

# ---- layer size of a timm ResNet: `width` scales its stage channels (what each trial costs and reaches)
from glamdebug.tune import Choice
r18 = defaults_learner(dls, arch='resnet18').fast()
wt = pd.concat([r18.tune(['width'], space={'width': Choice(w)}, n_trials=1, rounds=1, epochs=EPOCHS, progress=False).trials
                for w in (0.25, 0.5, 2.0)])  # each: the baseline (width 1) and one trial at width w
wt = wt.drop_duplicates('width').sort_values('width')[['width', 'train_loss', 'valid_error', 'seconds']]
wt['seconds_vs_width_1'] = wt.seconds/wt.set_index('width').seconds[1.0]
txt += (f'\n\nresnet18 (pretrained=False) on the same data, tune([\'width\']): stage channels x width, one trial per width, '
        f'{EPOCHS} epochs each\n' + wt.to_string(index=False, float_format=lambda v: f'{v:.3g}'))
print(txt)
OUT.write_text(txt + '\n')
