"Tests for glamdebug.models: the init is the one claimed, the defaults are on the optimiser, the builders learn, the ladder stops"
import os, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from torch import nn
from PIL import Image
from fastcore.test import test_eq as t_eq, test_close as t_close
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.data.transforms import Normalize
from fastai.callback.progress import ProgressCallback
from glamdebug.core import GlamError
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import *

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet():
    from fastai.learner import defaults
    old = defaults.callbacks
    defaults.callbacks = [c for c in old if c is not ProgressCallback]
    yield
    defaults.callbacks = old


@pytest.fixture(scope='module')
def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    X, y = torch.tensor(d.images, dtype=torch.float32)/16, torch.tensor(d.target)
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return X, y, idx[:1400], idx[1400:]


def tensor_dls(digits, x, bs=16):
    X, y, tr, va = digits
    return DataLoaders.from_dsets(list(zip(x[tr], y[tr])), list(zip(x[va], y[va])), bs=bs)


@pytest.fixture(scope='module')
def coll(tmp_path_factory):
    "A small image collection of real handwritten digits (PNG files + a collection table), 40 per class"
    path = tmp_path_factory.mktemp('digits')
    from sklearn.datasets import load_digits
    d = load_digits()
    rows = []
    for i, (im, lab) in enumerate(zip(d.images[:400], d.target[:400])):
        fn = f'{i:04d}.png'
        Image.fromarray((im*255/16).astype(np.uint8)).save(path/fn)
        rows.append(dict(fname=fn, label=f'd{lab}', split='valid' if i % 5 == 0 else 'train'))
    pd.DataFrame(rows).to_csv(path/'collection.csv', index=False)
    return read_collection(path/'collection.csv')


@pytest.fixture(scope='module')
def img_dls(coll): return collection_dls(coll, size=16, bs=32)


# ---------- init ----------
def test_relu_layers_are_he_normal():
    m = lenet_like(10, n_in=3, chs=(64, 128), n_hidden=256)
    relu_layers = [m[i] for i in range(len(m)-1) if isinstance(m[i], (nn.Conv2d, nn.Linear)) and isinstance(m[i+1], nn.ReLU)]
    t_eq(len(relu_layers), 3)
    for l in relu_layers:
        fan_in = l.weight[0].numel()
        t_close(l.weight.std().item(), (2/fan_in)**0.5, eps=0.05*(2/fan_in)**0.5)
        t_close(l.weight.mean().item(), 0, eps=0.05*(2/fan_in)**0.5)
        t_eq(l.bias.abs().max().item(), 0)
    out = m[-1]  # the output layer (no ReLU after it) is Glorot-normal
    t_close(out.weight.std().item(), (2/sum(out.weight.shape))**0.5, eps=0.15*(2/sum(out.weight.shape))**0.5)
    mlp = mlp_one_hidden(256, 10, n_hidden=512)
    t_close(mlp[1].weight.std().item(), (2/256)**0.5, eps=0.05*(2/256)**0.5)
    # the planted bug: PyTorch's own default init (kaiming_uniform with a=sqrt(5)) is ~sqrt(3) times narrower
    plain = nn.Linear(256, 512)
    assert abs(plain.weight.std().item() - (2/256)**0.5) > 0.3*(2/256)**0.5


def test_lstm_is_glorot_uniform():
    m = lstm_one_hidden(32, 10, n_hidden=64)
    for p in (m.lstm.weight_ih_l0, m.lstm.weight_hh_l0, m.head.weight):
        a = (6/sum(p.shape))**0.5
        assert p.abs().max().item() <= a + 1e-7
        assert p.abs().max().item() > 0.95*a
        t_close(p.std().item(), a/3**0.5, eps=0.08*a)  # uniform on (-a, a) has std a/sqrt(3)
    H = 64
    t_eq(m.lstm.bias_ih_l0[H:2*H].tolist(), [1.]*H)   # forget gate
    t_eq(m.lstm.bias_ih_l0[:H].abs().max().item(), 0)
    t_eq(m.lstm.bias_hh_l0.abs().max().item(), 0)


# ---------- the defaults, read from the optimiser and the Learner ----------
def test_defaults_on_optimiser(img_dls):
    learn = defaults_learner(img_dls)
    learn.create_opt()
    h = learn.opt.hypers[0]
    t_eq((h['lr'], h['wd'], h['mom'], h['sqr_mom'], h['eps']), (3e-4, 0., 0.9, 0.999, 1e-8))
    t_eq(learn.lr, 3e-4); t_eq(learn.wd, 0.)
    t_eq([m.name for m in learn.metrics], ['error_rate', 'accuracy'])
    assert not any(isinstance(m, nn.Dropout) for m in learn.model.modules())
    assert not any(isinstance(f, Normalize) for dl in learn.dls.loaders for f in dl.after_batch.fs)
    t_eq(learn.arch_name, 'lenet')
    # plain fit: constant lr 3e-4, and wd stays 0 through fit (Learner.fit re-applies learn.wd)
    learn.fit(1)
    t_eq(set(learn.recorder.lrs), {3e-4})
    t_eq([g['wd'] for g in learn.opt.hypers], [0.]*len(learn.opt.hypers))
    # the planted bug this guards against: fastai's Learner(wd=None) falls back to Adam's wd=0.01
    plain = Learner(img_dls, lenet_like(img_dls.c), lr=3e-4)
    plain.create_opt()
    t_eq(plain.opt.hypers[0]['wd'], 0.01)


def test_timm_defaults_no_dropout(img_dls):
    learn = defaults_learner(img_dls, 'resnet18')
    t_eq(learn.model.drop_rate, 0.)
    assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in learn.model.modules())
    t_eq(learn.model.fc.out_features, img_dls.c)
    t_eq(learn.arch_name, 'resnet18')


def test_every_default_overridable(img_dls):
    learn = defaults_learner(img_dls, lr=1e-3, wd=0.01, drop_rate=0.25, sqr_mom=0.99, eps=1e-5, normalize=True)
    learn.create_opt()
    h = learn.opt.hypers[0]
    t_eq((h['lr'], h['wd'], h['sqr_mom'], h['eps']), (1e-3, 0.01, 0.99, 1e-5))
    t_eq([m.p for m in learn.model.modules() if isinstance(m, nn.Dropout)], [0.25, 0.25])
    assert any(isinstance(f, Normalize) for f in learn.dls.after_batch.fs)
    assert not any(isinstance(f, Normalize) for f in img_dls.after_batch.fs)  # the caller's dls is untouched
    assert set(DEFAULTS.keys()) <= set(defaults_learner.__code__.co_varnames)
    assert 'wd' in str(DEFAULTS) and 'lenet_like' in str(START_SIMPLE)


# ---------- each builder learns a small real problem ----------
@pytest.mark.parametrize('arch,shape', [(lenet_like, lambda X: X[:, None]), (mlp_one_hidden, lambda X: X.flatten(1)),
                                        (lstm_one_hidden, lambda X: X)])
def test_builders_train(digits, arch, shape):
    learn = defaults_learner(tensor_dls(digits, shape(digits[0])), arch, n_out=10)
    before = learn.validate()
    learn.fit(3)
    after = learn.validate()
    assert after[0] < 0.85*before[0], (arch.__name__, before, after)
    assert after[1] < before[1]


def test_lenet_on_images_learns(img_dls):
    learn = defaults_learner(img_dls)
    before = learn.validate()[0]
    learn.fit(3)
    assert learn.validate()[0] < 0.8*before


# ---------- arch: callables, modules, names, any size ----------
def test_callable_and_module_arch(img_dls):
    learn = defaults_learner(img_dls, lambda n_out, n_in: nn.Sequential(nn.Flatten(), nn.Linear(n_in*16*16, n_out)))
    t_eq(learn.model[1].out_features, img_dls.c); t_eq(learn.model[1].in_features, 3*16*16)
    learn.fit(1)
    learn = defaults_learner(img_dls, lambda num_classes, in_chans: lenet_like(num_classes, in_chans))  # timm-style keywords
    t_eq(learn.model[-1].out_features, img_dls.c)
    m = lenet_like(img_dls.c)
    assert defaults_learner(img_dls, m).model is m
    with pytest.raises(GlamError, match='resnet18'): defaults_learner(img_dls, 'resnet19')
    with pytest.raises(GlamError): defaults_learner(img_dls, 42)


@pytest.mark.parametrize('size', [8, 20, (24, 40), 64])
def test_any_image_size(coll, size):
    dls = collection_dls(coll, size=size, bs=8)
    for arch in ('lenet', 'resnet18'):
        learn = defaults_learner(dls, arch)
        xb, yb = dls.one_batch()
        t_eq(learn.model.eval()(xb).shape, (len(xb), dls.c))


# ---------- the ladder ----------
def test_bigger_walks_the_ladder_and_stops(img_dls):
    learn = defaults_learner(img_dls, wd=0.)
    learn.lr = 1e-3   # a change the user made is carried up
    seen = [learn.arch_name]
    while True:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            nxt = bigger(learn)
        if nxt is None:
            assert any('top of the ladder' in str(o.message) for o in w)
            break
        assert nxt.dls is img_dls and nxt.lr == 1e-3 and nxt.wd == 0.
        t_eq(nxt.loss_func.__class__, learn.loss_func.__class__)
        seen.append(nxt.arch_name)
        learn = nxt
    t_eq(tuple(seen), ARCH_LADDER)
    t_eq(learn.arch_name, 'resnet50')
    with pytest.raises(GlamError, match='not on the ladder'): bigger(defaults_learner(img_dls, lenet_like))
    # extra callbacks travel up as copies: a callback belongs to one Learner
    from fastai.callback.core import Callback
    class Tag(Callback): pass
    small = defaults_learner(img_dls, cbs=[Tag()])
    big = bigger(small)
    assert small.tag is not big.tag and small.tag.learn is small and big.tag.learn is big
    t_eq(bigger(defaults_learner(img_dls, 'resnet34'), ladder=('resnet34', 'resnet26')).arch_name, 'resnet26')


# ---------- pretrained, offline ----------
@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HOME', str(tmp_path/'hf'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path/'hf'/'hub'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    return tmp_path


def test_pretrained_offline_fails_fast_and_clearly(img_dls, empty_caches):
    t0 = time.time()
    with pytest.raises(GlamError) as e: defaults_learner(img_dls, 'resnet18', pretrained=True)
    msg = str(e.value)
    assert time.time() - t0 < 10
    for s in ("'resnet18'", 'timm/resnet18.a1_in1k', str(empty_caches/'hf'/'hub'), str(empty_caches/'torch'), 'pretrained_path'):
        assert s in msg, (s, msg)
    with pytest.raises(GlamError, match='no such file'): defaults_learner(img_dls, 'resnet18', pretrained=True, pretrained_path=empty_caches/'nope.pth')
    with pytest.raises(GlamError, match='lenet'): defaults_learner(img_dls, 'lenet', pretrained=True)


def test_pretrained_loads_and_normalises(img_dls, empty_caches):
    import timm
    src = timm.create_model('resnet18', pretrained=False)
    torch.save(src.state_dict(), empty_caches/'w.pth')
    learn = defaults_learner(img_dls, 'resnet18', pretrained=True, pretrained_path=empty_caches/'w.pth')
    assert torch.equal(learn.model.conv1.weight, src.conv1.weight)
    t_eq(learn.model.fc.out_features, img_dls.c)
    norms = [f for f in learn.dls.after_batch.fs if isinstance(f, Normalize)]
    t_eq(len(norms), 1)
    t_close(norms[0].mean.flatten().cpu(), torch.tensor([0.485, 0.456, 0.406]), eps=1e-4)
    assert not any(isinstance(f, Normalize) for f in img_dls.after_batch.fs), 'the caller dls must not change'
    assert learn.glam_dls is img_dls and learn.dls is not img_dls
    xb, _ = learn.dls.one_batch()
    assert xb.min() < -0.5  # normalised inputs are centred, raw ones are in [0, 1]
    t_eq(len(learn.dls.train_ds), len(img_dls.train_ds))
    # the same weights found in a Hugging Face cache laid out as `huggingface_hub` does
    from safetensors.torch import save_file
    repo = empty_caches/'hf'/'hub'/'models--timm--resnet18.a1_in1k'
    (repo/'refs').mkdir(parents=True); (repo/'refs'/'main').write_text('0'*40)
    (repo/'snapshots'/('0'*40)).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, repo/'snapshots'/('0'*40)/'model.safetensors')
    learn = defaults_learner(img_dls, 'resnet18', pretrained=True)
    assert torch.equal(learn.model.conv1.weight, src.conv1.weight)
    assert learn.pretrained
    # up the ladder the setting travels: resnet34 weights are not here, and bigger says so; without them it works
    with pytest.raises(GlamError, match='resnet34'): bigger(learn)
    b = bigger(learn, pretrained=False)
    assert b.dls is img_dls and b.arch_name == 'resnet34' and not b.pretrained
