"""CPU benchmark for comparing to a known result: `learn.baseline_report()` against what a user writes by hand with
plain fastai and scikit-learn, side by side in one run.

1. Detection on real training (version-zero LeNet, Adam 3e-4, 8 epochs, 3 seeds): scikit-learn's digits at 16 px and,
   when ../shared/data/oracle-mnist is there, its real scans at 28 px (200 training scans per class). Three models each:
   - healthy: as is;
   - planted: a learning rate 1,000 times too small (3e-7): runs without error, the loss falls slowly;
   - planted: a preprocessing step only training batches get (the images inverted; inference does not invert).
   Both analyses read the same model predictions:
   - plain: the training and valid batches as fastai's loaders give them (`for xb, yb in dls.train`), flattened at full
     size, a logistic regression (standardised, C=1) and a 5-nearest-neighbour fitted on them, and the model called worse
     when its valid error is above the best baseline's (fastai has no baseline comparison);
   - glamdebug: `learn.baseline_report()` (thumbnails of 4, 8, 16 px read as inference sees the images, paired McNemar
     tests, Holm-adjusted).
   Counted: the planted models called worse (found) and the healthy ones called worse (false alarms).
2. Scale: generated sample collections (64 px, six classes) of 600 to 9,600 training items: seconds for one fastai
   training epoch, one inference pass over valid, the plain analysis (all of training, full-size pixels) and
   `baseline_report` (its training sample bounded at 5,000), first call and again after more training (baselines kept),
   and the memory the features take.
`python benchmarks/bench_baselines.py`; writes benchmarks/results/baselines.txt.
"""
import sys, time, tempfile, warnings, platform, os
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from fasttransform import Transform
from fastai.vision.all import TensorImage, set_seed
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from glamdebug.data import read_collection, collection_dls
from glamdebug.samples import digits_collection, make_sample_collection
from glamdebug.models import defaults_learner
import glamdebug.baselines  # noqa: F401 (Learner.baseline_report)

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection
torch.set_num_threads(2)
SEEDS = (0, 1, 2)
OUT = []


def say(*a):
    s = ' '.join(str(o) for o in a); print(s, flush=True); OUT.append(s)


class InvertTrain(Transform):
    "The planted train/inference mismatch: training batches are inverted, inference batches are not"
    split_idx, order = 0, 99
    def encodes(self, x: TensorImage): return 1 - x


def train(df, size, seed, bug, epochs=8, path=None):
    set_seed(seed, reproducible=True)
    dls = collection_dls(df, size=size, bs=32, path=path, batch_tfms=[InvertTrain()] if bug == 'invert' else None)
    learn = defaults_learner(dls, **(dict(lr=3e-7) if bug == 'slow lr' else {}))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn


def flat(dl):
    xs, ys = [], []
    for xb, yb in dl: xs.append(xb.flatten(1).float().numpy()); ys.append(yb.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def plain(learn):
    "By hand: full-size pixels as fastai's loaders give them, logistic regression and 5-NN, errors compared as numbers"
    Xtr, ytr = flat(learn.dls.train)
    Xva, yva = flat(learn.dls.valid)
    errs = {}
    for name, clf in [('logistic', make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=300))), ('5-NN', KNeighborsClassifier(5))]:
        errs[name] = float((clf.fit(Xtr, ytr).predict(Xva) != yva).mean())
    return errs, Xtr.nbytes + Xva.nbytes


def detection():
    say('## 1. Detection: the model called worse than a simple baseline (version-zero LeNet, 8 epochs)')
    tmp = Path(tempfile.mkdtemp())
    data = [('digits 16 px', read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False), 16, None)]
    if ORACLE.exists():
        o = oracle_collection(tmp/'oracle'); data.append(('oracle 28 px', o, 28, tmp/'oracle'))
    else: say('(oracle-mnist not found: digits only)')
    rows = []
    for name, df, size, path in data:
        for bug in ('healthy', 'slow lr', 'invert'):
            for seed in SEEDS:
                learn = train(df, size, seed, bug, path=path)
                t = time.perf_counter(); rep = learn.baseline_report(progress=False); g = time.perf_counter() - t
                t = time.perf_counter(); errs, _ = plain(learn); pl = time.perf_counter() - t
                best = rep.table.set_index('baseline').loc[rep.best]
                rows.append(dict(data=name, model=bug, seed=seed, model_error=rep.model_error, plain_best=min(errs.values()),
                                 plain_worse=rep.model_error > min(errs.values()), glam_best=best.error, glam_best_is=rep.best,
                                 glam_verdict=rep.verdict, p=best.q, glam_s=g, plain_s=pl))
                r = rows[-1]
                say(f'  {name}, {bug}, seed {seed}: model {r["model_error"]:.3f}; plain best baseline {r["plain_best"]:.3f} → '
                    f'{"worse" if r["plain_worse"] else "not worse"}; glamdebug best {r["glam_best"]:.3f} ({r["glam_best_is"]}) → {r["glam_verdict"]} '
                    f'(p {r["p"]:.2g}); {g:.2f} s vs {pl:.2f} s')
    t = pd.DataFrame(rows)
    say('\n' + t.drop(columns=['glam_best_is']).to_string(index=False, float_format=lambda v: f'{v:.3g}'))
    planted, healthy = t[t.model != 'healthy'], t[t.model == 'healthy']
    summ = pd.DataFrame([
        dict(what='planted models called worse (found)', plain=f'{int(planted.plain_worse.sum())}/{len(planted)}', glamdebug=f'{int((planted.glam_verdict == "worse").sum())}/{len(planted)}'),
        dict(what='  of them: train-only preprocessing', plain=f'{int(planted[planted.model == "invert"].plain_worse.sum())}/{(planted.model == "invert").sum()}',
             glamdebug=f'{int((planted[planted.model == "invert"].glam_verdict == "worse").sum())}/{(planted.model == "invert").sum()}'),
        dict(what='healthy models called worse (false alarms)', plain=f'{int(healthy.plain_worse.sum())}/{len(healthy)}', glamdebug=f'{int((healthy.glam_verdict == "worse").sum())}/{len(healthy)}'),
        dict(what='healthy: verdicts', plain='-', glamdebug=', '.join(f'{k} {v}' for k, v in healthy.glam_verdict.value_counts().items())),
        dict(what='seconds per analysis (median)', plain=f'{t.plain_s.median():.2f}', glamdebug=f'{t.glam_s.median():.2f}'),
    ])
    say('\n' + summ.to_string(index=False))


def scale():
    say('\n## 2. Scale: generated sample collections at 64 px, six classes (seconds; ratios to one fastai training epoch)')
    rows = []
    for n_per in (100, 400, 1600):
        tmp = Path(tempfile.mkdtemp())
        make_sample_collection(tmp/'s', n_per_class=n_per, size=64, n_valid=0.25, n_test=0, progress=False)
        df = read_collection(tmp/'s'/'collection.csv', progress=False, check_images=False)
        set_seed(0, reproducible=True)
        learn = defaults_learner(collection_dls(df, size=64, bs=64))
        with learn.no_bar(), learn.no_logging():
            t = time.perf_counter(); learn.fit(1); ep = time.perf_counter() - t
            t = time.perf_counter(); learn.get_split_preds('valid'); inf = time.perf_counter() - t
            t = time.perf_counter(); rep = learn.baseline_report(progress=False); g1 = time.perf_counter() - t
            learn.fit(1)
            t = time.perf_counter(); learn.baseline_report(progress=False); g2 = time.perf_counter() - t
            t = time.perf_counter(); _, nbytes = plain(learn); pl = time.perf_counter() - t
        ntr = (df.split == 'train').sum()
        thumb = (rep.extra['n_train'] + (df.split == 'valid').sum())*3*(16*16 + 8*8 + 4*4)*4
        rows.append(dict(train_items=ntr, valid_items=(df.split == 'valid').sum(), epoch_s=ep, inference_s=inf, glam_first_s=g1, glam_again_s=g2, plain_s=pl,
                         glam_vs_epoch=g1/ep, plain_vs_epoch=pl/ep, glam_vs_plain=g1/pl, glam_MB=thumb/2**20, plain_MB=nbytes/2**20))
        say(f'  {ntr:,} training items: epoch {ep:.1f} s, glamdebug {g1:.1f} s (again {g2:.2f} s), plain {pl:.1f} s')
    say('\n' + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f'{v:.3g}'))


if __name__ == '__main__':
    say(f'bench_baselines: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, torch {torch.__version__}, '
        f'load average at start {os.getloadavg()[0]:.1f}')
    t0 = time.perf_counter()
    detection(); scale()
    say(f'\ntotal {time.perf_counter() - t0:.0f} s')
    (ROOT/'benchmarks'/'results'/'baselines.txt').write_text('\n'.join(OUT) + '\n')
