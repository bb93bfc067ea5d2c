"""Error analysis and label merging on real scans: ../shared/data/oracle-mnist (3,000 oracle-bone characters, 10 classes).

Trains the version-zero defaults model (`defaults_learner`: LeNet-like, Adam 3e-4, no regularisation, no normalisation)
on a stratified train part (200 per class), interprets the 1,000 held-out scans once, lists the most-confused pairs,
asks `suggest_merges` for a merge, reports the merged error from the kept probabilities (no retraining), then applies the
merge to the collection table with `LabelMerge` and retrains the same recipe (same seeds) to measure the error after.
`cleanlab.dataset.find_overlapping_classes` is run on the same predictions, when cleanlab is installed, and the rankings
compared. The same analysis (without retraining) runs on the shipped sample collection (data/samples).

    python benchmarks/oracle_merge.py [--epochs 20] [--seeds 0 1] [--out benchmarks/results/oracle_merge.txt]

The data stay outside the project: PNGs are written to a temporary folder. Skips cleanly when the data are absent.
"""
import argparse, gzip, io, os, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch

warnings.filterwarnings('ignore')
ROOT = Path(__file__).resolve().parents[1]
ORACLE = ROOT.parent/'shared'/'data'/'oracle-mnist'
# class names as listed by the Oracle-MNIST project (label code -> character meaning)
NAMES = ['big', 'sun', 'moon', 'cattle', 'next', 'field', 'not', 'arrow', 'time', 'wood']


class Tee:
    def __init__(self): self.buf = io.StringIO()
    def __call__(self, *args):
        s = ' '.join(str(a) for a in args)
        print(s, flush=True); self.buf.write(s + '\n')

out = Tee()


def read_idx(folder):
    with gzip.open(folder/'t10k-images-idx3-ubyte.gz') as f: X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder/'t10k-labels-idx1-ubyte.gz') as f: y = np.frombuffer(f.read(), np.uint8, offset=8)
    return X, y


def oracle_collection(tmp, n_train=200, seed=0):
    "Write the scans as PNGs under `tmp` and return a collection table (fname, label, split), stratified train/valid"
    from PIL import Image
    X, y = read_idx(ORACLE)
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(10):
        idx = rng.permutation(np.nonzero(y == c)[0])
        for r, i in enumerate(idx):
            fn = f'{NAMES[c]}/{i:04d}.png'
            (tmp/NAMES[c]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(X[i]).save(tmp/fn)
            rows.append(dict(fname=fn, label=NAMES[c], split='train' if r < n_train else 'valid'))
    df = pd.DataFrame(rows)
    df.attrs['path'] = str(tmp)
    return df


def train(df, path, epochs, seed, size):
    from glamdebug.data import collection_dls
    from glamdebug.models import defaults_learner
    from fastai.torch_core import set_seed
    set_seed(seed, reproducible=True)
    dls = collection_dls(df, path=path, size=size, bs=64)
    learn = defaults_learner(dls)
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn


def cleanlab_compare(interp, ours, top=8):
    "cleanlab's `find_overlapping_classes` on the same predictions, beside our ranking"
    try: from cleanlab.dataset import find_overlapping_classes
    except ImportError:
        out('cleanlab is not installed: comparison skipped (pip install cleanlab)'); return None
    ov = find_overlapping_classes(labels=interp.targs.numpy(), pred_probs=interp.probs.numpy())
    v = interp.vocab
    cl = [frozenset((v[int(a)], v[int(b)])) for a, b in zip(ov['Class Index A'], ov['Class Index B'])]
    ov = ov.assign(pair=[' / '.join(sorted(p)) for p in cl])
    mine = [frozenset((a, b)) for a, b in zip(ours.label_a, ours.label_b)]
    ours = ours.assign(pair=[' / '.join(sorted(p)) for p in mine])
    ours['cleanlab_rank'] = [cl.index(p) + 1 if p in cl else None for p in mine]
    out('\ncleanlab find_overlapping_classes (same predictions), top pairs:')
    out(ov[['pair', 'Num Overlapping Examples', 'Joint Probability']].head(top).to_string(index=False))
    out('\nglamdebug pairs by symmetric confusion rate, with the rank cleanlab gives each pair:')
    out(ours[['pair', 'count', 'rate', 'cleanlab_rank']].head(top).to_string(index=False))
    for n in (1, 3, 5):
        a, b = set(mine[:n]), set(cl[:n])
        out(f'top-{n} overlap: {len(a & b)}/{n}' + (f"  (only glamdebug: {', '.join(' / '.join(sorted(p)) for p in a - b) or '-'};"
                                                   f" only cleanlab: {', '.join(' / '.join(sorted(p)) for p in b - a) or '-'})" if a != b else ''))
    return ov


def analyse(interp, title):
    from glamdebug.interpret import suggest_merges
    out(f'\n=== {title} ===')
    out(repr(interp))
    out('\nmost-confused pairs (actual -> predicted):')
    out(interp.confused_pairs().head(10).to_string(index=False, float_format=lambda x: f'{x:.3f}'))
    ms = suggest_merges(interp)
    out('\n' + ms.to_text())
    allp = suggest_merges(interp, min_rate=0, min_count=1, min_lift=0).pairs
    cleanlab_compare(interp, allp)
    return ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=20)
    ap.add_argument('--seeds', type=int, nargs='*', default=[0, 1])
    ap.add_argument('--size', type=int, default=28)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'oracle_merge.txt'))
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from glamdebug.interpret import GlamInterpretation, merged_error
    from glamdebug.merge import LabelMerge
    t0 = time.time()
    if not ORACLE.exists():
        out(f'{ORACLE} is absent: oracle-mnist part skipped')
    else:
        tmp = Path(tempfile.mkdtemp(prefix='oracle_'))
        df = oracle_collection(tmp)
        out(f'oracle-mnist: {len(df)} scans, {df.label.nunique()} classes; train {int((df.split=="train").sum())}, '
            f'valid {int((df.split=="valid").sum())}; defaults_learner (lenet, Adam 3e-4), {a.epochs} epochs, size {a.size}, seeds {a.seeds}')
        res = []
        for seed in a.seeds:
            learn = train(df, tmp, a.epochs, seed, a.size)
            with learn.no_bar(): interp = GlamInterpretation.from_learner(learn)
            if seed == a.seeds[0]:
                ms = analyse(interp, f'oracle-mnist, seed {seed}: valid split')
                if not ms.groups:
                    out('no merge suggested: nothing to retrain'); break
                lm = LabelMerge.from_suggestions(ms)
                out(f'\nLabelMerge from the suggestions: {lm.mapping}')
                merged_df = lm.apply(df)
                merged_df.attrs['path'] = str(tmp)
                out('rows relabelled: ' + ', '.join(f'{k}: {v}' for k, v in (merged_df.label != merged_df.label_original).groupby(merged_df.label_original).sum().items() if v))
            before = interp.error
            pred_after = merged_error(interp.probs, interp.targs, interp.vocab, ms.groups)
            m_learn = train(merged_df, tmp, a.epochs, seed, a.size)
            with m_learn.no_bar(): after = GlamInterpretation.from_learner(m_learn)
            res.append(dict(seed=seed, error_before=before, merged_no_retraining=pred_after, after_retraining=after.error,
                            n_classes_after=after.k))
            out(f'seed {seed}: valid error {before:.3f} -> merged from kept probabilities {pred_after:.3f} -> '
                f'retrained on merged labels {after.error:.3f} ({after.k} classes)')
        if res:
            r = pd.DataFrame(res)
            out('\nSummary (valid error, 1,000 scans; same recipe and seed before/after):')
            out(r.to_string(index=False, float_format=lambda x: f'{x:.3f}'))
            out('mean: ' + ', '.join(f'{c} {r[c].mean():.3f}' for c in ('error_before', 'merged_no_retraining', 'after_retraining')))
    # the shipped sample collection: same analysis, no retraining
    samples = ROOT/'data'/'samples'/'collection.csv'
    if samples.exists():
        from glamdebug.data import read_collection
        sdf = read_collection(samples)
        learn = train(sdf, sdf.attrs['path'], max(a.epochs, 20), a.seeds[0], 32)
        with learn.no_bar(): si = GlamInterpretation.from_learner(learn)
        analyse(si, 'sample collection (data/samples), valid split')
    out(f'\n(total {time.time()-t0:.0f} s on a 2-core CPU shared with other sessions)')
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(out.buf.getvalue())


if __name__ == '__main__': main()
