"""A trained model saved and put back on a table, on real training: a model that has memorised its 150 training digits
is checked against a table re-split since (the leaked items named, and the error on them apart from the rest), a model
trained on the fast-path cache comes back on the cache with the same answers, and the `train` command's model serves
`report --model`, `confidence --model` and refusals from a shell."""
import json, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fastai.torch_core import set_seed
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls, CachedDataLoaders
from glamdebug.saved import load_model

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


def run(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'glamdebug.cli', *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope='module')
def memorised(digits):
    "A LeNet trained to zero training error on 150 training digits (the rest of the training split left out), exported"
    tmp, df = digits
    tr = df.index[df.split == 'train']
    keep = np.random.default_rng(0).choice(tr, 150, replace=False)
    small = df[(df.split != 'train') | df.index.isin(keep)]
    small.attrs = df.attrs
    set_seed(0, reproducible=True)
    learn = defaults_learner(collection_dls(small, size=SIZE, bs=32), lr=1e-3)
    with learn.no_bar(), learn.no_logging(): learn.fit(60)
    fn = learn.export_model(tmp/'memorised.pkl')
    return learn, small, fn


def test_a_resplit_table_is_caught_and_measured(memorised):
    "100 of the training digits moved into valid (a new split): named, and the error on them told apart from the rest"
    learn, small, fn = memorised
    with learn.no_bar():
        assert learn.get_split_preds('train').error == 0          # it has memorised its training digits
        e_valid = learn.get_split_preds('valid').error
    moved = np.random.default_rng(1).choice(small.index[small.split == 'train'], 100, replace=False)
    resplit = small.copy()
    resplit.loc[moved, 'split'] = 'valid'
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        loaded = load_model(fn, resplit, progress=False)
    msgs = [str(o.message) for o in w if 'held-out items were training items' in str(o.message)]
    assert len(msgs) == 1 and msgs[0].startswith('100 held-out items')
    check = loaded.model_check(progress=False)
    assert set(check.leaked.index) == set(moved) and not check.ok
    row = check.per_split.loc['valid']
    print(f"valid as trained: {e_valid:.1%}; re-split valid: on the 100 moved training items {row.error_trained_on:.1%}, "
          f"on the {int(row['items'] - row.trained_on)} others {row.error_new:.1%}")
    assert row.error_trained_on == 0 and row.error_new == pytest.approx(e_valid)   # the others are the old valid items
    with loaded.no_bar(): e_mixed = loaded.get_split_preds('valid').error
    assert e_mixed < e_valid                                   # what a report on the re-split table would say
    clean = check.new_only(resplit)
    assert len(clean) == len(resplit) - 100 and not clean.index.isin(moved).any()
    with warnings.catch_warnings():
        warnings.simplefilter('error')                           # the old split: not one warning
        assert load_model(fn, small, progress=False).model_check(progress=False).ok


def test_the_table_named_by_absolute_paths_from_elsewhere(memorised, tmp_path):
    "The same table written with absolute file names, its CSV in another folder: the training items are still recognised"
    learn, small, fn = memorised
    root = Path(small.attrs['path'])
    absolute = small.assign(fname=[str((root/f).resolve()) for f in small.fname])
    absolute.loc[absolute.index[absolute.split == 'train'][:7], 'split'] = 'test'
    absolute.to_csv(tmp_path/'elsewhere.csv', index=False)
    df = read_collection(tmp_path/'elsewhere.csv', progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); check = load_model(fn, df, progress=False).model_check(progress=False)
    assert len(check.leaked) == 7 and check.gone == 0 and check.unseen_train == 0 and len(check.answers) == len(small[small.split == 'valid'])
    assert not check.answers_differ


def test_cached_model_comes_back_on_the_cache(digits, tmp_path):
    "Trained on the fast-path cache: loaded on the cache again (as trained), same answers; on plain loaders, close answers"
    tmp, df = digits
    set_seed(0, reproducible=True)
    dls = cached_dls(df, size=SIZE, bs=64, cache_dir=tmp_path/'cache', progress=False)
    learn = defaults_learner(dls)
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-3)
    fn = learn.export_model(tmp_path/'cached.pkl')
    again = load_model(fn, df, cache_dir=tmp_path/'cache', progress=False)
    assert isinstance(again.dls, CachedDataLoaders)
    check = again.model_check(progress=False)
    assert check.ok and check.answers.confidence_change.max() < 1e-5
    with learn.no_bar(), again.no_bar():
        assert torch.allclose(learn.get_split_preds('test').probs, again.get_split_preds('test').probs, atol=1e-5)
    plain = load_model(fn, df, cache=False, progress=False)     # PIL through fastai's item pipeline: the same resize
    assert not isinstance(plain.dls, CachedDataLoaders)
    ch = plain.model_check(progress=False)
    print(f'cache → plain loaders: {len(ch.changed)} of {len(ch.answers)} answers changed, '
          f'largest confidence change {ch.answers.confidence_change.max():.4f}')
    assert not ch.answers_differ


def test_train_command_and_model_everywhere(digits, tmp_path):
    "`glamdebug train -o` then `report --model` / `confidence --model`: no training there, the same errors; `compare` of two saved models; refusals first"
    tmp, df = digits
    root = Path(df.attrs['path'])
    r = run('train', root, '-o', tmp_path/'m.pkl', '--size', SIZE, '--epochs', 3, '--lr', 1e-3, '--json')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    errors = {e['split']: e['error'] for e in out['errors']}
    assert set(errors) == {'train', 'valid', 'test'} and errors['valid'] < 0.5
    r = run('report', root, '--model', tmp_path/'m.pkl', '--json')
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert 'Training' not in r.stdout and 'never trained' not in r.stderr
    got = {e['split']: e['error'] for e in rep['Errors'] if e['split'] != 'goal'}
    assert got == pytest.approx(errors)                               # the very model the train command measured
    r = run('confidence', root, '--model', tmp_path/'m.pkl', '--goal', 0.05)
    assert r.returncode == 0 and r.stdout.startswith(f'Using {tmp_path/"m.pkl"}, not trained again: lenet at 16×16 px, 10 classes'), r.stdout[:300] + r.stderr
    # a second model, and the two compared on the same held-out items
    r = run('train', root, '-o', tmp_path/'m2.pkl', '--size', SIZE, '--epochs', 6, '--lr', 1e-3, '--json')
    errors2 = {e['split']: e['error'] for e in json.loads(r.stdout)['errors']}
    r = run('compare', root, tmp_path/'m.pkl', tmp_path/'m2.pkl', '--json')
    assert r.returncode == 0, r.stderr
    cmp = {row['split']: row for row in json.loads(r.stdout)['table']}
    assert set(cmp) == {'valid', 'test'}
    for s in ('valid', 'test'):
        assert cmp[s]['error m'] == pytest.approx(errors[s]) and cmp[s]['error m2'] == pytest.approx(errors2[s])
    # refusals, each before any training or loading
    for args, msg in [(('train', root, '-o', tmp_path/'m.pkl'), 'exists: give another -o, or --overwrite'),
                      (('train', root, '-o', root/'collection.csv', '--overwrite'), 'refusing to overwrite the input'),
                      (('train', root, '-o', tmp_path/'no'/'m.pkl'), 'no folder'),
                      (('train', root, '-o', tmp_path/'n.pkl', '--lr', 0), '--lr must be positive'),
                      (('report', root, '--model', tmp_path/'none.pkl'), '--model: no file'),
                      (('report', root, '--model', tmp_path/'m.pkl', '--size', 32), 'was trained at 16×16 px; leave --size 32 out'),
                      (('report', root, '--model', tmp_path/'m.pkl', '--arch', 'resnet18'), 'is a lenet; leave --arch resnet18 out'),
                      (('compare', root, tmp_path/'m.pkl', tmp_path/'none.pkl'), 'no model file')]:
        r = run(*args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr[-500:])
    assert not (tmp_path/'n.pkl').exists()
