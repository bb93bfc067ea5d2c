"""Error by slice: a planted slice (a box scanned sideways, never seen in training) is found on real training, and named
in the error report's notes; the same column without the bug raises nothing; a slice that only holds harder classes is called a class mix, not blamed;
null columns stay under the false discovery rate; plain fastai loaders (`from_df`, `from_folder`) work; bad input is
named; the `slices` command works."""
import json
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from fastai.torch_core import set_seed
from fastai.vision.data import ImageDataLoaders
from fastai.vision.augment import Resize
from glamdebug.core import GlamError
from glamdebug.data import collection_dls
from glamdebug.models import defaults_learner
from glamdebug.preds import Preds
from glamdebug.slices import slice_errors, cmh_pvalues, SliceReport
import glamdebug.evaluate  # noqa: F401 (Learner.error_report)

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


def boxes(df, share=0.3, seed=0):
    "`df` with a `box` column: 'B' for `share` of the valid items and no training item, 'A' for the rest"
    rng = np.random.default_rng(seed)
    out = df.copy(); out['box'] = 'A'
    va = out.index[out.split == 'valid']
    out.loc[rng.choice(va, int(share*len(va)), replace=False), 'box'] = 'B'
    return out


def sideways(df, tmp):
    "`df` with the images of box B turned a quarter (a box scanned sideways), written as new files"
    out = df.copy()
    for i in out.index[out.box == 'B']:
        src = tmp/'digits'/out.at[i, 'fname']
        fn = out.at[i, 'fname'].replace('.png', '_side.png')
        Image.open(src).transpose(Image.Transpose.ROTATE_90).save(tmp/'digits'/fn)
        out.at[i, 'fname'] = fn
    return out


def trained(df, epochs=6, seed=0):
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(df, size=SIZE, bs=32))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn


def test_planted_slice_found_and_no_alarm_without_it(digits):
    tmp, df = digits
    clean = boxes(df)
    learn0 = trained(clean)
    rep0 = learn0.slice_report(by='box', progress=False)
    assert rep0.worse == [] and rep0.summary.startswith('No slice fails'), rep0.summary
    with learn0.no_bar(): assert not any('fails beyond what its classes explain' in n for n in learn0.error_report(goal=0.02).notes)
    bad = sideways(clean, tmp)
    learn = trained(bad)
    rep = learn.slice_report(progress=False)
    assert ('box', 'B') in rep.worse, rep.table.head()
    with learn.no_bar(): notes = learn.error_report(goal=0.02).notes   # the bias-variance report points to it (table columns only)
    assert any(n.startswith("`box` = 'B' fails beyond what its classes explain") and 'slice_report' in n for n in notes), notes
    r = rep.table.set_index(['column', 'value']).loc[('box', 'B')]
    assert r.train == 0 and r.error > r.expected + 0.2 and 'never saw it' in rep.summary
    assert rep.rows('box', 'B').fname.str.endswith('_side.png').all()
    assert len(rep.rows('box', 'B', rest=True)) == (bad.split == 'valid').sum() - r.n
    assert {'format', 'mode'} <= set(rep.skipped)   # every file a 16 px greyscale PNG: nothing to slice


def test_harder_classes_are_a_class_mix_not_the_slice(digits):
    "A shelf that holds the classes the model gets most wrong fails more overall, and the report says why"
    tmp, df = digits
    learn = trained(df, epochs=3)
    pc = learn.get_split_preds('valid').per_class().sort_values('error', ascending=False)
    hard = list(pc.index[:3])
    shelves = df[['fname']].assign(shelf=np.where(df.label.isin(hard), 'top', 'bottom'))   # a second list, keyed by file name
    rep = learn.slice_report(by='shelf', meta=shelves, files=False, progress=False)
    r = rep.table.set_index('value')
    assert r.at['top', 'error'] > 2*r.at['bottom', 'error'], r   # a plain groupby blames the top shelf
    assert set(r.verdict) == {'class mix'} and rep.worse == [], rep.summary
    assert "shelf='top' fails more than the rest" in rep.summary


def test_null_columns_stay_under_the_false_discovery_rate():
    "Forty columns unrelated to the errors, 12 % error in 5 unequal classes: at most one slice flagged, and p-values about uniform"
    rng = np.random.default_rng(3)
    n, k = 3000, 5
    targs = rng.integers(0, k, n)
    wrong = rng.random(n) < np.array([.05, .1, .12, .15, .2])[targs]
    probs = np.eye(k)[np.where(wrong, (targs + 1) % k, targs)]
    p = Preds.from_arrays(probs, targs, list('abcde'))
    meta = pd.DataFrame({f'c{j}': rng.choice(list('pqrs'), n, p=[.4, .3, .2, .1]) for j in range(40)})
    rep = slice_errors(p, meta)
    assert len(rep.table) == 160 and (rep.table.verdict != 'too few').all()
    assert (rep.table.verdict != 'ok').sum() <= 1, rep.table.head()
    assert 0.01 <= (rep.table.p_within < 0.05).mean() <= 0.10   # the uncorrected test holds its level


def test_cmh_matches_the_pooled_test_when_classes_do_not_matter():
    "With one class the Cochran-Mantel-Haenszel test is Yates' chi-square times (N-1)/N; with a class confound it parts from it"
    from scipy.stats import chi2_contingency, chi2
    n, e = np.array([[40], [160]]), np.array([[14], [30]])
    tab = np.array([[14, 26], [30, 130]])
    assert abs(cmh_pvalues(n, e)[0] - chi2.sf(chi2_contingency(tab)[0]*199/200, 1)) < 1e-12
    n2, e2 = np.array([[90, 10], [10, 90]]), np.array([[27, 1], [3, 9]])
    assert cmh_pvalues(n2, e2)[0] > 0.5


def test_plain_fastai_loaders(digits):
    "`ImageDataLoaders.from_df` (rows, extra columns) and `from_folder` (paths: file properties only)"
    tmp, df = digits
    t = boxes(df); t = t[t.split != 'test'].reset_index(drop=True)
    t['is_valid'] = t.split == 'valid'
    set_seed(0, reproducible=True)
    dls = ImageDataLoaders.from_df(t, tmp/'digits', fn_col='fname', label_col='label', valid_col='is_valid', item_tfms=Resize(SIZE), bs=32)
    learn = defaults_learner(dls)
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    rep = learn.slice_report(progress=False)
    assert 'box' in rep.columns and 'is_valid' in rep.skipped   # one value in valid
    assert rep.table.set_index(['column', 'value']).at[('box', 'B'), 'train'] == 0
    dls = ImageDataLoaders.from_folder(tmp/'digits'/'images', train='train', valid='valid', item_tfms=Resize(SIZE), bs=64)
    learn = defaults_learner(dls)
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    rep = learn.slice_report(progress=False)
    assert {'format', 'mode', 'long_side'} <= set(rep.skipped) and rep.items.file.str.endswith('.png').all()
    assert len(rep.items) == len(dls.valid_ds)
    with pytest.raises(GlamError, match="nothing to slice by 'box'"): learn.slice_report(by='box')


def test_bad_input_is_named(digits):
    tmp, df = digits
    learn = trained(boxes(df), epochs=1)
    n = (df.split == 'valid').sum()
    dup = df[['fname']].assign(tray=1); dup = pd.concat([dup, dup.head(1)])
    with pytest.raises(GlamError, match="meta lists '.*' more than once: one row per file"): learn.slice_report(meta=dup, files=False)
    with pytest.raises(GlamError, match=f'meta has 3 rows for {n} items'): learn.slice_report(meta=pd.DataFrame(dict(tray=[1, 2, 3])), files=False)
    with pytest.raises(GlamError, match="no split 'tset'|splits present"): learn.slice_report(split='tset')
    with pytest.raises(GlamError, match='min_items must be at least 1'): learn.slice_report(min_items=0, files=False)
    rep = learn.slice_report(by='box', files=False, progress=False)
    with pytest.raises(GlamError, match="no slice box='C'"): rep.show('box', 'C')
    with pytest.raises(GlamError, match="'tray' is not a sliced column"): rep.rows('tray', 1)
    p = Preds.from_arrays(np.eye(2)[[0, 1, 1]], [0, 1, 0], ['a', 'b'])
    with pytest.raises(GlamError, match="no column 'x' to slice by"): slice_errors(p, pd.DataFrame(dict(y=[1, 2, 3])), by='x')
    with pytest.raises(GlamError, match='without table rows'): slice_errors(p, pd.DataFrame(dict(y=['u', 'v', 'v']))).rows('y', 'u')


def test_slices_command(digits, tmp_path, cli):
    tmp, df = digits
    boxes(df)[['fname', 'label', 'split', 'box']].to_csv(tmp/'digits'/'boxes.csv', index=False)
    png = tmp_path/'slices.png'
    out = cli('slices', str(tmp/'digits'/'boxes.csv'), '--epochs', '1', '--by', 'box,format', '--size', str(SIZE), '--json', '--plot', str(png))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d['columns'] == ['box'] and d['skipped'] == {'format': 'one value'} and png.stat().st_size > 1000
    assert sorted(r['value'] for r in d['table']) == ['A', 'B']
    bad = cli('slices', str(tmp/'digits'/'boxes.csv'), '--by', 'shelf', '--epochs', '1', '--size', str(SIZE))
    assert bad.returncode == 2 and "nothing to slice by 'shelf'" in bad.stderr
    bad = cli('slices', str(tmp/'digits'/'boxes.csv'), '--split', 'tset', '--size', str(SIZE))
    assert bad.returncode == 2 and "no split 'tset' in the collection (before training)" in bad.stderr
