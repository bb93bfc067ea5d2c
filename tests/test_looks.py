"""`learn.where_it_looks()` beyond its notebook: the same maps from the cache as from the files, any split, the
`looks` command (a collection with a colour target on one class flagged, the clean one not), errors at the edge."""
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn
from PIL import Image
from fastai.vision.all import Learner, CrossEntropyLossFlat, set_seed
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.samples import sample_collection
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
from glamdebug.looks import LooksReport, occlusion_maps, MaskMargins

torch.set_num_threads(2)


def stamp(fn):
    "A colour target in the bottom-left corner of image file `fn`"
    a = np.array(Image.open(fn).convert('RGB'))
    h = a.shape[0]; s = max(2, h//12)
    for i, c in enumerate([(200, 30, 30), (30, 160, 40), (30, 60, 200), (20, 20, 20)]): a[h-s-1:h-1, 1+i*s:1+(i+1)*s] = c
    Image.fromarray(a).save(fn)


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    dst = tmp_path_factory.mktemp('looks')/'planted'
    shutil.copytree(sample_collection(), dst)
    df = read_collection(dst/'collection.csv', progress=False)
    for r in df[(df.label == 'cover') & df.split.isin(['train', 'valid'])].itertuples(): stamp(dst/r.fname)
    return dst


@pytest.fixture(scope='module')
def learner(planted):
    df = read_collection(planted/'collection.csv', progress=False)
    set_seed(0, reproducible=True)
    learn = defaults_learner(collection_dls(df, size=32, bs=32), 'lenet')
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(12, 3e-3)
    return learn, df


def test_cache_gives_the_same_maps(learner, tmp_path):
    "The same model looked at through `cached_dls` (pixel-identical to the files at this size) draws the same maps"
    learn, df = learner
    a = learn.where_it_looks(progress=False)
    dls0 = learn.dls
    learn.dls = cached_dls(df, size=32, bs=32, cache_dir=tmp_path/'cache', progress=False, draft=False)
    try: b = learn.where_it_looks(progress=False)
    finally: learn.dls = dls0
    assert a.flagged == b.flagged == ['cover']
    for c in a.maps: np.testing.assert_allclose(a.maps[c], b.maps[c], atol=1e-4)
    assert a.items.item.tolist() == b.items.item.tolist()


def test_any_split(learner):
    "A split name, a DataFrame of rows and `n_per_class` are honoured; the test split (no target there) flags nothing"
    learn, df = learner
    t = learn.where_it_looks('test', n_per_class=5, progress=False)
    assert t.split == 'test' and len(t.items) == 30 and t.flagged == []
    assert all('/test/' in i for i in t.items.item)
    rows = df[(df.split == 'valid') & df.label.isin(['cover', 'map'])]
    r = learn.where_it_looks(rows, progress=False)
    assert set(r.per_class['class']) == {'cover', 'map'} and r.flagged == ['cover']
    tr = learn.where_it_looks('train', n_per_class=4, progress=False)
    assert len(tr.items) == 24 and tr.flagged == ['cover']


def test_errors_at_the_edge(learner):
    learn, df = learner
    with pytest.raises(GlamError, match='grid'): learn.where_it_looks(grid=2.5)
    with pytest.raises(GlamError, match='min_spot'): learn.where_it_looks(min_spot=0)
    with pytest.raises(GlamError, match="split == 'atlas'; splits present: test"): learn.where_it_looks('atlas')
    rep = learn.where_it_looks(progress=False)
    with pytest.raises(GlamError, match="'atlas'"): rep.plot(classes=['atlas'])
    json.dumps(rep.to_dict())   # JSON-ready


def test_occlusion_batches_agree():
    "Patches spread over several forward passes give the same drops as one pass"
    set_seed(1)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()
    x, y = torch.randn(7, 3, 24, 24), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    a, b = occlusion_maps(m, x, y, grid=6, bs=1000), occlusion_maps(m, x, y, grid=6, bs=5)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # by hand, for one patch
    xo = x.clone(); xo[:, :, 8:12, 4:8] = x.mean((2, 3), keepdim=True)
    with torch.no_grad(): hand = m(x).softmax(1)[range(7), y] - m(xo).softmax(1)[range(7), y]
    torch.testing.assert_close(a[:, 2, 1], hand, atol=1e-5, rtol=0)


def test_looks_command(planted, cli):
    run = lambda csv, *a: cli('looks', str(csv), '--size', '32', *a)
    r = run(planted, '--epochs', '25', '--json', '--plot', str(planted.parent/'looks.png'))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['flagged'] == ['cover'], d['summary']
    assert (planted.parent/'looks.png').stat().st_size > 1000
    c = run(sample_collection(), '--epochs', '5')
    assert c.returncode == 0, c.stderr
    assert 'No class is told by' in c.stdout
    bad = run(planted, '--grid', '2')   # refused before any training
    assert bad.returncode != 0 and 'grid' in bad.stderr
