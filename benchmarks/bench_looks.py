"""Benchmark `learn.where_it_looks()`: does it find a class told by its margins, does it stay quiet otherwise, what it costs.

1. Detection and false alarms: a colour target (four squares, a twelfth of the image high) stamped in the bottom-left
   corner of every image of one class in the train and valid splits, never in the test split (the next delivery
   from another stand); and, separately, a grey scale (eight steps) along the whole bottom edge instead. Two collections: the shipped sample collection (6 classes, 64 px, trained at 32 px) and, when
   present, ../shared/data/oracle-mnist (10 classes of real 28 px scans, 200 per class for training, the rest cut
   into valid and test). Two recipes: the version-zero one (Adam 3e-4, constant) and one-cycle at 3e-3. Each seed
   trains the same model on the clean and on each planted collection; the report's flagged classes are counted, and
   the test error of the planted class (no artefact there) is measured, with the target hidden (`MaskMargins`) too.
2. Cost: `where_it_looks` (8×8 patches: 66 forward passes per image, batched) against one plain fastai
   `get_preds` pass over the whole valid split, per image, in the same run.

Usage: python benchmarks/bench_looks.py [--seeds 3] [--out benchmarks/results/looks.txt]
"""
import argparse, contextlib, io, os, platform, shutil, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
from fastai.vision.all import set_seed
from glamdebug.core import atomic_write
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.samples import sample_collection
from glamdebug.looks import MaskMargins

warnings.filterwarnings('ignore')
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'benchmarks'))
from oracle_merge import ORACLE, oracle_collection  # noqa: E402

COLOURS = [(200, 30, 30), (30, 160, 40), (30, 60, 200), (20, 20, 20)]


def stamp(fn):
    "A colour target in the bottom-left corner of image file `fn` (rewritten as RGB)"
    a = np.array(Image.open(fn).convert('RGB'))
    h = a.shape[0]; s = max(2, h//12)
    for i, c in enumerate(COLOURS): a[h-s-1:h-1, 1+i*s:1+(i+1)*s] = c
    Image.fromarray(a).save(fn)


def strip(fn):
    "A grey scale (8 steps, black to white) along the whole bottom edge of image file `fn` (rewritten as RGB)"
    a = np.array(Image.open(fn).convert('RGB'))
    h, w = a.shape[:2]; s = max(2, h//12)
    for i in range(8): a[h-s-1:h-1, i*w//8:(i+1)*w//8] = int(255*i/7)
    Image.fromarray(a).save(fn)

ARTEFACTS = dict(target=stamp, strip=strip)


def planted_copy(df, root, dst, label, artefact='target'):
    "A copy of the collection's files under `dst` with `artefact` on `label`'s train and valid images; the table pointing there"
    shutil.copytree(root, dst)
    for r in df[(df.label == label) & df.split.isin(['train', 'valid'])].itertuples(): ARTEFACTS[artefact](Path(dst)/r.fname)
    out = df.copy(); out.attrs = dict(df.attrs); out.attrs['path'] = str(dst)
    return out


def train(df, path, seed, recipe, size, batch_tfms=None):
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(df, path, size=size, bs=32, seed=seed, batch_tfms=batch_tfms))
    with contextlib.redirect_stdout(io.StringIO()), learn.no_bar(), learn.no_logging():
        if recipe == 'v0': learn.fit(20)
        else: learn.fit_one_cycle(12, 3e-3)
    return learn


def valid_error(learn):
    with learn.no_bar(): return float(learn.get_split_preds('valid').error)


def class_error(learn, split, label):
    with learn.no_bar(): p = learn.get_split_preds(split)
    return float(p.per_class().loc[label, 'error'])


def collections(tmp):
    out = [('sample', read_collection(sample_collection()/'collection.csv', progress=False), sample_collection(), 'cover', 32)]
    if ORACLE.exists():
        df = oracle_collection(tmp/'oracle')
        va = df.index[df.split == 'valid']
        df.loc[va[::2], 'split'] = 'test'   # every other held-out scan: the next delivery
        out.append(('oracle-mnist', df, tmp/'oracle', 'moon', 28))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'looks.txt'))
    a = ap.parse_args()
    torch.set_num_threads(2)
    lines = []
    def say(s=''): print(s, flush=True); lines.append(s)
    say(f'# where_it_looks: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {a.seeds} seeds, '
        f'{time.strftime("%Y-%m-%d")}')
    tmp = Path(tempfile.mkdtemp())
    rows, costs = [], []
    try:
        for name, df, root, label, size in collections(tmp):
            planted = {k: planted_copy(df, root, tmp/f'{name}-{k}', label, k) for k in ARTEFACTS}
            for recipe in ('v0', 'one-cycle'):
                for seed in range(a.seeds):
                    for cond, d in (('clean', df), *planted.items()):
                        learn = train(d, d.attrs.get('path', root), seed, recipe, size)
                        t0 = time.perf_counter(); rep = learn.where_it_looks(progress=False, seed=seed); t_looks = time.perf_counter() - t0
                        with learn.no_bar():
                            t0 = time.perf_counter(); learn.get_preds(dl=learn.dls.valid); t_fastai = time.perf_counter() - t0
                        costs.append(dict(collection=name, n_images=len(rep.items), n_valid=len(learn.dls.valid_ds),
                                          looks_s=t_looks, fastai_s=t_fastai))
                        pc = rep.per_class.set_index('class')
                        row = dict(collection=name, label=label, recipe=recipe, seed=seed, condition=cond,
                                   valid_error=valid_error(learn), flagged=','.join(rep.flagged),
                                   share=float(pc.loc[label, 'margin_share']), spot=float(pc.loc[label, 'spot_share']),
                                   side=float(pc.loc[label, 'side_share']), drop=float(pc.loc[label, 'margin_drop']),
                                   others_max_share=float(pc.drop(label).margin_share.max()),
                                   others_max_spot=float(pc.drop(label).query('margin_drop >= 0.02').spot_share.max()),
                                   others_max_side=float(pc.drop(label).query('margin_drop >= 0.02').side_share.max()),
                                   test_error_class=class_error(learn, 'test', label))
                        if cond == 'target':
                            masked = train(d, d.attrs['path'], seed, recipe, size, batch_tfms=[MaskMargins(1/8)])
                            row['test_error_class_masked'] = class_error(masked, 'test', label)
                            row['flagged_masked'] = ','.join(masked.where_it_looks(progress=False, seed=seed).flagged)
                        rows.append(row)
                        print(row, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t = pd.DataFrame(rows)
    say("\n## Every run (share, spot, side: the planted class's share of the occlusion drop in the margins, in its best "
        "half-side stretch of them, in its best side-long stretch; drop: the margin patches' drops added up)")
    with pd.option_context('display.width', 250, 'display.max_columns', 30):
        say(t.drop(columns='label').to_string(index=False, float_format=lambda v: f'{v:.3f}'))
    say('\n## Summary per collection and recipe (the rule: spot >= 0.5 or side >= 0.7, and drop >= 0.02)')
    for (c, r), g in t.groupby(['collection', 'recipe'], sort=False):
        label = g.label.iloc[0]
        cl = g[g.condition == 'clean']
        say(f'- {c}, {r}: clean runs that flag a class: {(cl.flagged != "").sum()}/{len(cl)}; valid error {cl.valid_error.mean():.1%}, '
            f'test error of {label} {cl.test_error_class.mean():.1%}; largest spot and side share of a class with drop >= 0.02 '
            f'(the planted class aside, every run): {g.others_max_spot.max():.0%}, {g.others_max_side.max():.0%}')
        for k in ARTEFACTS:
            pl = g[g.condition == k]
            hit = pl.flagged.str.split(',').map(lambda f: label in f).sum()
            other = pl.flagged.str.split(',').map(lambda f: len([x for x in f if x and x != label])).sum()
            extra = (f'; test error of {label} (no {k} in test) {pl.test_error_class.mean():.1%}, {pl.test_error_class_masked.mean():.1%} '
                     f'with MaskMargins(1/8) (flagged then: {(pl.flagged_masked != "").sum()}/{len(pl)})') if k == 'target' else \
                    f'; test error of {label} {pl.test_error_class.mean():.1%}'
            say(f'  - {k} on {label}: flagged in {hit}/{len(pl)} runs, {other} other classes flagged; spot {pl.spot.min():.0%}–{pl.spot.max():.0%}, '
                f'side {pl.side.min():.0%}–{pl.side.max():.0%}; valid error {pl.valid_error.mean():.1%}{extra}')
    cst = pd.DataFrame(costs).groupby('collection', sort=False).median()
    say('\n## Cost (median over runs): where_it_looks vs one plain fastai get_preds pass over the valid split')
    for c, r in cst.iterrows():
        per_l, per_f = r.looks_s/r.n_images*1e3, r.fastai_s/r.n_valid*1e3
        say(f'- {c}: where_it_looks {r.looks_s:.2f} s for {int(r.n_images)} images ({per_l:.1f} ms/image, 66 forward passes each); '
            f'fastai get_preds {r.fastai_s:.2f} s for {int(r.n_valid)} images ({per_f:.2f} ms/image); '
            f'ratio per image {per_l/per_f:.1f}× (66× if batching gained nothing)')
    atomic_write(a.out, lambda f: f.write('\n'.join(lines) + '\n'))
    print(f'wrote {a.out}')


if __name__ == '__main__': main()
