"""CPU benchmark for `learn.label_issues`: planted mislabels found, against plain fastai's usual move and cleanlab.

Finding mislabelled items trains `folds` models over the collection, so it scales with it. For each collection
(scikit-learn's digits at 16 px; oracle-mnist's real scans at 28 px when ../shared/data/oracle-mnist is there), 5 % of
the training and validation items get another label at random, and in one run, side by side:
  1. plain fastai, the usual move: one `Learner` on `ImageDataLoaders.from_df` trained on everything, the largest
     losses on the training and validation items (as many as `label_issues` flags: the same review budget);
  2. plain fastai by hand, out-of-fold: a `Learner` per fold on `ImageDataLoaders.from_df`, predictions on the held-out
     fold and on valid (the same job as `label_issues`, for the time ratio);
  3. `learn.label_issues` on `collection_dls` (the same decoding loader), and on `cached_dls` + `fast()`;
  4. cleanlab's `find_label_issues` on the same out-of-fold probabilities (when cleanlab is installed; not a dependency).
Two recipes: the version-zero one (Adam 3e-4), and one that memorises its training labels (3e-3, many epochs).
`python benchmarks/bench_labels.py`; writes benchmarks/results/labels.txt.
"""
import os, sys, time, tempfile, warnings
from pathlib import Path
from functools import partial
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from fastai.vision.all import ImageDataLoaders, Resize, ResizeMethod, Learner, CrossEntropyLossFlat, Adam, set_seed
from glamdebug.data import read_collection, collection_dls
from glamdebug.samples import digits_collection
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner, lenet_like
from glamdebug.labels import confident_suspects, fold_codes
import glamdebug.labels  # noqa: F401  (patches Learner.label_issues)

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection
torch.set_num_threads(2)
BS, FOLDS = 32, 4


def plant(df, share=0.05, seed=1):
    rng = np.random.default_rng(seed)
    out = df.copy(); out.attrs = dict(df.attrs)
    tv = np.flatnonzero(out.split.isin(['train', 'valid']).to_numpy())
    rows = rng.choice(tv, size=round(share*len(tv)), replace=False)
    vocab = sorted(out.label.astype(str).unique())
    labels = out.label.astype(str).to_numpy().copy()
    for i in rows: labels[i] = vocab[(vocab.index(labels[i]) + rng.integers(1, len(vocab))) % len(vocab)]
    out['label'] = labels
    return out, set(out.fname.iloc[rows])


def fastai_learner(tv, path, size, lr, bs=BS):
    dls = ImageDataLoaders.from_df(tv, path, fn_col='fname', label_col='label', valid_col='is_valid',
                                   item_tfms=Resize(size, method=ResizeMethod.Squish), bs=bs, num_workers=0)
    return Learner(dls, lenet_like(dls.c), loss_func=CrossEntropyLossFlat(), lr=lr,
                   opt_func=partial(Adam, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0.)), dls


def in_sample(df, size, lr, epochs):
    "fastai's usual move: train on everything, review the largest losses on train and valid; the items, largest loss first"
    path = Path(df.attrs['path'])
    tv = df[df.split.isin(['train', 'valid'])].assign(is_valid=lambda d: d.split == 'valid').reset_index(drop=True)
    t = time.perf_counter()
    set_seed(0, reproducible=True)
    learn, dls = fastai_learner(tv, path, size, lr)
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs)
        rows = pd.concat([tv[~tv.is_valid], tv[tv.is_valid]])
        _, _, losses = learn.get_preds(dl=dls.test_dl(rows, with_labels=True), with_loss=True)
    return list(rows.fname.iloc[losses.argsort(descending=True).numpy()]), time.perf_counter() - t


def by_hand_oof(df, size, lr, epochs):
    "The same job as label_issues, by hand with plain fastai: a Learner per fold; our rule on the probabilities"
    path = Path(df.attrs['path'])
    tr, va = df[df.split == 'train'].reset_index(drop=True), df[df.split == 'valid'].reset_index(drop=True)
    vocab = sorted(df.label.astype(str).unique())
    codes = tr.label.astype(str).map(vocab.index).to_numpy()
    fold = fold_codes(codes, FOLDS)
    t = time.perf_counter()
    probs, vprobs = np.zeros((len(tr), len(vocab))), np.zeros((len(va), len(vocab)))
    for f in range(FOLDS):
        set_seed(0, reproducible=True)
        tv = pd.concat([tr[fold != f].assign(is_valid=False), va.assign(is_valid=True)])
        learn, dls = fastai_learner(tv, path, size, lr)
        with learn.no_bar(), learn.no_logging():
            learn.fit(epochs)
            probs[fold == f] = learn.get_preds(dl=dls.test_dl(tr[fold == f], with_labels=True))[0].numpy()
            vprobs += learn.get_preds(dl=dls.valid)[0].numpy()/FOLDS
    p = np.concatenate([probs, vprobs])
    y = np.concatenate([codes, va.label.astype(str).map(vocab.index).to_numpy()])
    s, *_ = confident_suspects(p, y)
    return set(pd.concat([tr.fname, va.fname]).to_numpy()[s]), time.perf_counter() - t


def pr(found, planted, ranked=None):
    "Planted mislabels among `found`; with `ranked` (most suspicious first), the precision of its first len(planted)"
    hit = len(found & planted)
    d = dict(flagged=len(found), found=hit, recall=hit/len(planted), precision=hit/max(1, len(found)))
    if ranked is not None: d['precision_top_planted'] = len(set(ranked[:len(planted)]) & planted)/len(planted)
    return d


def compare(name, df, size, recipes, hand=True):
    noisy, planted = plant(df)
    out = [f'\n== {name}: {int((df.split == "train").sum())} train, {int((df.split == "valid").sum())} valid images at {size} px; '
           f'{len(planted)} planted mislabels (5 % of train and valid)']
    for rname, lr, epochs in recipes:
        rows = []
        t = time.perf_counter()
        cdls = cached_dls(noisy, size=size, bs=BS, cache_dir=Path(tempfile.mkdtemp()), progress=False)
        rep = defaults_learner(cdls, lr=lr).fast().label_issues(folds=FOLDS, epochs=epochs, splits=['valid'], progress=False)
        fast_s = time.perf_counter() - t
        ours = set(rep.table.item)
        n = len(ours)
        if hand:
            hand_found, hand_s = by_hand_oof(noisy, size, lr, epochs)
            rows.append(dict(what=f'plain fastai by hand, out-of-fold ({FOLDS} Learners) + the same rule', seconds=hand_s, vs_hand=1.0, **pr(hand_found, planted)))
            t = time.perf_counter()
            rep_c = defaults_learner(collection_dls(noisy, size=size, bs=BS), lr=lr).label_issues(folds=FOLDS, epochs=epochs, splits=['valid'], progress=False)
            col_s = time.perf_counter() - t
            rows.append(dict(what='learn.label_issues on collection_dls (same decoding loader)', seconds=col_s, vs_hand=col_s/hand_s, **pr(set(rep_c.table.item), planted)))
        rows.append(dict(what='learn.label_issues on cached_dls + fast() (cache build included)', seconds=fast_s,
                         vs_hand=fast_s/hand_s if hand else np.nan, **pr(ours, planted, list(rep.ranked().item))))
        ranked, ins_s = in_sample(noisy, size, lr, epochs)
        rows.append(dict(what=f'plain fastai, usual move: one Learner, top {n} losses on its own train+valid items', seconds=ins_s,
                         vs_hand=ins_s/hand_s if hand else np.nan, **pr(set(ranked[:n]), planted, ranked)))
        try:
            from cleanlab.filter import find_label_issues
            y = rep.all.code.to_numpy()
            for fb in ('confident_learning', 'prune_by_noise_rate'):
                m = find_label_issues(labels=y, pred_probs=rep.probs, filter_by=fb)
                cl = set(rep.all.item[m])
                rows.append(dict(what=f'cleanlab find_label_issues(filter_by={fb!r}), same probabilities', seconds=np.nan, vs_hand=np.nan,
                                 **pr(cl, planted), agree_with_ours=len(cl & ours)/max(1, len(cl | ours))))
        except ImportError: rows.append(dict(what='cleanlab not installed: comparison skipped'))
        out.append(f'\n-- recipe: {rname} (Adam {lr:g}, {epochs} epochs per model); out-of-fold error {rep.oof_error:.1%}\n'
                   + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f'{v:.3g}'))
        quiet = defaults_learner(cached_dls(df, size=size, bs=BS, cache_dir=Path(tempfile.mkdtemp()), progress=False), lr=lr).fast() \
            .label_issues(folds=FOLDS, epochs=epochs, splits=['valid'], progress=False)
        out.append(f'clean collection, same recipe: {len(quiet.table)} of {len(quiet.all)} items flagged '
                   f'({len(quiet.table)/len(quiet.all):.1%})')
    return '\n'.join(out)


tmp = Path(tempfile.mkdtemp())
parts = [f'learn.label_issues ({FOLDS} folds) vs plain fastai and cleanlab; LeNet-like, batch {BS}, 2 threads; load average '
         f'{os.getloadavg()[0]:.1f}. recall/precision: of the planted mislabels; vs_hand: time as a fraction of the hand '
         'out-of-fold loop; precision_top_planted: planted among the first k of the ranking (label_issues: report.ranked(), '
         'least confident in the given label first; fastai: largest loss first), k = the number planted; '
         'agree_with_ours: |both| / |either|.']
ddf = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
parts.append(compare("scikit-learn's digits", ddf, 16, [('version zero', 3e-4, 8), ('memorising', 3e-3, 40)]))
print(parts[-1], flush=True)
if ORACLE.exists():
    odf = oracle_collection(tmp/'oracle', n_train=200)
    parts.append(compare('oracle-mnist scans', odf, 28, [('version zero', 3e-4, 8)], hand=True))
    print(parts[-1], flush=True)
    parts.append(compare('oracle-mnist scans', odf, 28, [('trained longer', 1e-3, 20)], hand=False))
    print(parts[-1], flush=True)
else: parts.append(f'\n{ORACLE} is absent: the real-scan part is skipped')
txt = '\n'.join(parts)
(ROOT/'benchmarks'/'results'/'labels.txt').write_text(txt + '\n')
print(f'\nwrote {ROOT/"benchmarks"/"results"/"labels.txt"}')
