"""Checking a new, unlabelled delivery, on real training: the held-out digits as they are look like valid (no false
alarm); planted deliveries (negatives, as microfilm scanners save them; half of them negatives; three classes only) are
told apart, each for its own reason, without their labels; the items most unlike valid are the planted ones; the cache
and plain fastai loaders (`from_folder`, `from_df`) work; the `delivery` command writes a sample to label that goes back into the collection."""
import json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image, ImageOps
from fastai.torch_core import set_seed
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls
from glamdebug.delivery import DeliveryReport

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


def trained(df, epochs=6, seed=0):
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(df, size=SIZE, bs=32))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn


@pytest.fixture(scope='module')
def setup(digits):
    "A trained model, the test rows, and their files inverted (written once)"
    tmp, df = digits
    root = Path(df.attrs['path'])
    test = df[df.split == 'test']
    neg = tmp/'negatives'; neg.mkdir(exist_ok=True)
    for f in test.fname:
        dst = neg/f.replace('/', '_')
        if not dst.exists(): ImageOps.invert(Image.open(root/f).convert('L')).save(dst)
    return trained(df), root, test, neg


def true_error(rep, labels):
    return float((rep.items.prediction.to_numpy() != np.asarray(labels)).mean())


def test_unchanged_looks_like_valid_and_negatives_differ(setup):
    learn, root, test, neg = setup
    same = learn.delivery_report([root/f for f in test.fname], progress=False)
    assert isinstance(same, DeliveryReport) and same.verdict == 'like valid', same.summary
    assert same.auc < 0.7 and not same.differs and not same.files_differ, same.table
    err = true_error(same, test.label)
    assert abs(same.atc - err) < 0.05 and abs(learn.get_split_preds('valid').error - err) < 0.05
    # negatives: told apart by the features and the brightness, without labels; the model errs on most of them
    inv = learn.delivery_report(neg, progress=False)
    assert len(inv.items) == len(test) and inv.verdict == 'differs', inv.summary
    assert inv.features_differ and inv.auc > 0.9 and 'brightness' in inv.differs, inv.table
    labels = inv.items.file.map(lambda f: Path(f).name.split('_')[2])   # images_test_<label>_<n>.png
    assert true_error(inv, labels) > 0.5
    assert 'cannot be read' in inv.summary and 'report.sample()' in inv.summary and 'darker' not in same.summary
    assert inv.n_sample > same.n_sample or inv.n_sample == len(test)


def test_half_negatives_are_the_most_unlike(setup, tmp_path):
    learn, root, test, neg = setup
    half = tmp_path/'half'; half.mkdir()
    flipped = set()
    for i, f in enumerate(test.fname):
        name = f.replace('/', '_')
        if i % 2: (half/name).write_bytes((neg/name).read_bytes()); flipped.add(name)
        else: (half/name).write_bytes((root/f).read_bytes())
    (half/'torn.png').write_bytes((root/test.fname.iloc[0]).read_bytes()[:60])   # a truncated file: kept, marked
    rep = learn.delivery_report(half, progress=False)
    assert rep.verdict == 'differs' and rep.n_unreadable == 1, rep.summary
    torn = rep.items[rep.items.file.str.endswith('torn.png')]
    assert len(torn) == 1 and torn.reason.iloc[0] and np.isnan(torn.confidence.iloc[0])
    ok = rep.items[rep.items.reason == '']
    assert ok.unlike.notna().all()
    is_neg = ok.file.map(lambda f: Path(f).name in flipped).to_numpy()
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(is_neg, ok.unlike) > 0.9          # the per-item score finds the planted items
    top = rep.unlike(20)
    assert top.file.map(lambda f: Path(f).name in flipped).mean() >= 0.9
    s = rep.sample(30, seed=1)
    assert len(s) == 30 and s.file.is_unique and not s.file.str.endswith('torn.png').any()


def test_three_classes_only_is_a_class_mix(setup):
    learn, root, test, neg = setup
    three = sorted(test.label.unique())[:3]
    rows = test[test.label.isin(three)]
    rep = learn.delivery_report([root/f for f in rows.fname], progress=False)
    assert rep.verdict == 'other class mix' and rep.mix_differs and not rep.features_differ, rep.summary
    est = rep.classes['delivery estimated']
    assert est[three].sum() > 0.9, rep.classes     # the shares it estimates are on the right classes
    assert abs(rep.estimates.loc['class mix only', 'error'] - true_error(rep, rows.label)) < 0.05


def test_cache_and_plain_fastai_loaders(digits, setup, tmp_path):
    tmp, df = digits
    learn, root, test, neg = setup
    picked = test.sample(120, random_state=0)   # a random 120: the first 120 hold only three classes
    files = [root/f for f in picked.fname]
    a = learn.delivery_report(files, progress=False)
    dls = learn.dls
    try:
        learn.dls = cached_dls(df, size=SIZE, bs=32, cache_dir=tmp_path, progress=False)
        learn.clear_split_preds()
        b = learn.delivery_report(files, progress=False)
    finally: learn.dls = dls; learn.clear_split_preds()
    assert np.allclose(a.items.confidence, b.items.confidence, atol=1e-5)
    assert a.verdict == b.verdict and abs(a.atc - b.atc) < 1e-9 and abs(a.auc - b.auc) < 0.02
    # plain fastai: loaders over a folder tree, and over table rows, read new files
    from fastai.vision.data import ImageDataLoaders
    from fastai.vision.augment import Resize
    set_seed(0, reproducible=True)
    plain = defaults_learner(ImageDataLoaders.from_folder(root/'images', train='train', valid='valid', item_tfms=Resize(SIZE), bs=32))
    with plain.no_bar(), plain.no_logging(): plain.fit(4)
    p = plain.delivery_report(files, progress=False)
    assert p.verdict == 'like valid' and p.items.confidence.notna().all(), p.summary
    rows = df[df.split != 'test'].assign(is_valid=lambda d: d.split == 'valid')
    from_df = defaults_learner(ImageDataLoaders.from_df(rows, path=root, fn_col='fname', label_col='label', valid_col='is_valid', item_tfms=Resize(SIZE), bs=32))
    with from_df.no_bar(), from_df.no_logging(): from_df.fit(2)
    q = from_df.delivery_report(files, progress=False)
    with from_df.no_bar(): direct = from_df.get_preds(dl=from_df.dls.test_dl(picked))[0]   # the rows, as fastai reads them
    assert np.allclose(q.items.confidence, direct.max(1).values.numpy(), atol=1e-5)
    with pytest.raises(GlamError, match='no folder or file'): learn.delivery_report(tmp_path/'nowhere')
    with pytest.raises(GlamError, match="'train'"): learn.delivery_report(files, reference='train')




def test_command_writes_a_sample_that_goes_back_into_the_collection(digits, setup, tmp_path, cli):
    tmp, df = digits
    learn, root, test, neg = setup
    out = tmp_path/'to_label.csv'
    r = cli('delivery', root, neg, '--epochs', 4, '--size', SIZE, '-o', out, '--sample', 25, '--json')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['verdict'] == 'differs' and d['read'] == len(test) and d['auc'] > 0.9
    s = pd.read_csv(out, dtype={'label': str})
    assert len(s) == 25 and list(s.columns) == ['fname', 'label', 'split', 'prediction', 'confidence']
    assert (s.split == 'test_negatives').all() and s.label.isna().all() and s.fname.is_unique
    # a cataloguer fills in the labels; the rows go back into the collection as a split of their own
    s['label'] = s.fname.map(lambda f: Path(f).name.split('_')[2])
    col = pd.concat([df[['fname', 'label', 'split']], s[['fname', 'label', 'split']]])
    col.to_csv(tmp_path/'collection.csv', index=False)
    back = read_collection(tmp_path/'collection.csv', path=root, progress=False)
    assert (back.split == 'test_negatives').sum() == 25
    for args, msg in [(('--sample', 5), 'give -o'), (('--reference', 'train'), "'train'"), (('--margin', 0.7), 'margin'),
                      (('-o', root/'collection.csv'), 'collection')]:
        r = cli('delivery', root, neg, '--epochs', 1, '--size', SIZE, *args)
        assert r.returncode != 0 and msg in r.stderr and 'Training' not in r.stdout, (args, r.stdout, r.stderr)
    r = cli('delivery', root, tmp_path/'nowhere', '--epochs', 1)
    assert r.returncode != 0 and 'nowhere' in r.stderr


def test_boxes_ranked(setup, tmp_path, cli):
    "A delivery of boxes: the box of negatives first, the plain boxes like valid, one pass over valid; the command's --boxes"
    learn, root, test, neg = setup
    picked = test.sample(frac=1, random_state=1)
    for box, part in [('box_a', picked.iloc[:120]), ('box_b', picked.iloc[120:240])]:
        (tmp_path/'boxes'/box).mkdir(parents=True)
        for f in part.fname: (tmp_path/'boxes'/box/f.replace('/', '_')).write_bytes((root/f).read_bytes())
    (tmp_path/'boxes'/'box_c').mkdir()
    for f in picked.fname.iloc[240:]: (tmp_path/'boxes'/'box_c'/f.replace('/', '_')).write_bytes((neg/f.replace('/', '_')).read_bytes())
    learn.clear_split_preds()
    rep = learn.boxes_report(tmp_path/'boxes', progress=False)
    assert list(rep.table.index)[0] == 'box_c' and rep.table.verdict.iloc[0] == 'differs', rep.table
    assert (rep.table.loc[['box_a', 'box_b'], 'verdict'] == 'like valid').all(), rep.table
    assert sum(k[0] == 'delivery reference' for k in learn._glam_preds) == 1   # valid passed over once for three boxes
    assert rep['box_c'].n_unreadable == 0 and 'box_c' in rep.summary
    r = cli('delivery', root, tmp_path/'boxes', '--boxes', '--epochs', 4, '--size', SIZE, '--json')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [row['verdict'] for row in d['table']][:1] == ['differs'] and len(d['table']) == 3, d['table']
    r = cli('delivery', root, tmp_path/'boxes', '--boxes', '-o', tmp_path/'s.csv', '--epochs', 1, '--size', SIZE)
    assert r.returncode != 0 and 'check that box alone' in r.stderr and 'Training' not in r.stdout


def test_new_volumes_are_no_false_alarm_and_a_darker_delivery_is(tmp_path):
    """Valid drawn whole volumes at a time, a delivery of other new volumes: the feature classifier's folds take whole
    volumes, so it cannot tell the delivery by each volume's own look (item folds on the same features can); the same
    volumes made darker are told"""
    from glamdebug.samples import volume_collection
    from glamdebug.data import split_collection
    from glamdebug.delivery import _reference_pass, _new_files_pass
    from glamdebug.shift import domain_auc, compare_stats
    from glamdebug.debug import _table_groups
    root = volume_collection(tmp_path/'vols', n_volumes=96, pages=8, new_volumes=32)
    d = split_collection(pd.read_csv(root/'collection.csv'), group='volume', verbose=False)
    set_seed(0, reproducible=True)
    learn = defaults_learner(collection_dls(d, root, size=32, bs=64), 'lenet')
    with learn.no_bar(), learn.no_logging(): learn.fit(5)
    new = d[d.split == 'test'].assign(fname=lambda t: [str(root/f) for f in t.fname])
    rep = learn.delivery_report(new, progress=False)
    with learn.no_bar():
        ref, _, rf, _ = _reference_pass(learn, 'valid')
        nf = _new_files_pass(learn, [Path(f) for f in new.fname], list(range(len(new))))[2]
    by_item = domain_auc(rf.numpy(), nf.numpy())
    print(f"delivery of new volumes: AUC {rep.auc:.2f} by volume, {by_item:.2f} by item")
    assert rep.auc < 0.65 and by_item > rep.auc + 0.1, (rep.auc, by_item)
    # the image statistics' tests count volumes too: no statistic differs, and their p-values are those of volume means
    with learn.no_bar(): rs, ns = _reference_pass(learn, 'valid')[1], _new_files_pass(learn, [Path(f) for f in new.fname], list(range(len(new))))[1]
    by_page, by_vol = compare_stats(rs, ns), compare_stats(rs, ns, ref_groups=_table_groups(learn, ref.items)[1], new_groups=new.volume.to_numpy())
    print(f"statistics' KS p by page: {by_page.ks_p.round(4).to_dict()}, by volume: {by_vol.ks_p.round(4).to_dict()}")
    assert rep.differs == [], rep.stats
    assert np.allclose(rep.stats.ks_p.sort_index().to_numpy(), by_vol.ks_p.sort_index().to_numpy(), rtol=0, atol=1e-12)
    varies = by_page.ks_p < 1   # the pixel sizes are all 32 px
    assert varies.sum() >= 4 and (by_vol.ks_p.reindex(by_page.index)[varies] > by_page.ks_p[varies]).sum() >= varies.sum() - 1, (by_page, by_vol)
    dark = tmp_path/'dark'
    for f, v in zip(new.fname, new.volume):
        (dark/v).mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.asarray(Image.open(f).convert('RGB'))*0.5).astype(np.uint8)).save(dark/v/Path(f).name)
    dr = learn.delivery_report(dark, progress=False)   # a folder: each file's volume folder is its group
    print(f"darker: {dr.verdict}, AUC {dr.auc:.2f}")
    assert dr.verdict == "differs" and dr.auc >= 0.7, (dr.verdict, dr.auc)
    assert 'brightness' in dr.differs, dr.stats   # tested volume by volume, the darker pages still differ
