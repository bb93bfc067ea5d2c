"""Choosing what to label next, on real training: a model trained on 100 labelled digits picks from the other training
digits (their labels kept aside). The least sure picks are where it errs; with every pool image present four times
(faint noise: a run of near-identical pages), margin spends its picks on copies and BADGE does not; the `label-next`
command writes rows that go back into the collection, and a second run does not pick them again."""
import json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from fastai.torch_core import set_seed
from glamdebug.data import read_collection
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls
from glamdebug.active import ActiveReport

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


@pytest.fixture(scope='module')
def setup(digits):
    "A model trained on 100 labelled training digits (120 steps), and the other training digits as the unlabelled pool"
    tmp, df = digits
    root = Path(df.attrs['path'])
    tr = df.index[df.split == 'train']
    lab = np.random.default_rng(0).choice(tr, 100, replace=False)
    sub = df[(df.split != 'train') | df.index.isin(lab)]
    set_seed(0, reproducible=True)
    learn = defaults_learner(cached_dls(sub, path=root, size=SIZE, bs=32, cache_dir=tmp/'cache', progress=False))
    with learn.no_bar(), learn.no_logging(): learn.fit(40)
    pool = df.loc[[i for i in tr if i not in set(lab)]]
    truth = {str(root/f): l for f, l in zip(pool.fname, pool.label)}
    return learn, root, pool, truth


def error_on(t, truth): return float(np.mean([truth[f] != p for f, p in zip(t.file, t.prediction)]))


def test_the_least_sure_are_where_the_model_errs(setup):
    learn, root, pool, truth = setup
    files = list(truth)
    reps = {s: learn.label_next(files, n=100, strategy=s, progress=False) for s in ('margin', 'badge', 'random')}
    assert all(isinstance(r, ActiveReport) and r.n_picked == 100 for r in reps.values())
    base = error_on(reps['random'].items, truth)   # the model's error on the whole pool
    err = {s: error_on(r.picked, truth) for s, r in reps.items()}
    assert 0.03 < base < 0.5, base
    assert err['margin'] > 2.5*base and err['badge'] > 2*base, (err, base)
    assert err['random'] < err['margin'] and err['random'] < err['badge'], err
    assert reps['badge'].extra['median_margin_picked'] < 0.5*reps['badge'].extra['median_margin_pool']
    assert reps['margin'].picked.margin.max() <= reps['margin'].items.margin.nsmallest(100).max() + 1e-6
    # every picked item is one of the pool's, once
    assert all(r.picked.file.is_unique and r.picked.file.isin(files).all() for r in reps.values())
    assert reps['badge'].valid_error < 0.3 and 'poor guide' not in reps['badge'].summary
    # a model that has learnt nothing: its uncertainty is no guide, and the summary says so
    set_seed(1, reproducible=True)
    blank = defaults_learner(learn.dls)
    weak = blank.label_next(files[:200], n=20, progress=False)
    assert weak.valid_error > 0.5 and 'poor guide' in weak.summary and 'random' in weak.summary, weak.summary


def test_badge_does_not_spend_labels_on_copies(setup, tmp_path):
    "Near-identical pages: the least sure page comes four times; margin picks its copies, BADGE picks other pages"
    learn, root, pool, truth = setup
    rng = np.random.default_rng(0)
    files, orig = [], {}
    for i, f in enumerate(pool.fname.iloc[:300]):
        a = np.asarray(Image.open(root/f).convert('L')).astype(float)
        for j in range(4):
            dst = tmp_path/f'{i:04d}_{j}.png'
            Image.fromarray((a if j == 0 else (a + rng.normal(0, 4, a.shape)).clip(0, 255)).round().astype(np.uint8)).save(dst)
            files.append(dst); orig[str(dst)] = i
    n = 60
    distinct = {s: learn.label_next(files, n=n, strategy=s, progress=False).picked.file.map(orig).nunique() for s in ('margin', 'badge')}
    assert distinct['margin'] <= 0.5*n, distinct    # the planted trap: copies of the same few pages
    assert distinct['badge'] >= 0.9*n, distinct
    # the clean case: one file per page, no copy to avoid; both pick n different pages
    one = files[::4]
    assert all(learn.label_next(one, n=n, strategy=s, progress=False).picked.file.nunique() == n for s in ('margin', 'badge'))




def test_command_rows_go_back_into_the_collection(digits, tmp_path, cli):
    tmp, df = digits
    root = Path(df.attrs['path'])
    test = df[df.split == 'test']
    (tmp_path/'pool').mkdir()
    for f in test.fname: (tmp_path/'pool'/f.replace('/', '_')).write_bytes((root/f).read_bytes())
    (tmp_path/'pool'/'broken.png').write_bytes(b'not a png')
    out = tmp_path/'to_label.csv'
    r = cli('label-next', root, tmp_path/'pool', '-n', 30, '--epochs', 3, '--size', SIZE, '-o', out, '--json')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['picked'] == 30 and d['unreadable'] == 1 and d['candidates'] == len(test), d
    s = pd.read_csv(out, dtype={'label': str})
    assert len(s) == 30 and list(s.columns) == ['fname', 'label', 'split', 'prediction', 'runner_up', 'confidence']
    assert (s.split == 'train').all() and s.label.isna().all() and s.fname.is_unique
    assert not s.fname.str.endswith('broken.png').any()
    # a cataloguer fills in the labels; the rows join the collection's training split
    s['label'] = s.fname.map(lambda f: Path(f).name.split('_')[2])   # images_test_<label>_<n>.png
    col = pd.concat([df[['fname', 'label', 'split']], s[['fname', 'label', 'split']]])
    col.to_csv(root/'grown.csv', index=False)
    back = read_collection(root/'grown.csv', progress=False)
    assert (back.split == 'train').sum() == (df.split == 'train').sum() + 30
    # asked again with the grown collection: the labelled files are named, not picked twice
    out2 = tmp_path/'next.csv'
    r = cli('label-next', root/'grown.csv', tmp_path/'pool', '-n', 30, '--epochs', 3, '--size', SIZE, '-o', out2, '--json')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['in_collection'] == 30 and d['candidates'] == len(test) - 30, d
    s2 = pd.read_csv(out2, dtype={'prediction': str, 'runner_up': str})
    assert not set(s2.fname) & set(s.fname)
    # only the classes asked for: every pick is guessed as 3 or 8, or has one as runner-up
    r = cli('label-next', root/'grown.csv', tmp_path/'pool', '-n', 10, '--classes', '3,8', '--epochs', 3, '--size', SIZE, '--json')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['picked'] == 10 and d['candidates'] < len(test) - 30
    assert all({row['prediction'], row['runner_up']} & {'3', '8'} for row in d['table']), d['table']
    for args, msg in [(('-n', 0), '-n must be'), (('-o', root/'grown.csv'), 'grown.csv'), (('--strategy', 'entropy'), 'entropy'),
                      (('--classes', '3,eight'), "'eight'")]:
        r = cli('label-next', root/'grown.csv', tmp_path/'pool', '--epochs', 1, '--size', SIZE, *args)
        assert r.returncode != 0 and msg in r.stderr and 'Training' not in r.stdout, (args, r.stdout, r.stderr)
    r = cli('label-next', root, tmp_path/'nowhere', '--epochs', 1)
    assert r.returncode != 0 and 'nowhere' in r.stderr
