"""How far the confidence can be trusted: on real training, the threshold certified on valid holds on the held-out test
split and is flagged on a planted shifted split (negatives, as microfilm scanners save them); planted over- and
underconfidence are measured and undone by the temperature; triage keeps every file (unreadable ones marked) and agrees
with the report's inference; plain fastai loaders and the cache work; the `confidence` command works and refuses bad
arguments before training."""
import json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from torch import nn
from PIL import Image, ImageOps
from fastai.torch_core import set_seed
from fastai.vision.data import ImageDataLoaders
from fastai.vision.augment import Resize
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls
from glamdebug.confidence import confidence_report, ece, fit_temperature

torch.set_num_threads(2)
SIZE = 16  # the `digits` fixture (conftest.py) makes 16 px images


@pytest.fixture(scope='module')
def with_negatives(digits):
    "The digits collection plus `test_negative`: the test images inverted, as a microfilm scanner saves them"
    tmp, df = digits
    root = Path(df.attrs['path'])
    rows = df[df.split == 'test'].copy()
    for f in rows.fname:
        dst = root/f.replace('images/test/', 'images/test_negative/')
        dst.parent.mkdir(parents=True, exist_ok=True)
        ImageOps.invert(Image.open(root/f).convert('L')).save(dst)
    rows['fname'] = rows.fname.str.replace('images/test/', 'images/test_negative/', regex=False)
    rows['split'] = 'test_negative'
    csv = root/'collection_negative.csv'
    pd.concat([df, rows])[['fname', 'label', 'split']].to_csv(csv, index=False)
    return root, read_collection(csv, check_images=False, progress=False)


def trained(df, epochs=6, seed=0, dls=None):
    set_seed(seed, reproducible=True)
    learn = defaults_learner(dls if dls is not None else collection_dls(df, size=SIZE, bs=32))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn


def test_certified_threshold_holds_on_test_and_is_flagged_on_negatives(with_negatives):
    root, df = with_negatives
    learn = trained(df)
    rep = learn.confidence_report(goal=0.02, progress=False)
    t = rep.table
    assert list(t.index) == ['valid (certified on)', 'test', 'test_negative']
    assert rep.threshold is not None and t.verdict.iloc[0] == 'certified', rep.summary
    assert t['bound'].iloc[0] <= 0.02 and rep.coverage >= 0.5, rep.summary
    # the threshold sorts more than the whole split would allow: valid errs above the goal overall
    pv = learn.get_split_preds('valid')
    conf = pv.probs.max(1).values.numpy()
    assert np.isclose(rep.coverage, (conf >= rep.threshold).mean())
    assert t.at['test', 'verdict'] in ('meets goal', 'meets goal, few items', 'above goal, within chance'), rep.summary
    assert t.at['test_negative', 'verdict'] == 'above goal' and t.at['test_negative', 'error sorted'] > 0.3, rep.summary
    assert 'does not carry to test_negative' in rep.summary
    # without a goal: the share each target certifies, never more than the whole split
    ng = learn.confidence_report(progress=False, others=[])
    assert ng.threshold is None and (ng.targets['share sorted'].diff().dropna() >= 0).all()
    assert ng.targets.at[0.02, 'share sorted'] == pytest.approx(rep.coverage)


class Scale(nn.Module):
    def __init__(self, f): super().__init__(); self.f = f
    def forward(self, x): return x*self.f


def test_planted_over_and_underconfidence_are_measured(digits):
    tmp, df = digits
    learn = trained(df, epochs=4)
    base = learn.get_split_preds('valid')
    t0 = fit_temperature(base.probs, base.targs)
    m = learn.model
    for f in (4., 0.25):
        learn.model = nn.Sequential(m, Scale(f))   # logits times f: the same answers, other confidences
        rep = learn.confidence_report(progress=False, others=[])
        assert rep.temperature == pytest.approx(t0*f, rel=0.1), (f, t0, rep.temperature)
        c = rep.calibration.loc['valid']
        assert c['ECE scaled'] <= c['ECE'] + 1e-6
    assert 'underconfident' in rep.summary and c['ECE'] > 0.2 and c['ECE scaled'] < 0.1, rep.summary
    learn.model = m
    assert ece(base.probs, base.targs) < 0.1   # the model as trained is not far off


def test_triage_keeps_every_file_and_agrees_with_the_report(with_negatives, tmp_path):
    root, df = with_negatives
    learn = trained(df, epochs=4)
    rep = learn.confidence_report(goal=0.05, progress=False, others=['test'])
    assert rep.threshold is not None, rep.summary
    new = tmp_path/'delivery'; new.mkdir()
    test = df[df.split == 'test']
    for f in test.fname[:40]: (new/Path(f).name).write_bytes((root/f).read_bytes())
    (new/'torn.png').write_bytes((root/test.fname.iloc[0]).read_bytes()[:60])   # a truncated file
    tri = learn.triage(new, rep, progress=False)
    assert len(tri) == 41 and set(tri.decision) <= {'sorted', 'review', 'unreadable'}
    bad = tri[tri.decision == 'unreadable']
    assert list(bad.file.map(lambda f: Path(f).name)) == ['torn.png'] and bad.reason.iloc[0]
    ok = tri[tri.decision != 'unreadable']
    assert ((ok.confidence >= rep.threshold) == (ok.decision == 'sorted')).all()
    # the same confidences as the report's pass over the test split
    pt = learn.get_split_preds('test')
    conf = dict(zip([Path(i).name for i in pt.items], pt.probs.max(1).values.numpy()))
    assert np.allclose(ok.confidence, ok.file.map(lambda f: conf[Path(f).name]), atol=1e-5)
    with pytest.raises(GlamError, match=r'\[0, 1\]'): learn.triage(new, 1.5)
    (tmp_path/'empty').mkdir()
    with pytest.raises(GlamError, match='no image files'): learn.triage(tmp_path/'empty', 0.5)
    with pytest.raises(GlamError, match='certified no threshold'): learn.triage(new, confidence_report(pt, goal=0.0001))


def test_plain_fastai_loaders_and_the_cache(digits, tmp_path):
    tmp, df = digits
    root = Path(df.attrs['path'])
    # plain fastai: no collection, so only the certifying split
    sub = df[df.split != 'test'].assign(is_valid=lambda d: d.split == 'valid')
    set_seed(0, reproducible=True)
    dls = ImageDataLoaders.from_df(sub, path=root, fn_col='fname', label_col='label', valid_col='is_valid', item_tfms=Resize(SIZE), bs=32)
    rep = trained(df, epochs=4, dls=dls).confidence_report(goal=0.05, progress=False)
    assert list(rep.table.index) == ['valid (certified on)'] and rep.threshold is not None, rep.summary
    # the same model read through the cache: the same report as through the decoding loader, within float noise
    learn = trained(df, epochs=3)
    a = learn.confidence_report(goal=0.05, progress=False)
    learn.dls = cached_dls(df, size=SIZE, bs=32, cache_dir=tmp_path, progress=False)
    b = learn.confidence_report(goal=0.05, progress=False)
    assert list(a.table.index) == list(b.table.index) == ['valid (certified on)', 'test']
    assert a.threshold == pytest.approx(b.threshold, abs=1e-4) and a.coverage == b.coverage
    assert a.table.verdict.tolist() == b.table.verdict.tolist()
    # triage through the cache: every file, the same confidences as through the decoding loader
    files = [root/f for f in df[df.split == 'test'].fname[:30]]
    tc = learn.triage(files, 0.9, progress=False)
    learn.dls = collection_dls(df, size=SIZE, bs=32)
    td = learn.triage(files, 0.9, progress=False)
    assert len(tc) == 30 and np.allclose(tc.confidence, td.confidence, atol=1e-5) and (tc.decision == td.decision).all()




def test_command(digits, tmp_path, cli):
    tmp, df = digits
    root = Path(df.attrs['path'])
    new = tmp_path/'new'; new.mkdir()
    for f in df[df.split == 'test'].fname[:25]: (new/Path(f).name).write_bytes((root/f).read_bytes())
    out = tmp_path/'triage.csv'
    r = cli('confidence', root, '--goal', 0.05, '--epochs', 4, '--size', SIZE, '--new', new, '-o', out, '--json')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['threshold'] is not None and d['goal'] == 0.05 and 0 < d['coverage'] <= 1
    tri = pd.read_csv(out)
    assert len(tri) == 25 and list(tri.columns) == ['file', 'prediction', 'confidence', 'decision', 'reason']
    assert ((tri.confidence >= d['threshold']) == (tri.decision == 'sorted')).all()
    for args, msg in [(('--new', new), 'needs --goal'), (('--goal', 0.05, '-o', out), 'give --new'), (('--split', 'train'), "'train'"),
                      (('--goal', 5), '5 % is 0.05'), (('--split', 'tset'), 'tset')]:
        r = cli('confidence', root, '--epochs', 1, '--size', SIZE, *args)
        assert r.returncode != 0 and msg in r.stderr and 'Training' not in r.stdout, (args, r.stdout, r.stderr)


def test_valid_drawn_page_by_page_is_named(tmp_path, cli):
    "Valid drawn page by page from bound volumes: the command's report says its threshold holds for the volumes training holds, with the count; drawn whole volumes at a time, it says nothing; either way its bound counts volumes"
    from glamdebug.samples import volume_collection
    from glamdebug.data import split_collection
    root = volume_collection(tmp_path/'vols', n_volumes=48, pages=6, new_volumes=12)
    raw = pd.read_csv(root/'collection.csv')
    for group in (None, 'volume'):
        d = split_collection(raw, group=group, verbose=False)
        d.to_csv(root/'split.csv', index=False)
        r = cli('confidence', root/'split.csv', '--goal', 0.2, '--epochs', 1, '--json')
        assert r.returncode == 0, r.stderr
        j = json.loads(r.stdout)
        seen = int(d[d.split == 'valid'].volume.isin(set(d[d.split == 'train'].volume)).sum())
        if group is None:
            assert seen > 0 and j['seen_items'] == seen and j['seen_column'] == 'volume'
            assert f"{seen} of the {(d.split == 'valid').sum()} valid items share their `volume`" in j['summary']
            assert "split_collection(df, group='volume')" in j['summary']
        else: assert seen == 0 and j['seen_items'] == 0 and j['seen_column'] is None and 'share their' not in j['summary']
        # either way the bound counts valid's volumes, not its pages
        assert j['group_col'] == 'volume' and j['groups'] == d[d.split == 'valid'].volume.nunique() and 'weigh as' in j['summary']
    r = cli('confidence', root/'split.csv', '--goal', 0.2, '--epochs', 1, '--json', '--group', 'none')   # items counted as independent
    assert r.returncode == 0, r.stderr
    j2 = json.loads(r.stdout)
    assert j2['groups'] is None and 'weigh as' not in j2['summary'] and (j2['threshold'] or 0) <= (j['threshold'] or 1)
