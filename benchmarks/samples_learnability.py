"""Is the sample collection learnable but not trivial?

Trains glamdebug's version-zero model (`defaults_learner(dls, 'lenet')`: LeNet-like CNN from scratch, Adam 3e-4,
no normalisation, no augmentation) on the shipped `data/samples` for a few settings and seeds, and prints the
error on train / valid / test / test_shifted with the most-confused pair of each evaluation split.
What should hold: most classes right, `blank/cover` the most-confused pair (or tied), `test_shifted` error well
above `test` error.

    OMP_NUM_THREADS=1 python benchmarks/samples_learnability.py [--quick] [--out benchmarks/results/samples_learnability.txt]
"""
import argparse, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from fastai.torch_core import set_seed
from glamdebug.data import read_collection, collection_dls, split_dl
from glamdebug.models import defaults_learner
from glamdebug.samples import sample_collection

SETTINGS = [  # (size, epochs, lr, seed)
    (32, 8, 3e-4, 0), (32, 8, 3e-4, 1), (32, 8, 3e-4, 2),
    (64, 8, 3e-4, 0), (64, 8, 3e-4, 1), (64, 8, 3e-4, 2),
    (64, 12, 3e-4, 0), (64, 12, 3e-4, 1), (64, 12, 3e-4, 2),
    (64, 10, 1e-3, 0),
]

def top_pairs(y, p, vocab, n=2):
    "The `n` most-confused unordered label pairs as 'count a/b'"
    k = len(vocab); cm = np.zeros((k, k), int)
    np.add.at(cm, (y, p), 1)
    pairs = sorted(((cm[i, j] + cm[j, i], f'{vocab[i]}/{vocab[j]}') for i in range(k) for j in range(i + 1, k)), reverse=True)
    return ', '.join(f'{c} {s}' for c, s in pairs[:n] if c)

def run(df, size, epochs, lr, seed):
    set_seed(seed, reproducible=True)
    dls = collection_dls(df, size=size, bs=32)
    learn = defaults_learner(dls, 'lenet', lr=lr)
    t = time.time()
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    row = dict(size=size, epochs=epochs, lr=lr, seed=seed, fit_s=round(time.time() - t))
    for sp in ('train', 'valid', 'test', 'test_shifted'):
        with learn.no_bar(): probs, y = learn.get_preds(dl=split_dl(dls, sp))
        p = probs.argmax(1).numpy(); y = y.numpy()
        row[sp] = round(float((p != y).mean()), 3)
        if sp != 'train': row[f'top {sp}'] = top_pairs(y, p, list(dls.vocab))
    return row

if __name__ == '__main__':
    warnings.filterwarnings('ignore')
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='first setting only')
    ap.add_argument('--out', default=None, help='also write the table to this file')
    a = ap.parse_args()
    torch.set_num_threads(1)
    path = sample_collection()
    df = read_collection(path/'collection.csv', check_images=False)
    counts = df.groupby(['split', 'label']).size().unstack()
    rows = []
    for s in SETTINGS[:1] if a.quick else SETTINGS:
        rows.append(run(df, *s)); print(rows[-1], flush=True)
    res = pd.DataFrame(rows)
    with pd.option_context('display.width', 250, 'display.max_columns', 20, 'display.max_colwidth', 40):
        txt = (f'sample collection {path} ({len(df)} images; per class: ' +
               ', '.join(f'{sp} {int(counts.loc[sp].iloc[0])}' for sp in counts.index) + ')\n'
               "model: defaults_learner(dls, 'lenet') (Adam, wd 0, no normalisation/augmentation), bs 32, CPU 1 thread\n\n"
               + res.to_string(index=False) + '\n\nmean errors: ' +
               ', '.join(f'{sp} {res[sp].mean():.3f}' for sp in ('train', 'valid', 'test', 'test_shifted')) + '\n')
    print(txt)
    if a.out: Path(a.out).write_text(txt)
