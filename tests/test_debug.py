"""`learn.troubleshoot()`: each planted silent bug is caught by the check that should catch it, with useful evidence;
a clean setup passes every check; the learner is left exactly as it was; the `troubleshoot` command works."""
import json, time, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn
import matplotlib; matplotlib.use('Agg')
from PIL import Image
from sklearn.datasets import load_digits
from fastai.vision.all import Transform, TensorImage, IntToFloatTensor, set_seed
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner, lenet_like
from glamdebug.samples import hue_collection
from glamdebug.debug import *
from glamdebug.debug import _hash_images

torch.set_num_threads(1)
SIZE = 32


def write_digits(path, n=400, size=SIZE, seed=0):
    "sklearn digits as RGB PNGs in `images/<split>/<label>/`, plus `collection.csv` (fname,label,split)"
    d, rng, rows = load_digits(), np.random.default_rng(seed), []
    for j, i in enumerate(rng.permutation(len(d.images))[:n]):
        split, lbl = ('valid' if j % 4 == 0 else 'train'), str(d.target[i])
        fn = Path('images')/split/lbl/f'd{i:04d}.png'
        (path/fn).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i]*16).clip(0, 255).astype(np.uint8)).resize((size, size)).convert('RGB').save(path/fn)
        rows.append(dict(fname=str(fn), label=lbl, split=split))
    pd.DataFrame(rows).to_csv(path/'collection.csv', index=False)
    return path


@pytest.fixture(scope='module')
def coll(tmp_path_factory):
    path = write_digits(tmp_path_factory.mktemp('digits'))
    return path, read_collection(path/'collection.csv')


def learner(df, path, seed=0, arch='lenet', **kw):
    set_seed(seed)
    dl_kw = {k: kw.pop(k) for k in ('batch_tfms',) if k in kw}
    return defaults_learner(collection_dls(df, path, size=SIZE, **dl_kw), arch=arch, **kw)


class Times255(Transform):
    "A batch transform that forgets pixels were scaled to [0, 1]"
    order = 99
    def encodes(self, x: TensorImage): return x*255


def statuses(rep): return {c.name: c.status for c in rep.checks}


def state(learn):
    "Everything a check could change"
    return dict(sd={k: v.clone() for k, v in learn.model.state_dict().items()},
                modes=[m.training for m in learn.model.modules()], grads=[p.requires_grad for p in learn.model.parameters()],
                opt=json.dumps({k: str(v) for k, v in learn.opt.state_dict()['hypers'][0].items()}) if learn.opt else None,
                opt_state=len(learn.opt.state_dict()['state']) if learn.opt else None,
                cbs=[type(c).__name__ for c in learn.cbs], lr=learn.lr, loss=learn.loss_func,
                rng=torch.get_rng_state().clone(), dl_rng=learn.dls.train.rng.getstate())


def same_state(a, b):
    assert a['sd'].keys() == b['sd'].keys() and all(torch.equal(a['sd'][k], b['sd'][k]) for k in a['sd'])
    for k in ('modes', 'grads', 'opt', 'opt_state', 'cbs', 'lr', 'loss', 'dl_rng'): assert a[k] == b[k], k
    assert torch.equal(a['rng'], b['rng'])


# --- the clean case: no false alarm, learner untouched -------------------------------------------------------------

def test_clean_passes_every_check_and_leaves_learner_unchanged(coll):
    path, df = coll
    learn = learner(df, path)
    learn.fit(1)  # an optimizer with state, a recorder with history: all must survive
    learn.model.eval()  # an unusual mode that must come back as it was
    before = state(learn)
    t0 = time.perf_counter()
    rep = learn.troubleshoot(quick=False, show_progress=False)
    el = time.perf_counter() - t0
    assert statuses(rep) == {n: 'skip' if n in ('augment', 'loss_at_init') else 'ok' for n in CHECKS}, rep.to_text()  # no augmentation to check; fit, so no loss at init
    assert rep.verdict == 'ok' and rep.failed == [] and 'passed' in rep.summary
    same_state(before, state(learn))
    print(f'full troubleshoot on {len(df)} digits at {SIZE}px: {el:.1f} s')


def test_fresh_learner_quick_mode(coll):
    path, df = coll
    learn = learner(df, path, seed=1)
    before = state(learn)
    rep = learn.troubleshoot()  # with the progress bar
    assert [c.name for c in rep.checks] == QUICK_CHECKS and rep.verdict == 'ok', rep.to_text()
    assert rep['overfit_batch'].evidence['batch_accuracy'] == 1.
    assert abs(rep['loss_at_init'].evidence['ratio'] - 1) < 0.5
    same_state(before, state(learn))
    c = check_overfit_batch(learn, n_steps=5)  # a check called alone (it seeds torch) also leaves everything, RNGs included
    assert c.seconds > 0
    same_state(before, state(learn))


def test_sample_collection_quick_mode_clean():
    "the demo's setting: the sample collection at 32 px, quick mode, a fresh learner: no alarm"
    from glamdebug.samples import sample_collection
    df = read_collection(sample_collection()/'collection.csv')
    rep = learner(df, df.attrs['path'], seed=3).troubleshoot(show_progress=False)
    assert rep.verdict == 'ok', rep.to_text()
    assert rep['labels'].evidence['n_with_implied_label'] == len(df)


# --- planted bugs ---------------------------------------------------------------------------------------------------

def test_glob_order_bug(coll):
    "images listed in one order, labels in another: the labels are a permutation of the right ones"
    path, df = coll
    bad = df.copy(); bad['label'] = np.random.default_rng(0).permutation(df.label.values)
    rep = learner(bad, path).troubleshoot(checks=['labels', 'input_independent', 'overfit_batch'], show_progress=False)
    lab = rep['labels']
    assert lab.status == 'fail' and lab.evidence['path_structure'] and lab.evidence['mismatch_frac'] > 0.7
    assert 'mis-paired' in lab.advice and set(lab.details.columns) >= {'item', 'label', 'implied'}
    r = lab.details.iloc[0]; assert r.label != r.implied and f'/{r.implied}/' in r['item']
    ii = rep['input_independent']
    assert ii.status == 'fail' and ii.evidence['real_accuracy'] < ii.evidence['zeroed_accuracy'] + 0.05, ii
    assert rep['overfit_batch'].status == 'ok'  # one batch of random labels can be memorised: that check cannot see this bug
    assert rep.verdict == 'fail' and 'labels' in rep.summary


def test_glob_order_plain_fastai(coll, tmp_path):
    "the same bug with plain fastai DataLoaders (no collection table): labels from a list, items from the folder"
    from fastai.vision.all import DataBlock, ImageBlock, CategoryBlock, Learner, CrossEntropyLossFlat, GrandparentSplitter
    path, df = coll
    files = sorted(path/f for f in df.fname)
    labels = dict(zip(files, np.random.default_rng(0).permutation([f.parent.name for f in files])))
    dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=lambda f: labels[f],
                    splitter=GrandparentSplitter(train_name='train', valid_name='valid')).dataloaders(files, bs=32, num_workers=0)
    assert not hasattr(dls, 'collection')
    c = check_labels(Learner(dls, lenet_like(10), loss_func=CrossEntropyLossFlat()))
    assert c.status == 'fail' and c.evidence['n_items'] == len(files) and c.evidence['mismatch_frac'] > 0.7


def test_softmax_before_cross_entropy(coll):
    path, df = coll
    learn = learner(df, path, arch=nn.Sequential(lenet_like(10), nn.Softmax(dim=1)))
    rep = learn.troubleshoot(checks=['loss_input', 'overfit_batch'], show_progress=False)
    li = rep['loss_input']
    assert li.status == 'fail' and li.evidence['looks_like'] == 'probabilities' and li.evidence['expects'] == 'logits'
    assert 'softmax' in li.advice
    ob = rep['overfit_batch']
    assert ob.status == 'fail' and ob.evidence['loss_end'] > 0.5*ob.evidence['loss_start']


def test_lr_10(coll):
    path, df = coll
    rep = learner(df, path, lr=10).troubleshoot(checks=['overfit_batch', 'lr', 'numerics'], show_progress=False)
    ob = rep['overfit_batch']
    assert ob.status == 'fail' and ob.evidence['shape'] in ('explodes', 'oscillates') and ob.evidence['lr'] == 10
    assert ob.evidence['loss_max'] > 10*ob.evidence['loss_start']
    assert 'learning rate' in ob.advice
    lr = rep['lr']
    assert lr.status == 'fail' and lr.evidence['suggested'] < 0.1 and lr.evidence['ratio'] > 100
    assert rep['numerics'].status in ('warn', 'fail')
    ob.plot()  # the curve


@pytest.mark.parametrize('tfm', ['times255', 'div1'])
def test_inputs_left_in_0_255(coll, tfm):
    path, df = coll
    bt = Times255() if tfm == 'times255' else IntToFloatTensor(div=1)
    rep = learner(df, path, batch_tfms=bt).troubleshoot(checks=['inputs', 'loss_at_init'], show_progress=False)
    c = rep['inputs']
    assert c.status == 'fail' and c.evidence['max'] > 200 and '0–255' in c.message and 'normalised twice' not in c.message
    assert rep['loss_at_init'].status == 'fail' and rep['loss_at_init'].evidence['ratio'] > 3


def test_constant_label(coll):
    path, df = coll
    const = df.copy(); const['label'] = '3'
    c = check_labels(learner(const, path))
    assert c.status == 'fail' and c.evidence['n_classes'] == 1 and 'single label' in c.message


def test_class_absent_from_split(coll):
    path, df = coll
    no7 = df[~((df.label == '7') & (df.split == 'valid'))].copy()
    c = check_labels(learner(no7, path))
    assert c.status == 'warn' and c.evidence['absent'] == {'valid': ['7']}


def leak_copies(df, path, n=10, seed=0):
    "`n` train images copied into valid: half byte-identical, half shrunk by 2 px and re-encoded as JPEG"
    tr, extra = df[df.split == 'train'].sample(n, random_state=seed), []
    (path/'leak').mkdir(exist_ok=True)
    for i, r in enumerate(tr.itertuples()):
        dst = Path('leak')/f'copy{i}.{"png" if i < n//2 else "jpg"}'
        if i < n//2: shutil.copy(path/r.fname, path/dst)
        else:
            im = Image.open(path/r.fname).convert('RGB'); im.resize((im.width - 2, im.height - 2)).save(path/dst, quality=90)
        extra.append(dict(fname=str(dst), label=r.label, split='valid', src=r.fname))
    out = pd.concat([df, pd.DataFrame(extra)], ignore_index=True); out.attrs = dict(df.attrs)
    return out, extra


def test_duplicates_across_train_and_valid(coll):
    path, df = coll
    leak, extra = leak_copies(df, path)
    c = check_leakage(learner(leak.drop(columns='src'), path))
    assert c.status == 'fail' and c.evidence['n_exact_pairs'] == 5 and c.evidence['n_near_pairs'] == 5
    assert c.evidence['n_leaked_items'] == 10
    found = {(Path(a).name, Path(b).name) for a, b in zip(c.details.train_item, c.details.other_item)}
    assert found == {(Path(e['src']).name, Path(e['fname']).name) for e in extra}
    assert 'leakage' in c.name and 'remove the copies' in c.advice


def test_frozen_model_cannot_learn(coll):
    path, df = coll
    m = lenet_like(10)
    for p in m.parameters(): p.requires_grad_(False)
    rep = learner(df, path, arch=m).troubleshoot(checks=['overfit_batch', 'input_independent'], show_progress=False)
    ob = rep['overfit_batch']
    assert ob.status == 'fail' and ob.evidence['n_trainable'] == 0 and ob.evidence['shape'] == 'frozen' and 'unfreeze' in ob.advice
    assert rep['input_independent'].status == 'fail'


def test_eval_mode_not_deterministic(coll):
    path, df = coll
    class AlwaysDrop(nn.Module):
        def forward(self, x): return nn.functional.dropout(x, 0.5, training=True)
    c = check_train_eval(learner(df, path, arch=nn.Sequential(lenet_like(10), AlwaysDrop())))
    assert c.status == 'fail' and c.evidence['eval_max_diff'] > 0


def test_nan_first_layer(coll):
    path, df = coll
    class Log(nn.Module):
        def forward(self, x): return torch.log(x - 1)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Log(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    c = check_numerics(learner(df, path, arch=m))
    assert c.status == 'fail' and c.evidence['first_nonfinite_layer'] == '2 (Log)'


def test_massive_leak_shuffled_label_control(coll):
    "valid made of copies of train items: random labels keyed by content are predicted far above chance"
    path, df = coll
    tr = df[df.split == 'train']
    big = pd.concat([tr, tr.head(100).assign(split='valid')], ignore_index=True); big.attrs = dict(df.attrs)
    c = check_shuffled_labels(learner(big, path))
    assert c.status == 'fail' and c.evidence['valid_accuracy'] > 2*c.evidence['chance']


def test_leak_at_the_end_of_valid(coll):
    """100 copies of train items after 300 clean valid rows (a table sorted so): the control reads 256 valid items from
    all over the split, so it finds them; it read the first 256 rows, all clean, and said ok"""
    path, df = coll
    tr = df[df.split == 'train'].head(100)
    clean = df.drop(index=tr.index).head(300).assign(split='valid')
    def table(*parts):
        t = pd.concat(parts, ignore_index=True); t.attrs = dict(df.attrs); return t
    c = check_shuffled_labels(learner(table(tr, clean, tr.assign(split='valid')), path))
    assert c.status == 'fail' and c.evidence['n_valid'] == 256, c
    ok = check_shuffled_labels(learner(table(tr, clean), path))
    assert ok.status == 'ok', ok  # the same clean rows without the copies: no false alarm



def test_input_independent_many_classes(tmp_path):
    """100 classes, 10 training items each: the probe learns a few points over chance (1 %), not the 5 points a few
    classes give; it must pass the clean collection (it failed it, with 256 items and a 5-point margin) and still fail
    the same collection with its labels shuffled"""
    df = read_collection(hue_collection(tmp_path, k=100)/'collection.csv')
    def probe(d, seed=0):
        set_seed(seed)
        return check_input_independent(defaults_learner(collection_dls(d, tmp_path, size=24), 'lenet'), seed=seed)
    for seed in (0, 1):
        c = probe(df, seed)
        assert c.status == 'ok', c
        assert c.evidence['n_train'] == 800 and c.evidence['n_steps'] == 63   # 8 items per class, each seen 2.5 times
        assert c.evidence['loss_gain_t'] > 5 and c.evidence['margin'] == pytest.approx(0.02)
    bad = df.copy(); bad['label'] = np.random.default_rng(0).permutation(df.label.values)
    for seed in (0, 1):
        c = probe(bad, seed)
        assert c.status == 'fail' and c.evidence['loss_gain_t'] < 0, c
    # the old probe (256 items, 2.6 per class) on the clean collection: the paired item losses still tell it from chance
    set_seed(0)
    c = check_input_independent(defaults_learner(collection_dls(df, tmp_path, size=24), 'lenet'), n_train=256, n_steps=40)
    assert c.status in ('ok', 'warn') and c.evidence['loss_gain_t'] > 2, c
    assert c.evidence['real_accuracy'] > c.evidence['baseline_accuracy']


# --- the pieces -----------------------------------------------------------------------------------------------------

def test_classify_curve():
    assert classify_curve([2., 1, .5, .1, .05, .01]) == 'ok'
    assert classify_curve([2., 3, 5, 40, float('nan')]) == 'explodes'
    assert classify_curve([2., 2.1, 2.3, 2.6, 2.8, 3, 3.3, 3.5]) == 'up'
    assert classify_curve([2., 1.9, 2, 1.95, 2., 1.9, 2.0, 1.96]) == 'plateaus'
    assert classify_curve([2., 1, 2.5, .8, 2.4, .7, 2.6, .9, 2.3, 1., 2.5]) == 'oscillates'


def test_find_duplicates_is_linear():
    "10,000 random hashes plus 20 planted near copies: found exactly, in well under a second per thousand items"
    rng = np.random.default_rng(0); n = 10_000
    hs = [(f'{i}', int(rng.integers(0, 2**63)), False, rng.integers(0, 256, (16, 16)).astype(np.uint8)) for i in range(n)]
    splits = ['train']*n
    for k in range(20):  # item n-1-k in valid: a copy of item k with 2 flipped hash bits and a slightly different thumbnail
        md5, h, p, t = hs[k]
        hs[n-1-k] = (f'x{k}', h ^ 0b101, p, np.clip(t.astype(int) + 1, 0, 255).astype(np.uint8)); splits[n-1-k] = 'valid'
    t0 = time.perf_counter()
    pairs, _ = find_duplicates([f'f{i}' for i in range(n)], splits, hashes=hs)
    el = time.perf_counter() - t0
    assert len(pairs) == 20 and set(pairs.kind) == {'near'} and (pairs.hash_bits == 2).all()
    assert el < 10, el


def test_report_renders(coll):
    path, df = coll
    bad = df.copy(); bad['label'] = np.random.default_rng(0).permutation(df.label.values)
    rep = learner(bad, path).troubleshoot(checks=['labels', 'inputs', 'overfit_batch'], show_progress=False)
    d = json.loads(rep.to_json())
    assert d['verdict'] == 'fail' and d['checks']['labels']['status'] == 'fail' and len(d['table']) == 3
    assert 'labels: details' in d and d['checks']['overfit_batch']['evidence']['losses']
    md, html = rep._repr_markdown_(), rep._repr_html_()
    assert '| labels | fail |' in md and 'data:image/png;base64' in html
    assert 'FAIL' in rep.to_text().upper()
    fig = rep.plot(); assert len([a for a in fig.axes if a.has_data()]) == 3
    assert show_model_inputs(learner(df, path), n=4) is not None
    with pytest.raises(GlamError): rep = learner(df, path).troubleshoot(checks=['nope'])
    with pytest.raises(GlamError): rep = learner(df, path).troubleshoot(overfit=dict(n_steps=3))


def test_crashing_model_is_a_failed_check(coll):
    "a model that does not fit the data (wrong input channels) becomes failing checks, not an exception"
    path, df = coll
    learn = learner(df, path, arch=lenet_like(10, n_in=1))
    rep = learn.troubleshoot(checks=['loss_at_init', 'overfit_batch'], show_progress=False)
    assert all(c.status == 'fail' and 'crashed' in c.message for c in rep.checks)


def test_cli_troubleshoot(coll, tmp_path, cli):
    "the glob-order bug (exit 1, JSON), the clean case and a missing file"
    path, df = coll
    bad = df.copy(); bad['label'] = np.random.default_rng(0).permutation(df.label.values)
    bad.to_csv(path/'glob_bug.csv', index=False)
    r = cli('troubleshoot', path/'glob_bug.csv', '--size', SIZE, '--checks', 'labels', '--json')
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout[r.stdout.index('{'):])
    assert d['checks']['labels']['status'] == 'fail' and d['verdict'] == 'fail'
    r = cli('troubleshoot', path/'collection.csv', '--size', SIZE, '--checks', 'labels,inputs,loss_input')
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'Troubleshoot' in out and 'All 3 checks passed' in out
    r = cli('troubleshoot', tmp_path/'missing.csv')
    assert r.returncode == 2 and 'error' in r.stderr


def test_keep_copies_together(coll, tmp_path):
    "Copies planted across train/valid/test, and a valid~test chain with no train member: each group ends in one split, nothing is lost"
    path, df = coll
    p = tmp_path/'c'; shutil.copytree(path, p)
    leak, extra = leak_copies(df, p)                      # 5 exact + 5 near copies of train images, in valid
    va = df[df.split == 'valid'].iloc[:3]                 # three valid images: an exact copy of each in test, and a near
    rows = []                                             # copy of that copy in test too (a chain: valid ~ test ~ test)
    for i, r in enumerate(va.itertuples()):
        a, b = Path('leak')/f'vt{i}.png', Path('leak')/f'vt{i}b.jpg'
        shutil.copy(p/r.fname, p/a)
        im = Image.open(p/a).convert('RGB'); im.resize((im.width - 2, im.height - 2)).save(p/b, quality=90)
        rows += [dict(fname=str(a), label=r.label, split='test'), dict(fname=str(b), label=r.label, split='test')]
    late = df[df.split == 'valid'].iloc[5]                # a valid image whose copy comes later in the table, in train:
    shutil.copy(p/late.fname, p/'leak'/'late.png')        # the group goes to train, the valid original with it
    rows.append(dict(fname='leak/late.png', label=late.label, split='train'))
    table = pd.concat([leak.drop(columns='src'), pd.DataFrame(rows)], ignore_index=True)
    out = keep_copies_together(table, p, verbose=False)
    assert len(out) == len(table) and (out.fname == table.fname).all() and (out.label == table.label).all()
    assert (out.split_original == table.split).all()
    moved = pd.DataFrame(out.attrs['moved'])
    # the 10 copies of train images go to train; each valid~test group goes to its first row's split (valid)
    vt = {r['fname'] for r in rows if r['split'] == 'test'}
    assert set(moved.fname) == {e['fname'] for e in extra} | vt | {late.fname}
    assert set(moved[moved.to == 'train'].fname) == {e['fname'] for e in extra} | {late.fname}
    assert set(moved[moved.to == 'valid'].fname) == vt
    groups = duplicate_groups([p/f for f in out.fname], progress=False)
    assert pd.DataFrame(dict(g=groups, s=out.split)).groupby('g').s.nunique().max() == 1
    assert check_leakage(learner(out, p)).status == 'ok'
    again = keep_copies_together(out, p, verbose=False)   # applied twice: nothing moves, the first original stays
    assert again.attrs['moved'] == [] and (again.split_original == table.split).all()


def test_keep_copies_together_clean_and_bad_input(coll, tmp_path, capsys):
    path, df = coll
    out = keep_copies_together(df, path)
    assert out.attrs['moved'] == [] and (out.split == df.split).all()      # no false grouping of distinct digits
    assert 'moved 0 of' in capsys.readouterr().out
    with pytest.raises(GlamError, match='not found: .*nope.png'):
        keep_copies_together(pd.concat([df, pd.DataFrame([dict(fname='nope.png', label='1', split='train')])]), path)
    p = tmp_path/'bad'; shutil.copytree(path, p)
    (p/df.fname[0]).write_bytes(b'not an image')
    with pytest.raises(GlamError, match=f"cannot hash image .*{Path(df.fname[0]).name}"):
        keep_copies_together(df, p, verbose=False)
    with pytest.raises(GlamError, match="no column 'part'"): keep_copies_together(df, path, split_col='part')


def test_hash_images_skips_what_it_cannot_read(coll, tmp_path):
    "`on_error='skip'`: a missing and a corrupt file give None in their places, every other file its hashes, each read once"
    path, df = coll
    fns = [path/f for f in df.fname[:6]]
    (tmp_path/'bad.png').write_bytes(b'not an image')
    items = fns[:3] + [tmp_path/'bad.png', tmp_path/'gone.png'] + fns[3:]
    hs = _hash_images(items, progress=False, on_error='skip')
    assert [h is None for h in hs] == [False]*3 + [True, True] + [False]*3
    want = [image_hashes(f) for f in fns]
    assert [h[:3] for h in hs if h is not None] == [w[:3] for w in want]
    assert all((h[3] == w[3]).all() for h, w in zip([h for h in hs if h is not None], want))
    with pytest.raises(GlamError, match='cannot hash image .*bad.png'): _hash_images(items, progress=False)
    with pytest.raises(GlamError, match="on_error='ignore'"): _hash_images(items, on_error='ignore')
    big = tmp_path/'scan.png'   # files over 64 kB go through the thread pool: the same answers
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 65536
    hs = _hash_images([big, tmp_path/'bad.png', big], progress=False, on_error='skip')
    assert hs[1] is None and hs[0][:3] == hs[2][:3] == image_hashes(big)[:3]


def test_sixteen_bit_scans_are_compared_as_seen(tmp_path):
    """A 16-bit greyscale master and its 8-bit JPEG access copy are near duplicates. PIL's `convert('L')` clips 16-bit
    values above 255 to white (all but the darkest 1/256 of the tones), so the master no longer matched its copy."""
    d = load_digits()
    fns, splits = [], []
    for j, i in enumerate(range(40)):
        g = np.asarray(Image.fromarray((d.images[i]*16).clip(0, 255).astype(np.uint8)).resize((64, 64), Image.BILINEAR), np.float64)
        fn = tmp_path/f'master{j}.png'
        Image.fromarray((g*257).astype(np.uint16)).save(fn)       # 16-bit greyscale, as archives keep masters
        assert Image.open(fn).mode.startswith('I')
        fns.append(fn); splits.append('train')
    for j in (3, 17):
        fn = tmp_path/f'access{j}.jpg'
        im = Image.open(fns[j]); Image.fromarray((np.asarray(im, np.float64)/257).round().astype(np.uint8)).save(fn, quality=85)
        fns.append(fn); splits.append('valid')
    hs = [image_hashes(f) for f in fns]
    assert not any(h[2] for h in hs[:40]), 'a 16-bit scan with content counted as a blank page'
    pairs, _ = find_duplicates(fns, splits, progress=False)
    assert {(Path(a).name, Path(b).name) for a, b in zip(pairs.train_item, pairs.other_item)} == {
        ('master3.png', 'access3.jpg'), ('master17.png', 'access17.jpg')}
    assert set(pairs.kind) == {'near'}


# --- augmentations that change the label ------------------------------------------------------------------------------

def gutter_digits(df, path, dst):
    "Each digit shaded along its left or its right edge (the binding of a left- or right-hand page), labelled by the side"
    rng, rows = np.random.default_rng(0), []
    for i, r in enumerate(df.itertuples()):
        a = 255 - np.asarray(Image.open(path/r.fname).convert('RGB'), dtype=np.float32)   # dark ink on a light page
        side, w = int(rng.integers(2)), a.shape[1]
        shade = np.ones(w, np.float32); shade[:w//4] = np.linspace(0.35, 1, w//4)
        if side: shade = shade[::-1]
        fn = f'{i:04d}.png'; Image.fromarray((a*shade[None, :, None]).astype(np.uint8)).save(dst/fn)
        rows.append(dict(fname=fn, label=['left', 'right'][side], split=r.split))
    return read_collection(pd.DataFrame(rows), path=dst)


def test_augment_flip_of_left_and_right_pages(coll, tmp_path):
    "fastai's default flip on classes that differ by their side: caught by `troubleshoot`, from files and from the cache alike"
    from fastai.vision.all import aug_transforms
    from glamdebug.fastpath import cached_dls
    path, df = coll
    gdf = gutter_digits(df, path, tmp_path)
    rep = learner(gdf, tmp_path, batch_tfms=aug_transforms()).troubleshoot(show_progress=False)
    assert 'augment' in rep.failed, rep.to_text()  # (a copy trained on augmented items may fail `input_independent` too)
    c = rep['augment']
    assert c.details['transform'][0] == 'flip' and {c.details['turns'][0], c.details['into'][0]} == {'left', 'right'}
    assert c.details['acc_with'][0] < c.details['acc_without'][0] - 0.15 and 'do_flip=False' in c.advice
    set_seed(0)
    cd = cached_dls(gdf, size=SIZE, batch_tfms=aug_transforms(), cache_dir=tmp_path/'cache', progress=False)
    c = check_augment(defaults_learner(cd))
    assert c.status == 'fail' and c.details['transform'][0] == 'flip', c
    # without the flip, the same pages pass; the digits themselves, flips included, raise no alarm
    assert check_augment(learner(gdf, tmp_path, batch_tfms=aug_transforms(do_flip=False))).status == 'ok'
    c = check_augment(learner(df, path, batch_tfms=aug_transforms()))
    assert c.status == 'ok' and c.evidence['transforms'] == ['flip', 'rotate', 'zoom', 'warp', 'brightness', 'contrast'], c


def test_shuffled_label_control_reads_training_items_unaugmented(coll):
    "the control keys random labels on content: an augmented training item would not match its copy in valid"
    from fastai.vision.all import aug_transforms
    from glamdebug.debug import _no_augment, _grab_dl
    path, df = coll
    dls = learner(df, path, batch_tfms=aug_transforms(p_affine=1.)).dls
    grab = lambda: _grab_dl(dls.valid.new(dls.train_ds, shuffle=False, drop_last=False), 16)[0][0]
    assert not torch.equal(grab(), grab())  # fastai's own reading of the training split augments it
    with _no_augment(dls.train_ds): a, b = grab(), grab()
    assert torch.equal(a, b)


def test_shuffled_label_control_catches_a_leak_under_augmentation(coll):
    "valid made of copies of training items, with fastai's augmentation on: the control must still see the copies"
    from fastai.vision.all import aug_transforms
    path, df = coll
    tr = df[df.split == 'train']
    leaky = pd.concat([tr, tr.assign(split='valid')]).reset_index(drop=True); leaky.attrs['path'] = path
    c = check_shuffled_labels(learner(leaky, path, batch_tfms=aug_transforms()))
    assert c.status == 'fail' and c.evidence['valid_accuracy'] > 0.5, c  # before the fix: 10 % (chance 12 %), 'ok'


def test_augment_skips_multi_label_targets(coll):
    "multi-label targets (one-hot rows) have no single class to be turned into another: skipped, not a false failure"
    from fastai.vision.all import DataBlock, ImageBlock, MultiCategoryBlock, ColReader, IndexSplitter, aug_transforms, Resize, Learner, BCEWithLogitsLossFlat
    path, df = coll
    db = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_x=ColReader('fname', pref=path), get_y=ColReader('label', label_delim=' '),
                   splitter=IndexSplitter(np.nonzero((df.split == 'valid').values)[0]), item_tfms=Resize(SIZE), batch_tfms=aug_transforms())
    dls = db.dataloaders(df, bs=32, num_workers=0)
    learn = Learner(dls, lenet_like(n_out=dls.c), loss_func=BCEWithLogitsLossFlat())
    c = check_augment(learn)
    assert c.status == 'skip' and 'single-label' in c.message, c
