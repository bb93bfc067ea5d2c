"""A trained model saved and put back on a table, on real training: a model that has memorised its 150 training digits
is checked against a table re-split since (the leaked items named, and the error on them apart from the rest), a model
trained on the fast-path cache comes back on the cache with the same answers, training digits delivered again under other
names are found by their content (and a renamed table is still checked), and the `train` command's model serves
`report --model`, `confidence --model` and refusals (the command run through `glamdebug.cli.main`)."""
import json, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fastai.torch_core import set_seed
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls, CachedDataLoaders
from glamdebug.saved import load_model
from glamdebug.debug import find_duplicates

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images




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
    ts = learn.troubleshoot(checks=['loss_at_init'], show_progress=False)   # fit in this session: not its loss at init
    assert ts.trained and ts['loss_at_init'].status == 'skip' and 'Next: train' not in ts.summary
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


def test_copies_under_other_names_are_found_by_content(memorised, tmp_path, cli):
    "20 training digits delivered again into test under new names (10 the same bytes, 10 re-encoded a shade darker): by name nothing is found; by content all 20, and on the table as it was only what troubleshoot's leakage check finds too"
    from PIL import Image
    learn, small, fn = memorised
    root = Path(small.attrs['path'])
    tr = small[small.split == 'train']
    rows = []
    for i, (f, lab) in enumerate(zip(tr.fname.iloc[:20], tr.label.iloc[:20])):
        new = tmp_path/'delivery'/f'item_{i:03d}.png'; new.parent.mkdir(exist_ok=True)
        if i < 10: new.write_bytes((root/f).read_bytes())
        else: Image.fromarray(np.clip(np.asarray(Image.open(root/f)).astype(int) - 3, 0, 255).astype(np.uint8)).save(new, compress_level=9)
        rows.append(dict(fname=str(new), label=lab, split='test'))
    table = pd.concat([small.assign(fname=[str(root/f) for f in small.fname]), pd.DataFrame(rows)], ignore_index=True)
    table.to_csv(tmp_path/'delivered.csv', index=False)
    df = read_collection(tmp_path/'delivered.csv', progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error'); by_name = load_model(fn, df, progress=False).model_check(progress=False)
    assert len(by_name.leaked) == 0 and 'were not looked for' in by_name.summary    # the silent case: names alone
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); check = load_model(fn, df, content=True, progress=False).model_check(content=True, progress=False)
    planted = set(range(len(small), len(small) + 20))
    pairs, _ = find_duplicates([root/f for f in small.fname], small.split.tolist(), progress=False)  # troubleshoot's own leakage check, on the table as it was
    also = {int(small.index.get_loc(small.index[small.fname == Path(o).relative_to(root).as_posix()][0])) for o in pairs.other_item}
    print(f'by content: {len(check.leaked)} held-out items tied to training items ({(check.leaked.match == "same bytes").sum()} same bytes, '
          f'{(check.leaked.match == "near copy").sum()} near copies); find_duplicates on the table as it was: {len(also)}')
    assert set(check.leaked.index) == planted | also
    lk = check.leaked.loc[sorted(planted)]
    assert (lk.match.iloc[:10] == 'same bytes').all() and (lk.match.iloc[10:] == 'near copy').all()
    assert lk.trained_as.tolist() == tr.fname.iloc[:20].tolist()
    assert check.per_split.loc['test', 'error_trained_on'] == 0      # it knows them by heart
    assert any(str(o.message).startswith(f'{20 + len(also)} held-out items') and 'tied by their content' in str(o.message) for o in w)
    # the whole table renamed (files moved to numbered names): tied by content without asking, nothing leaked
    flat = tmp_path/'flat'; flat.mkdir()
    for i, f in enumerate(small.fname): (flat/f'{i:05d}.png').symlink_to(root/f)
    renamed = small.assign(fname=[f'{i:05d}.png' for i in range(len(small))]); renamed.attrs = dict(small.attrs, path=flat)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); ren = load_model(fn, renamed, progress=False).model_check(progress=False)
    assert ren.content is not None and ren.gone == 0 and ren.unseen_train == 0 and not ren.unmatched
    assert set(ren.leaked.index) == {small.index[i] for i in also} and len(ren.answers) == len(small[small.split == 'valid'])
    # the command: --copies names them; without --model it is refused
    r = cli('report', tmp_path/'delivered.csv', '--model', fn, '--copies')
    assert r.returncode == 0 and f'{20 + len(also)} held-out items were training items' in r.stderr, r.stderr[-800:]
    r = cli('report', tmp_path/'delivered.csv', '--copies')
    assert r.returncode == 2 and 'give --model' in r.stderr


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


def test_srgb_decoding_is_kept_with_the_model(digits, tmp_path):
    "A model trained on images decoded to sRGB (`srgb=True`) is put back on a table decoding so, on plain loaders and on the cache"
    tmp, df = digits
    for cached in (False, True):
        kw = dict(cache_dir=tmp_path/'cache', progress=False) if cached else {}
        dls = cached_dls(df, size=SIZE, bs=64, srgb=True, **kw) if cached else collection_dls(df, size=SIZE, bs=64, srgb=True)
        fn = defaults_learner(dls).export_model(tmp_path/f'srgb_{cached}.pkl')
        again = load_model(fn, df, **kw)
        assert again.glam_manifest['srgb'] is True and ' px decoded into sRGB, 10 classes' in again.model_check(progress=False)._model_line()
        assert (again.dls.cache.srgb if cached else again.dls.prep['srgb']) is True
        assert isinstance(again.dls, CachedDataLoaders) == cached


def test_train_command_and_model_everywhere(digits, tmp_path, cli):
    "`glamdebug train -o` then `report --model` / `confidence --model`: no training there, the same errors; `compare` of two saved models; refusals first"
    tmp, df = digits
    root = Path(df.attrs['path'])
    r = cli('train', root, '-o', tmp_path/'m.pkl', '--size', SIZE, '--epochs', 3, '--lr', 1e-3, '--json')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    errors = {e['split']: e['error'] for e in out['errors']}
    assert set(errors) == {'train', 'valid', 'test'} and errors['valid'] < 0.5
    r = cli('report', root, '--model', tmp_path/'m.pkl', '--json')
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert 'Training' not in r.stdout and 'never trained' not in r.stderr
    got = {e['split']: e['error'] for e in rep['Errors'] if e['split'] != 'goal'}
    assert got == pytest.approx(errors)                               # the very model the train command measured
    r = cli('confidence', root, '--model', tmp_path/'m.pkl', '--goal', 0.05)
    assert r.returncode == 0 and r.stdout.startswith(f'Using {tmp_path/"m.pkl"}, not trained again: lenet at 16×16 px, 10 classes'), r.stdout[:300] + r.stderr
    # troubleshoot on the saved model: the trained model's findings, then the glob-order bug in the table it is put on
    checks = ('--checks', 'labels,loss_at_init,input_independent')
    r = cli('troubleshoot', root, '--model', tmp_path/'m.pkl', *checks, '--json')
    assert r.returncode == 0, r.stderr
    ts = json.loads(r.stdout)
    assert ts['trained'] and ts['verdict'] == 'ok' and 'Next: `learn.error_report()`' in ts['summary'], ts['summary']
    assert ts['checks']['loss_at_init']['status'] == 'skip' and 'the model is trained' in ts['checks']['loss_at_init']['message']
    ii = ts['checks']['input_independent']['evidence']
    assert ii['real_accuracy'] > 1 - errors['valid'] - 0.1 and ii['real_accuracy'] > ii['zeroed_accuracy'] + 0.3, ii   # the trained model, not a fresh one
    bad = df.copy(); bad['label'] = np.random.default_rng(0).permutation(df.label.values)
    bad.to_csv(root/'glob_bug.csv', index=False)
    r = cli('troubleshoot', root/'glob_bug.csv', '--model', tmp_path/'m.pkl', *checks)
    assert r.returncode == 1 and 'Verdict: FAIL. Failed: labels, input_independent.' in r.stdout, r.stdout[-2000:]
    assert 'head init' not in r.stdout   # a trained model's loss on wrong labels is no initialisation problem
    # a second model, and the two compared on the same held-out items
    r = cli('train', root, '-o', tmp_path/'m2.pkl', '--size', SIZE, '--epochs', 6, '--lr', 1e-3, '--json')
    errors2 = {e['split']: e['error'] for e in json.loads(r.stdout)['errors']}
    r = cli('compare', root, tmp_path/'m.pkl', tmp_path/'m2.pkl', '--json')
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
                      (('report', root, '--model', tmp_path/'m.pkl', '--srgb'), 'trained on images decoded without --srgb; leave --srgb out'),
                      (('compare', root, tmp_path/'m.pkl', tmp_path/'none.pkl'), 'no model file')]:
        r = cli(*args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr[-500:])
    assert not (tmp_path/'n.pkl').exists()
